"""What decoding had to assume reaches the output record (``{output_key}_notes``), through the run loop.

A fake engine answers (the real engine is exercised elsewhere): this checks the assembly only.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_jsonl
from tests.corpus import avi_with_empty_slots
from tests.test_runner_errors import FakeEngine, config
from vidcap.executors.job import run_captioning
from vidcap.io.records import iter_records


def test_assumptions_are_written_with_the_record(tmp_path: Path, clip_dir: Path, tiny_model: Path) -> None:
    # Frames only in some slots, as captures that dropped frames: chosen by presentation time.
    gappy = avi_with_empty_slots(tmp_path / "gappy.avi", "mjpeg", [0, 1, 2, 5, 6, 9, 12, 13, 19], fps=10)
    data = write_jsonl(
        tmp_path / "data.jsonl",
        [
            {"id": 0, "video": str(gappy.path)},
            {"id": 1, "video": str(clip_dir / "a.mp4")},  # constant rate: nothing assumed
            {"id": 2, "video": [str(gappy.path), str(clip_dir / "a.mp4")]},
        ],
    )
    out = tmp_path / "out.jsonl"
    result = run_captioning(config(data, out, nframes=4), FakeEngine(tiny_model))
    assert result.exit_code == 0
    rows = [r.data for r in iter_records(out)]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    assert any("presentation time" in note for note in rows[0]["caption_notes"])
    assert "caption_notes" not in rows[1]
    # With several videos, each note names its video; the regular one adds none.
    assert rows[2]["caption_notes"] and all(n.startswith("gappy.avi: ") for n in rows[2]["caption_notes"])
    assert list(rows[0])[-1] == "caption_notes"  # after the error key, like caption_raw
