"""`--window`/`--summary-prompt`: validation, the fingerprint, and `vidcap probe --window`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidcap.cli.app import app
from vidcap.config import build_config
from vidcap.errors import VidcapError
from vidcap.io.shards import InputSpan
from vidcap.pipeline.fingerprint import fingerprint_differences, run_fingerprint
from vidcap.video.synthetic import make_clip


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


def test_probe_says_a_short_video_is_one_window(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "short.mp4", seconds=2, fps=4, width=64, height=48)
    result = CliRunner().invoke(app, ["probe", str(clip), "--json", "--window", "20"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.splitlines()[0])
    assert [(w["start"], w["end"]) for w in row["windows"]] == [(0, 2)]
    assert "the video lasts 2.00 s, less than --window 20 s: one window [0:00-0:02]" in row["notes"]


def test_a_record_with_two_videos_stops_a_windowed_run_before_the_model_loads(
    tmp_path: Path, tiny_model: Path
) -> None:
    """--window captions one video per record: a record with two is refused by the checks, naming
    it, not after the model has loaded."""
    from tests.conftest import run_vidcap, write_jsonl

    clip = make_clip(tmp_path / "a.mp4", seconds=2, fps=4, width=64, height=48)
    data = write_jsonl(tmp_path / "data.jsonl", [{"video": str(clip)}, {"video": [str(clip), str(clip)]}])
    result = run_vidcap("run", str(data), "-m", str(tiny_model), "--window", "10")
    assert result.returncode == 2, result.stderr
    assert "loading the model" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {data}:2: --window captions one video per record; this record has 2 videos"]


def test_a_short_video_is_said_once_and_noted_in_its_record(
    tmp_path: Path, clip_dir: Path, tiny_model: Path, caplog
) -> None:
    """Videos shorter than --window: the first is said on the terminal, every one is noted in its
    record's caption_notes; the record keeps its one-window list and its timed caption."""
    from tests.conftest import write_jsonl
    from tests.test_runner_errors import FakeEngine, config
    from vidcap.executors.job import run_captioning
    from vidcap.io.records import iter_records

    data = write_jsonl(tmp_path / "data.jsonl", [{"video": str(clip_dir / n)} for n in ("a.mp4", "b.mp4")])
    out = tmp_path / "out.jsonl"
    caplog.set_level("INFO", logger="vidcap")
    run_captioning(config(data, out, window=20), FakeEngine(tiny_model))
    records = [r.data for r in iter_records(out)]
    assert [r["caption_notes"] for r in records] == [
        ["the video lasts 2.00 s, less than --window 20 s: one window [0:00-0:02]"],
        ["the video lasts 3.00 s, less than --window 20 s: one window [0:00-0:03]"],
    ]
    assert [len(r["windows"]) for r in records] == [1, 1]
    assert records[0]["caption"] == "[0:00-0:02] caption for 0/w0"
    said = [m for m in caplog.messages if "less than --window" in m]
    assert said == [
        f"{data}:1: the video lasts 2.00 s, less than --window 20 s: one window [0:00-0:02] "
        "(said once; such records have it in their notes)"
    ]


def test_progress_counts_windows_too(tmp_path: Path, clip_dir: Path, tiny_model: Path) -> None:
    """Progress counts records; with --window it also says how many windows were captioned."""
    import io

    from tests.conftest import write_jsonl
    from tests.test_runner_errors import FakeEngine, config
    from vidcap.executors.job import run_captioning
    from vidcap.progress import LineProgress

    names = ("a.mp4", "b.mp4")  # 2 s and 3 s: 2 and 3 windows of 1 s
    data = write_jsonl(tmp_path / "data.jsonl", [{"video": str(clip_dir / n)} for n in names])
    stream = io.StringIO()
    run_captioning(
        config(data, tmp_path / "out.jsonl", window=1), FakeEngine(tiny_model), progress=LineProgress(stream)
    )
    last = stream.getvalue().splitlines()[-1]
    assert "vidcap: 2/2 records (100%), 5 windows, " in last, last
    stream = io.StringIO()
    run_captioning(
        config(data, tmp_path / "plain.jsonl"), FakeEngine(tiny_model), progress=LineProgress(stream)
    )
    assert "windows" not in stream.getvalue()
