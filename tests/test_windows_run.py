"""``--window`` end to end: a run through the real vLLM engine (tiny random model, captions are noise)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EMPTY_CAPTION, write_jsonl
from vidcap.config import build_config
from vidcap.engines.caption_engine import CaptionRequest
from vidcap.executors.job import run_captioning
from vidcap.io.jsonio import loads
from vidcap.io.records import iter_records
from vidcap.pipeline.windowed import timed_text
from vidcap.video.synthetic import make_clip
from vidcap.video.windows import Span

SPANS = [(0, 20), (20, 40), (40, 60), (60, 80), (80, 90)]  # 90 s in 20 s windows: the 10 s tail is half


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("windows")
    make_clip(folder / "long.mp4", seconds=90, fps=2, width=64, height=48)
    make_clip(folder / "short.mp4", seconds=7, fps=2, width=64, height=48)
    return write_jsonl(
        folder / "data.jsonl",
        [
            {"id": "long", "video": "long.mp4"},
            {"id": "none", "video": None},
            {"id": "bounded", "video": "long.mp4", "video_start": 30, "video_end": 75},
            {"id": "short", "video": "short.mp4"},
        ],
    )


def _run(data: Path, out: Path, engine, **values) -> list[dict]:
    config = build_config(
        {},
        {
            "input": str(data),
            "output": str(out),
            "model": "tiny",
            "decode_workers": 1,
            "batch_size": 4,
            "window": 20,
            "fps": 0.5,
            "min_pixels": 28 * 28 * 4,
            "max_pixels": 28 * 28 * 16,
            **values,
        },
    )
    run_captioning(config, engine)
    return [r.data for r in iter_records(out)]


def _check_windows(row: dict, spans: list[tuple[float, float]]) -> None:
    windows = row["windows"]
    assert [(w["start"], w["end"]) for w in windows] == spans
    for window in windows:
        assert window["info"]["prompt_tokens"] > 0
        if window["status"] == "ok":
            assert isinstance(window["caption"], str) and window["caption"].strip()
        else:  # random weights may write nothing: that window alone is an error
            assert window["caption"] is None and window["error"] == EMPTY_CAPTION
    failed = [w for w in windows if w["status"] != "ok"]
    if failed:
        assert row["status"] == "error" and f"of {len(windows)} window" in row["error"]


def test_windowed_run(vllm_engine, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    rows = _run(data, out, vllm_engine)
    # (A record of two videos stops a windowed run before the model loads: test_windows_cli.py.)
    assert [r["id"] for r in rows] == ["long", "none", "bounded", "short"]
    long, none, bounded, short = rows
    _check_windows(long, SPANS)
    if long["status"] == "ok":
        lines = long["caption"].splitlines()
        assert [line.split("] ")[0] + "]" for line in lines] == [
            "[0:00-0:20]",
            "[0:20-0:40]",
            "[0:40-1:00]",
            "[1:00-1:20]",
            "[1:20-1:30]",
        ]
    assert none["status"] == "skipped" and "windows" not in none
    _check_windows(bounded, [(30, 50), (50, 75)])  # the record's own bounds, 5 s tail joined
    _check_windows(short, [(0, 7)])
    assert short["caption_notes"] == [
        "the video lasts 7.00 s, less than --window 20 s: one window [0:00-0:07]"
    ]
    summary = loads((tmp_path / "out.jsonl.summary.json").read_bytes())
    assert summary["fingerprint"]["options"]["window"] == 20
    windows = [w for r in rows for w in r.get("windows", [])]
    assert summary["prompt_tokens"] == sum(w["info"]["prompt_tokens"] for w in windows)


def test_summary_prompt_gives_a_whole_video_caption(vllm_engine, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    rows = _run(data, out, vllm_engine, summary_prompt="Summarise these scenes in one paragraph.")
    long = rows[0]
    _check_windows(long, SPANS)
    window_tokens = sum(w["info"]["prompt_tokens"] for w in long["windows"])
    if all(w["status"] == "ok" for w in long["windows"]):
        # The summary ran: its info is its own, for the prompt it was given (the summary prompt,
        # then each window's caption after its time range).
        spans = [Span(w["start"], w["end"]) for w in long["windows"]]
        text = timed_text(spans, [w["caption"] for w in long["windows"]])
        prompt = f"Summarise these scenes in one paragraph.\n\n{text}"
        sent = CaptionRequest("long/summary", prompt, videos=[])
        assert long["info"]["prompt_tokens"] == vllm_engine.count_prompt_tokens(sent) != window_tokens
        assert long["info"]["finish_reason"] in ("stop", "length")
        if long["status"] == "ok":
            assert isinstance(long["caption"], str) and long["caption"].strip()
        else:
            assert long["error"] == f"summary failed: {EMPTY_CAPTION}"
    else:
        assert long["status"] == "error" and long["info"]["prompt_tokens"] == window_tokens
    summary = loads((tmp_path / "out.jsonl.summary.json").read_bytes())
    assert summary["fingerprint"]["options"]["summary_prompt"].startswith("Summarise")


def test_a_windowed_run_resumes(vllm_engine, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    first = _run(data, out, vllm_engine)
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:2]))  # as if killed after the first two records
    again = _run(data, out, vllm_engine)
    assert [r["id"] for r in again] == [r["id"] for r in first]  # each record once, in order
    assert again[:2] == first[:2]
    for row in again[2:]:
        if row["id"] in ("bounded", "short"):
            assert [w["start"] for w in row["windows"]] == [
                w["start"] for w in first[again.index(row)]["windows"]
            ]
