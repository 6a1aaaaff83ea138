"""Ordinary clips are never refused for size at default settings.

A 14 s 720p clip at the default 2 fps used to plan 10,080 visual tokens, more than the
8,960 vLLM's encoder cache held for Qwen2.5-VL: the record failed. Now the default pixel budget
follows --max-model-len and the engine's encoder cache holds any video whose prompt fits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_vidcap, write_jsonl
from vidcap.io.merge import summary_path
from vidcap.video.plan import default_total_pixels, plan_frames
from vidcap.video.types import SamplingOptions, VideoInfo


def hd_info(seconds: float, fps: float = 25.0) -> VideoInfo:
    frames = round(seconds * fps)
    return VideoInfo(
        path="clip.mp4", container="mp4", codec="h264", width=1280, height=720, rotation=0,
        fps=fps, duration=seconds, total_frames=frames,
    )  # fmt: skip


def test_default_pixel_budget_follows_the_context() -> None:
    """The whole-video budget is 90% of the engine's context, never more than the reference's."""
    info = hd_info(14.0)
    reference = plan_frames(info, SamplingOptions())
    assert reference.video_tokens == 10080  # the clip the engine refused
    for seq_len in (4096, 8192, 16384, 32768):
        plan = plan_frames(info, SamplingOptions(model_seq_len=seq_len))
        assert plan.frame_indices == reference.frame_indices  # which frames: unchanged
        assert plan.video_tokens <= 0.9 * seq_len, seq_len
    # A context of the reference's MODEL_SEQ_LEN (128000) or more: the reference's plan exactly.
    assert plan_frames(info, SamplingOptions(model_seq_len=200_000)) == reference
    assert plan_frames(info, SamplingOptions(model_seq_len=128_000)) == reference
    assert default_total_pixels(28, 8192) == 8192 * 28**2 * 0.9
    # An explicit --total-pixels wins over the context.
    explicit = SamplingOptions(model_seq_len=4096, total_pixels=int(default_total_pixels(28)))
    assert plan_frames(info, explicit) == reference


def make_hd_clip(path: Path, seconds: float, fps: int = 25) -> Path:
    """A 1280x720 clip that is tiny in bytes: a solid colour per second and a white block
    whose position counts the seconds (static content compresses to almost nothing)."""
    import av

    width, height = 1280, 720
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "35"}
        frame = np.empty((height, width, 3), dtype=np.uint8)
        for index in range(round(seconds * fps)):
            second = index // fps
            if index % fps == 0:  # the picture changes once a second
                frame[:] = ((second * 40) % 256, (second * 90) % 256, (second * 150) % 256)
                x = (second * 64) % (width - 64)
                frame[300:364, x : x + 64] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.engine
def test_default_run_on_hd_clips_captions_every_record(tiny_model: Path, tmp_path: Path) -> None:
    """720p clips of 10-80 s, default frame and pixel settings, a --max-model-len this machine
    holds: every record is captioned. (--gpu-memory-utilization and --enforce-eager suit a
    CPU machine and a 1 MB model; --max-tokens keeps random-weight captions short.)"""
    seconds = [10, 14, 80]  # 14 s: the clip the engine refused
    clips = [make_hd_clip(tmp_path / f"hd{s}.mp4", s) for s in seconds]
    assert all(c.stat().st_size < 1_000_000 for c in clips), [c.stat().st_size for c in clips]  # ~50-400 KB
    records = [{"video": str(c), "n": s} for c, s in zip(clips, seconds, strict=True)]
    data = write_jsonl(tmp_path / "hd.jsonl", records)
    out = tmp_path / "hd.captions.jsonl"
    max_model_len = 16384
    result = run_vidcap(
        "run", "-i", str(data), "-o", str(out), "-q",
        "--model", str(tiny_model), "--max-model-len", str(max_model_len),
        "--gpu-memory-utilization", "0.05", "--enforce-eager", "--max-tokens", "8", "--seed", "0",
        timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["n"] for r in records] == seconds
    assert [r["status"] for r in records] == ["ok"] * len(seconds), [r.get("error") for r in records]
    summary = json.loads(summary_path(out).read_text())
    assert summary["status_counts"]["ok"] == len(seconds), summary
