"""`--window`/`--summary-prompt`: validation, the fingerprint, and `vidcap probe --window`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidcap.cli.app import app
from vidcap.clips import make_clip
from vidcap.config import build_config
from vidcap.errors import VidcapError
from vidcap.io.shards import InputSpan
from vidcap.pipeline.fingerprint import fingerprint_differences, run_fingerprint


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"window": 0}, "--window must be > 0"),
        ({"window": -5.0}, "--window must be > 0"),
        ({"window": float("nan")}, "--window must be > 0"),
        ({"summary_prompt": "Sum up."}, "--summary-prompt needs --window"),
        ({"window": 20, "summary_prompt": "  "}, "--summary-prompt is empty"),
        ({"window": 20, "output_key": "windows"}, "no --\\*-key may be 'windows'"),
    ],
)
def test_bad_window_options(values: dict, message: str) -> None:
    with pytest.raises(VidcapError, match=message):
        build_config({}, values)


def test_window_from_a_config_file_and_flags() -> None:
    config = build_config({"window": 30}, {"summary_prompt": "Sum up."})
    assert config.run.window == 30 and config.run.summary_prompt == "Sum up."


def test_window_and_summary_prompt_are_in_the_fingerprint(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"video": "a.mp4"}\n')
    span = InputSpan(path=data, start=0, stop=1, size=data.stat().st_size, format="jsonl", units=1)

    def fingerprint(**values) -> dict:
        return run_fingerprint(build_config({}, values), prompt="p", span=span, digest="d")

    plain = fingerprint()
    assert "window" not in plain["options"]  # outputs written before windows existed still resume
    windowed = fingerprint(window=20)
    assert fingerprint_differences(plain, windowed) == ["window None -> 20"]
    summarised = fingerprint(window=20, summary_prompt="Sum up.")
    assert fingerprint_differences(windowed, summarised) == ["summary-prompt None -> 'Sum up.'"]


def test_probe_shows_windows(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "long.mp4", seconds=25, fps=4, width=64, height=48)
    result = CliRunner().invoke(app, ["probe", str(clip), "--json", "--window", "10", "--fps", "1"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.splitlines()[0])
    windows = row["windows"]
    assert [(w["start"], w["end"]) for w in windows] == [(0, 10), (10, 20), (20, 25)]
    assert [w["nframes"] for w in windows] == [10, 10, 4]
    assert all(w["start"] <= t <= w["end"] for w in windows for t in w["timestamps"])
    assert row["window_tokens"] == sum(w["video_tokens"] for w in windows)
    assert row["nframes"] == 24  # the whole video's plan, as a run without --window sends it
    assert row["largest_window_tokens"] == max(w["video_tokens"] for w in windows)
    table = CliRunner().invoke(app, ["probe", str(clip), "--window", "10", "--fps", "1"])
    assert table.exit_code == 0, table.output
    assert "window [0:10-0:20]" in table.stdout and "window [0:20-0:25]" in table.stdout
    bad = CliRunner().invoke(app, ["probe", str(clip), "--window", "0"])
    assert bad.exit_code == 2 and "--window must be > 0" in bad.output
