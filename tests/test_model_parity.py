"""The Qwen families see exactly the plan: grid, prompt length and temporal metadata.

For Qwen2.5-VL, Qwen3-VL and Qwen3.5 (tiny random-weight checkpoints built here; Qwen3.5 takes
Qwen3-VL's processor and timestamps, behind a hybrid linear-attention text model), checked three ways:
- the HF processor (what the transformers backend runs, and what vLLM calls inside) keeps the
  planned frame size under both settings of transformers' coming per-frame pixel cap, and its
  prompt length equals vidcap's count;
- the temporal metadata and the expanded prompt equal the reference pipeline's
  (qwen-vl-utils 0.0.14 ``process_vision_info`` + the HF processor, as the model cards use it)
  for the same clip;
- the real vLLM engine: its own input processing gives the planned grid, the reference's
  temporal metadata and vidcap's prompt count, and generation reports that many prompt tokens.
Captions of random weights are noise: nothing here looks at their text.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_ENGINE
from vidcap.config import EngineConfig
from vidcap.engines.caption_engine import CaptionRequest, GenerationOptions, VideoInput
from vidcap.engines.chat import fixed_size_kwargs, hf_video_metadata, prompt_token_count, render_prompt
from vidcap.model.info import vision_geometry
from vidcap.video.load import load_video
from vidcap.video.synthetic import make_clip
from vidcap.video.types import SamplingOptions

FAMILIES = ("qwen2.5-vl", "qwen3-vl", "qwen3.5")
# The families whose prompt holds a "<t seconds>" text before each temporal patch of frames.
TIMESTAMPED = ("qwen3-vl", "qwen3.5")
PROMPT = "Describe this video."


@pytest.fixture(scope="session")
def family_models(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny checkpoint per family (the Qwen2.5-VL one is the session's ``tiny_model``)."""
    from vidcap.tiny_model import build_tiny_model

    built = {
        f: build_tiny_model(tmp_path_factory.mktemp("model") / f"tiny-{f}", family=f) for f in TIMESTAMPED
    }
    return {"qwen2.5-vl": tiny_model, **built}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Clips whose plans differ in frame count, size and sampled rate."""
    folder = tmp_path_factory.mktemp("parity-clips")
    return {
        "wide": make_clip(folder / "wide.mp4", seconds=4.0, fps=10, width=320, height=180),
        "tall": make_clip(folder / "tall.mp4", seconds=3.0, fps=25, width=144, height=256),
        "odd": make_clip(folder / "odd.mkv", seconds=5.5, fps=12, width=200, height=150),
    }


def sampling_for(model: Path, **kw) -> SamplingOptions:
    geometry = vision_geometry(str(model))
    return SamplingOptions(
        image_factor=geometry.image_factor, temporal_patch_size=geometry.temporal_patch_size, **kw
    )


def request_for(clip: Path, options: SamplingOptions, request_id: str = "r") -> CaptionRequest:
    loaded = load_video(str(clip), options)
    video = VideoInput(loaded.frames, loaded.plan.processor_metadata(), loaded.plan.video_tokens)
    return CaptionRequest(request_id, PROMPT, [video])


def planned_grid(video: VideoInput, patch: int, temporal: int = 2) -> list[int]:
    frames, height, width = video.frames.shape[:3]
    return [-(-frames // temporal), height // patch, width // patch]


def load_processor(model: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(model))


def vidcap_inputs(processor, request: CaptionRequest):
    """The HF processor's output for a request, called as the transformers backend calls it."""
    return processor(
        text=[render_prompt(processor, request)],
        videos=[v.frames for v in request.videos],
        video_metadata=[hf_video_metadata(v.metadata) for v in request.videos],
        do_sample_frames=False,
        return_tensors="pt",
        **fixed_size_kwargs(request),
    )


@pytest.mark.parametrize("cap", [False, True], ids=["uncapped", "per-frame-cap"])
@pytest.mark.parametrize("family", FAMILIES)
def test_processor_keeps_the_planned_grid(family_models, clips, family: str, cap: bool) -> None:
    """The processed grid is the plan's and the prompt length is vidcap's count, with
    transformers' per-frame pixel cap (default from 5.22) off or on."""
    model = family_models[family]
    processor = load_processor(model)
    processor.video_processor.cap_pixels_per_frame = cap  # the setting 5.22 turns on
    patch = processor.video_processor.patch_size
    factor = 2 * patch
    plans = [
        sampling_for(model),
        sampling_for(model, fps=4.0, min_pixels=4 * factor**2, max_pixels=40 * factor**2),
        sampling_for(model, nframes=6),
    ]
    checked = 0
    for options in plans:
        for name, clip in clips.items():
            request = request_for(clip, options, name)
            inputs = vidcap_inputs(processor, request)
            assert inputs["video_grid_thw"].tolist() == [planned_grid(request.videos[0], patch)], name
            assert inputs["input_ids"].shape[1] == prompt_token_count(processor, request), name
            checked += 1
    assert checked == len(plans) * len(clips)


def test_qwen3_frames_are_not_shrunk_by_the_frame_count(family_models, clips) -> None:
    """The bug this guards: bounding Qwen3-VL's size by one frame's area shrank 16 frames ~4x."""
    model = family_models["qwen3-vl"]
    processor = load_processor(model)
    request = request_for(clips["wide"], sampling_for(model, nframes=16))
    video = request.videos[0]
    area = video.frames.shape[1] * video.frames.shape[2]
    per_frame_bounds = {"size": {"shortest_edge": area, "longest_edge": area}}
    shrunk = processor(
        text=[render_prompt(processor, request)],
        videos=[video.frames],
        video_metadata=[hf_video_metadata(video.metadata)],
        do_sample_frames=False,
        return_tensors="pt",
        **per_frame_bounds,
    )
    planned = planned_grid(video, processor.video_processor.patch_size)
    assert shrunk["video_grid_thw"].tolist() != [planned]  # the old bounds do shrink...
    assert vidcap_inputs(processor, request)["video_grid_thw"].tolist() == [planned]  # ...ours do not


def reference_inputs(processor, clip: Path, family: str, text: str):
    """The model cards' pipeline: qwen-vl-utils reads and plans the clip, the processor expands it.

    Returns the processor's output, the video metadata qwen-vl-utils gives and its sampled fps.
    Qwen2.5-VL's card passes ``fps=[sample_fps]`` to the processor; transformers 5 refuses a
    list there (its strict kwargs), so the metadata form of Qwen3-VL's card is used for both:
    the processor derives the same sampled rate from it (len(indices) / total * fps).
    """
    from qwen_vl_utils import process_vision_info

    content = [{"type": "video", "video": str(clip)}, {"type": "text", "text": PROMPT}]
    messages = [{"role": "user", "content": content}]
    patch = 16 if family in TIMESTAMPED else 14
    _, videos, kwargs = process_vision_info(
        messages, image_patch_size=patch, return_video_kwargs=True, return_video_metadata=True
    )
    videos, metadata = zip(*videos, strict=True)
    # Qwen3-VL's card: no second resize; Qwen2.5-VL's card leaves the processor's own bounds.
    resize = {"do_resize": False} if family in TIMESTAMPED else {}
    inputs = processor(
        text=[text],
        videos=list(videos),
        video_metadata=list(metadata),
        return_tensors="pt",
        **resize,
        **kwargs,
    )
    _, _, legacy = process_vision_info(messages, image_patch_size=patch, return_video_kwargs=True)
    return inputs, list(metadata), legacy["fps"][0]


def qwen3_timestamps(indices: list[int], fps: float, temporal: int = 2) -> list[float]:
    """Qwen3-VL's time of each temporal patch: the mean time of its first and last frame."""
    padded = list(indices) + [indices[-1]] * (-len(indices) % temporal)
    times = [i / fps for i in padded]
    return [(times[i] + times[i + temporal - 1]) / 2 for i in range(0, len(times), temporal)]


@pytest.mark.parametrize("family", FAMILIES)
def test_temporal_metadata_matches_the_reference(family_models, clips, family: str) -> None:
    """Same clip, default options: vidcap's processed input equals the model card pipeline's."""
    model = family_models[family]
    processor = load_processor(model)
    for name, clip in clips.items():
        request = request_for(clip, sampling_for(model), name)
        ours = vidcap_inputs(processor, request)
        ref, ref_metadata, sample_fps = reference_inputs(
            processor, clip, family, render_prompt(processor, request)
        )
        assert ours["video_grid_thw"].tolist() == ref["video_grid_thw"].tolist(), name
        # The whole expanded prompt: for Qwen3-VL it holds each temporal patch's "<t seconds>".
        assert ours["input_ids"].tolist() == ref["input_ids"].tolist(), name
        md = request.videos[0].metadata
        assert list(md["frames_indices"]) == list(ref_metadata[0]["frames_indices"]), name
        assert md["fps"] == pytest.approx(ref_metadata[0]["fps"]), name
        if family == "qwen2.5-vl":
            assert ours["second_per_grid_ts"] == pytest.approx(ref["second_per_grid_ts"]), name
            assert ours["second_per_grid_ts"] == pytest.approx([2 / sample_fps]), name


# --------------------------------------------------------------------------- the real engine


def start_engine(model: Path):
    """A real vLLM engine on ``model``, closed when the caller's fixture ends."""
    from vidcap.engines.vllm_engine import VllmEngine

    engine = VllmEngine(
        EngineConfig(model=str(model), **TINY_ENGINE),
        GenerationOptions(max_tokens=8, temperature=0.7, seed=0),
    )
    engine.start(max_videos_per_prompt=2)
    return engine


@pytest.fixture(scope="module")
def qwen3_engine(family_models):
    """A real vLLM engine on the tiny Qwen3-VL."""
    engine = start_engine(family_models["qwen3-vl"])
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def qwen3_5_engine(family_models):
    """A real vLLM engine on the tiny Qwen3.5 (its Gated DeltaNet layers on vLLM's CPU kernels)."""
    engine = start_engine(family_models["qwen3.5"])
    yield engine
    engine.close()


def in_model_dtype(value: float) -> float:
    """``value`` as vLLM carries second_per_grid_ts: in the model's dtype (bfloat16 here)."""
    import torch

    return float(torch.tensor(value, dtype=torch.bfloat16))


def engines(request_fixture: pytest.FixtureRequest, family: str):
    name = {"qwen2.5-vl": "vllm_engine", "qwen3-vl": "qwen3_engine", "qwen3.5": "qwen3_5_engine"}[family]
    return request_fixture.getfixturevalue(name)


@pytest.mark.engine
@pytest.mark.parametrize("family", FAMILIES)
def test_engine_sees_the_plan(request: pytest.FixtureRequest, family_models, clips, family: str) -> None:
    """vLLM's own input processing: planned grid, the reference's temporal metadata, vidcap's
    prompt count; generation reports the same prompt length."""
    engine = engines(request, family)
    model = family_models[family]
    processor = load_processor(model)
    patch = processor.video_processor.patch_size
    requests = [request_for(clip, sampling_for(model), name) for name, clip in clips.items()]
    two = CaptionRequest(
        "two", PROMPT, [request_for(clips["wide"], sampling_for(model)).videos[0], requests[1].videos[0]]
    )
    requests.append(two)
    for req in requests:
        seen = engine.inspect(req)
        assert seen["prompt_tokens"] == engine.count_prompt_tokens(req), req.request_id
        assert len(seen["videos"]) == len(req.videos)
        for video, processed in zip(req.videos, seen["videos"], strict=True):
            assert processed["video_grid_thw"] == planned_grid(video, patch), req.request_id
            md = video.metadata
            if family in TIMESTAMPED:
                expected = qwen3_timestamps(md["frames_indices"], md["fps"])
                assert processed["timestamps"] == pytest.approx(expected), req.request_id
            else:
                sampled_fps = len(md["frames_indices"]) / md["total_num_frames"] * md["fps"]
                assert processed["second_per_grid_ts"] == in_model_dtype(2 / sampled_fps), req.request_id
    # The reference's metadata for the same clips (qwen-vl-utils + processor) gives the same.
    for name, clip in clips.items():
        req = next(r for r in requests if r.request_id == name)
        text = render_prompt(processor, req)
        ref, ref_metadata, sample_fps = reference_inputs(processor, clip, family, text)
        seen = engine.inspect(req)["videos"][0]
        if family in TIMESTAMPED:
            md = ref_metadata[0]
            assert seen["timestamps"] == pytest.approx(qwen3_timestamps(md["frames_indices"], md["fps"]))
        else:
            assert seen["second_per_grid_ts"] == in_model_dtype(2 / sample_fps)
        assert seen["video_grid_thw"] == ref["video_grid_thw"].tolist()[0]
    outputs = engine.generate(requests)
    for req, output in zip(requests, outputs, strict=True):
        assert output.error is None, output.error
        assert output.prompt_tokens == engine.count_prompt_tokens(req), req.request_id


@pytest.mark.engine
@pytest.mark.parametrize("family", FAMILIES)
def test_engine_admits_every_video_that_fits(request: pytest.FixtureRequest, family: str) -> None:
    """vLLM's encoder cache (the most visual tokens one video may have) is no smaller than
    the context, so no video whose prompt fits is refused for its size."""
    engine = engines(request, family)
    assert engine.encoder_cache_tokens is not None
    assert engine.encoder_cache_tokens >= engine.max_model_len


@pytest.mark.engine
def test_a_video_over_the_encoder_cache_fails_alone(vllm_engine, family_models, clips) -> None:
    """A record whose video the engine cannot hold fails before generation, with the numbers
    and the flags to change; the other records of the batch are captioned."""
    options = sampling_for(family_models["qwen2.5-vl"])
    small = request_for(clips["wide"], dataclasses.replace(options, nframes=4), "small")
    large = request_for(clips["odd"], options, "large")
    limit = large.videos[0].video_tokens - 1
    assert small.video_tokens <= limit
    real = vllm_engine.encoder_cache_tokens
    vllm_engine.encoder_cache_tokens = limit  # as an engine started with a smaller batch budget
    try:
        outputs = vllm_engine.generate([small, large])
    finally:
        vllm_engine.encoder_cache_tokens = real
    assert outputs[0].error is None and outputs[0].prompt_tokens > 0
    error = outputs[1].error
    assert error is not None and outputs[1].texts is None
    assert f"{large.video_tokens} visual tokens" in error and f"holds {limit}" in error
    assert "--max-model-len" in error and "--fps" in error


def test_frames_stay_uint8_rgb(clips, family_models) -> None:
    """The requests built here are what the runner builds: planned uint8 RGB frames."""
    request = request_for(clips["tall"], sampling_for(family_models["qwen3-vl"]))
    frames = request.videos[0].frames
    assert frames.dtype == np.uint8 and frames.shape[-1] == 3
    assert frames.shape[1] % 32 == 0 and frames.shape[2] % 32 == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_transformers_engine_prompt_tokens_match_the_count(family_models, clips, family: str) -> None:
    """The transformers backend, one padded batch of different videos (and a two-video record):
    the model's prompt length is vidcap's count for each."""
    from vidcap.engines.transformers_engine import TransformersEngine

    model = family_models[family]
    engine = TransformersEngine(
        EngineConfig(model=str(model), backend="transformers", device="cpu"),
        GenerationOptions(max_tokens=4, temperature=0.0),
    )
    engine.start(max_videos_per_prompt=2)
    try:
        requests = [request_for(clip, sampling_for(model), name) for name, clip in clips.items()]
        requests.append(CaptionRequest("two", PROMPT, [requests[0].videos[0], requests[1].videos[0]]))
        outputs = engine.generate(requests)
    finally:
        engine.close()
    for req, output in zip(requests, outputs, strict=True):
        assert output.error is None, output.error
        assert output.prompt_tokens == engine.count_prompt_tokens(req), req.request_id
