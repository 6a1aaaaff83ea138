"""InternVL3/3.5 (HF format) is fed as its authors feed it (see ``vidcap.families.internvl``).

Reference: transformers 5.19's ``InternVLVideoProcessor.sample_frames`` with the model card's
``num_frames=8``, through transformers' own video loader (``load_video``, PyAV backend), and
``InternVLProcessor`` for the prompt. On real clips of several codecs and containers, vidcap's
plan names the reference's frames, and the processor takes vidcap's frames as they are (no
resize) with the prompt length vidcap counts. One ``vidcap run`` on the real vLLM engine (tiny
random-weight checkpoint) gives each record the prompt length of ``vidcap probe``'s plan.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import TINY_ENGINE, write_jsonl
from tests.conftest import run_vidcap as vidcap
from tests.corpus import Clip, encode_clip, has_encoder
from vidcap.engines.base import CaptionRequest, VideoInput
from vidcap.engines.chat import prompt_token_count, render_prompt
from vidcap.families import get_family
from vidcap.families.internvl import slot_middles
from vidcap.model_info import vision_geometry
from vidcap.video.load import load_video
from vidcap.video.types import SamplingOptions

# (encoder, container, frames, fps): odd and even counts, standard and odd rates.
CLIPS = [
    ("libx264", "mp4", 37, 10),
    ("mpeg4", "avi", 60, 25),
    ("libvpx-vp9", "webm", 45, 12),
    ("mpeg2video", "ts", 50, 25),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vidcap.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny-internvl", family="internvl")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    folder = tmp_path_factory.mktemp("internvl-clips")
    made = []
    for encoder, ext, frames, fps in CLIPS:
        if has_encoder(encoder):
            made.append(encode_clip(folder / f"{encoder}.{ext}", encoder, frames, fps, options={"g": "12"}))
    assert len(made) >= 3
    return made


@pytest.fixture(scope="module")
def processor(model: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model)


def test_slot_middles_are_torch_arange_truncated() -> None:
    torch = pytest.importorskip("torch")
    for total in (1, 7, 37, 60, 121, 997):
        for n in (1, 2, 5, 8, 16, 32):
            if n <= total:
                expected = torch.arange(total / n / 2, total, total / n).int().tolist()
                assert slot_middles(total, n) == expected, (total, n)


def test_geometry_reads_the_list_sizes_of_the_config(model: Path) -> None:
    geometry = vision_geometry(str(model))  # patch_size and image_size are [h, w] lists
    assert (geometry.family, geometry.frame_size, geometry.image_factor) == ("internvl", (224, 224), 28)


@pytest.mark.parametrize("nframes", [None, 5, 16])
def test_plan_names_the_reference_frames(
    model: Path, clips: list[Clip], processor, nframes: int | None
) -> None:
    from transformers.video_utils import load_video as reference_load_video

    options = vision_geometry(str(model)).apply(SamplingOptions(fps=None, nframes=nframes))
    sample = partial(processor.video_processor.sample_frames, num_frames=nframes or 8)  # the card's 8
    for clip in clips:
        _, meta = reference_load_video(str(clip.path), backend="pyav", sample_indices_fn=sample)
        loaded = load_video(str(clip.path), options)
        assert list(loaded.plan.frame_indices) == [int(i) for i in meta.frames_indices], clip.path.name
        assert (loaded.plan.total_frames, loaded.plan.video_fps) == (
            meta.total_num_frames,
            pytest.approx(meta.fps),
        )


def test_fps_option_counts_frames_as_the_reference(model: Path, clips: list[Clip], processor) -> None:
    from transformers.video_utils import load_video as reference_load_video

    options = vision_geometry(str(model)).apply(SamplingOptions(fps=2.0))
    for clip in clips:
        sample = partial(processor.video_processor.sample_frames, fps=2.0, num_frames=None)
        _, meta = reference_load_video(str(clip.path), backend="pyav", sample_indices_fn=sample)
        assert list(load_video(str(clip.path), options).plan.frame_indices) == [
            int(i) for i in meta.frames_indices
        ]


def test_processor_takes_the_frames_as_planned(model: Path, clips: list[Clip], processor) -> None:
    family = get_family("internvl")
    options = vision_geometry(str(model)).apply(SamplingOptions())
    for clip in clips:
        loaded = load_video(str(clip.path), options)
        video = VideoInput(loaded.frames, loaded.plan.processor_metadata(), loaded.plan.video_tokens)
        request = CaptionRequest("r", "Describe the video.", [video])
        text = render_prompt(processor, request)
        out = processor(
            text=text, videos=[loaded.frames], return_tensors="np", **family.processor_kwargs(request)
        )
        assert out["pixel_values"].shape == (8, 3, 224, 224)  # the card's 8 frames, at the tower's square
        assert out["input_ids"].shape[1] == prompt_token_count(processor, request, family)
        assert loaded.plan.video_tokens == 8 * processor.image_seq_length


def test_run_on_the_engine_matches_the_probe(
    model: Path, clips: list[Clip], processor, tmp_path: Path
) -> None:
    chosen = clips[:3]
    data = write_jsonl(
        tmp_path / "data.jsonl", [{"id": str(i), "video": str(c.path)} for i, c in enumerate(chosen)]
    )
    out = tmp_path / "out.jsonl"
    engine = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_ENGINE.items() if k != "enforce_eager"]
    result = vidcap(
        "run", str(data), "--output", str(out), "--model", str(model), *engine, "--enforce-eager",
        "--max-tokens", "4", "--temperature", "0", timeout=900,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-3000:]
    probed = vidcap("probe", *[str(c.path) for c in chosen], "--json", "--model", str(model))
    assert probed.returncode == 0, probed.stderr
    plans = [json.loads(line) for line in probed.stdout.splitlines()]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["0", "1", "2"]
    for record, plan in zip(records, plans, strict=True):
        assert record["status"] == "ok" or record["error"] == "the model returned an empty caption", record
        assert (plan["family"], plan["nframes"]) == ("internvl", 8)
        # vLLM's own prompt length (its processor, its placeholder per frame) = probe's count.
        assert record["info"]["prompt_tokens"] == plan["prompt_tokens"], (record, plan)
