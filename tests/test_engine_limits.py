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

from tests.conftest import assert_only_noise_errors, run_vidcap, write_jsonl
from vidcap.io.sidecar import summary_path
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


def make_hd_clip(
    path: Path, seconds: float, fps: int = 25, *, width: int = 1280, height: int = 720, codec: str = "libx264"
) -> Path:
    """A clip (1280x720 H.264 by default) that is tiny in bytes: a solid colour per second and a
    white block whose position counts the seconds (static content compresses to almost nothing)."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "35"} if codec == "libx264" else {"qscale": "31"}
        frame = np.empty((height, width, 3), dtype=np.uint8)
        for index in range(round(seconds * fps)):
            second = index // fps
            if index % fps == 0:  # the picture changes once a second
                frame[:] = ((second * 40) % 256, (second * 90) % 256, (second * 150) % 256)
                x = (second * 64) % (width - 64)
                frame[height // 2 - 32 : height // 2 + 32, x : x + 64] = 255
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


# The clip: 79 s of 768x576 MPEG-4 plans 79 frame pairs of 27 x 21 patches at the default
# 2 fps and pixel budget (the model's context, 128000 tokens): 44,793 visual tokens.
LONG_CLIP_TOKENS = 44_793


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("long")
    return make_hd_clip(folder / "long.avi", 79, fps=10, width=768, height=576, codec="mpeg4")


def test_the_engine_batch_budget_is_the_context_with_or_without_a_seed(tiny_model: Path) -> None:
    """vLLM's encoder cache is max(max_num_batched_tokens, its profile: 8,960 for Qwen2.5-VL);
    vidcap sets the budget to the context (--max-model-len, else the model's), never to what
    chunked prefill (off with a seed on the CPU build) would make it."""
    from vidcap.config import EngineConfig
    from vidcap.engines.vllm_engine import batch_budget
    from vidcap.model.info import context_length

    assert context_length(str(tiny_model)) == 128_000
    assert batch_budget(EngineConfig(model=str(tiny_model))) == 128_000
    assert batch_budget(EngineConfig(model=str(tiny_model), max_model_len=4096)) == 16_384  # vLLM's floor
    assert batch_budget(EngineConfig(model=str(tiny_model), max_model_len=50_000)) == 50_000


def test_probe_says_when_a_plan_is_over_the_engine_context(tiny_model: Path, long_clip: Path) -> None:
    fits = run_vidcap("probe", str(long_clip), "-m", str(tiny_model), "--json")
    assert fits.returncode == 0, fits.stderr
    row = json.loads(fits.stdout)
    assert row["video_tokens"] == LONG_CLIP_TOKENS and "over_limit" not in row
    # A long path (as under pytest-xdist) must not fold the warning: it stays one line.
    deep = long_clip.parent / ("d" * 60) / "long.mp4"
    deep.parent.mkdir(exist_ok=True)
    if not deep.exists():
        deep.symlink_to(long_clip)
    over = run_vidcap("probe", str(deep), "-m", str(tiny_model), "--max-model-len", "8192")
    assert over.returncode == 0, over.stderr
    (warning,) = [line for line in over.stdout.splitlines() if line.startswith("warning:")]
    assert "more than the engine's context of 8,192 tokens" in warning and warning.endswith("--max-model-len")
    over_json = run_vidcap(
        "probe", str(long_clip), "-m", str(tiny_model), "--max-model-len", "8192", "--json"
    )
    assert "8,192" in json.loads(over_json.stdout)["over_limit"]
    windowed = run_vidcap("probe", str(long_clip), "-m", str(tiny_model), "--window", "20", "--json")
    assert "over_limit" not in json.loads(windowed.stdout)


@pytest.mark.engine
def test_a_long_clip_is_captioned_without_a_seed_or_max_model_len(
    tiny_model: Path, tmp_path: Path, long_clip: Path
) -> None:
    """Whether a video is captioned does not depend on --seed: without one (chunked prefill on),
    the default engine refused this clip ("the engine's encoder cache holds 8960")."""
    data = write_jsonl(tmp_path / "long.jsonl", [{"video": str(long_clip)}])
    out = tmp_path / "long.captions.jsonl"
    result = run_vidcap(
        "run", "-i", str(data), "-o", str(out), "-q", "--model", str(tiny_model),
        "--gpu-memory-utilization", "0.05", "--enforce-eager", "--max-tokens", "4",
        timeout=1200,
    )  # fmt: skip
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert "encoder cache" not in (record.get("error") or ""), record["error"]
    assert_only_noise_errors(result.returncode, out, result.stderr[-3000:])
    assert record["info"]["prompt_tokens"] > LONG_CLIP_TOKENS
    engine = json.loads(summary_path(out).read_text())["engine"]  # how the engine was sized
    assert engine["max_model_len"] == engine["max_num_batched_tokens"] == 128_000
    # What the run planned its first records for, before loading, is what the engine reported.
    from vidcap.config import EngineConfig
    from vidcap.engines.vllm_engine import engine_context

    assert engine_context(EngineConfig(model=str(tiny_model))) == engine["max_model_len"]
    assert engine["encoder_cache_tokens"] >= LONG_CLIP_TOKENS
