"""InternVL3/3.5 (HF format) and LLaVA-OneVision are fed as their authors feed them.

Reference for both: the transformers model card's video example (``num_frames=8``) through
transformers 5.19's own video processor (``InternVLVideoProcessor`` / ``LlavaOnevisionVideoProcessor``,
their ``sample_frames``) and transformers' video loader (``load_video`` with decord, the backend
the Qwen reference uses; its PyAV backend reads no frame count from WebM or MPEG-TS), then the
family's processor for pixels and prompt. On real clips of several codecs and containers:
vidcap's plan names the reference's frames, and the processor takes vidcap's frames as they are
(no resize) with the prompt length vidcap counts. One ``vidcap run`` per family on the real vLLM
engine (tiny random-weight checkpoints) gives each record the prompt length ``vidcap probe`` plans.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import TINY_ENGINE, write_jsonl
from tests.conftest import run_vidcap as vidcap
from tests.corpus import Clip, encode_clip, has_encoder
from vidcap.engines.caption_engine import CaptionRequest, VideoInput
from vidcap.engines.chat import prompt_token_count, render_prompt
from vidcap.families import get_family
from vidcap.families.internvl import slot_middles
from vidcap.families.llava_onevision import slot_starts
from vidcap.model.info import vision_geometry
from vidcap.video.load import load_video
from vidcap.video.types import SamplingOptions

FAMILIES = ["internvl", "llava-onevision"]
# (encoder, container, frames, fps): odd and even counts, standard and odd rates.
CLIPS = [
    ("libx264", "mp4", 37, 10),
    ("mpeg4", "avi", 60, 25),
    ("libvpx-vp9", "webm", 45, 12),
    ("mpeg2video", "ts", 50, 25),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):
    from vidcap.tiny_model import build_tiny_model

    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_model(tmp_path_factory.mktemp("model") / family, family=family)
        return built[family]

    return get


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    folder = tmp_path_factory.mktemp("card-clips")
    made = []
    for encoder, ext, frames, fps in CLIPS:
        if has_encoder(encoder):
            made.append(encode_clip(folder / f"{encoder}.{ext}", encoder, frames, fps, options={"g": "12"}))
    assert len(made) >= 3
    return made


def _processor(model: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model)


def test_slot_rules_are_the_reference_arithmetic() -> None:
    torch = pytest.importorskip("torch")
    np = pytest.importorskip("numpy")
    for total in (1, 7, 37, 60, 121, 997):
        for n in (1, 2, 5, 8, 16, 32):
            if n <= total:
                middles = torch.arange(total / n / 2, total, total / n).int().tolist()
                assert slot_middles(total, n) == middles, (total, n)
                assert slot_starts(total, n) == (np.arange(n, dtype=int) * total // n).tolist()


def test_geometry_reads_each_config(models) -> None:
    internvl = vision_geometry(str(models("internvl")))  # patch_size and image_size are [h, w] lists
    assert (internvl.family, internvl.frame_size, internvl.image_factor) == ("internvl", (224, 224), 28)
    llava = vision_geometry(str(models("llava-onevision")))  # 112 / 14 = 8 patches, pooled to 4
    assert (llava.family, llava.frame_size, llava.frame_tokens) == ("llava-onevision", (112, 112), 16)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("nframes", [None, 5, 16])
def test_plan_names_the_reference_frames(models, clips: list[Clip], family: str, nframes: int | None) -> None:
    from transformers.video_utils import load_video as reference_load_video

    model = models(family)
    processor = _processor(model)
    options = vision_geometry(str(model)).apply(SamplingOptions(fps=None, nframes=nframes))
    sample = partial(processor.video_processor.sample_frames, num_frames=nframes or 8)  # the card's 8
    for clip in clips:
        _, meta = reference_load_video(str(clip.path), backend="decord", sample_indices_fn=sample)
        plan = load_video(str(clip.path), options).plan
        assert list(plan.frame_indices) == [int(i) for i in meta.frames_indices], clip.path.name
        assert (plan.total_frames, plan.video_fps) == (meta.total_num_frames, pytest.approx(meta.fps))


@pytest.mark.parametrize("family", FAMILIES)
def test_fps_option_counts_frames_as_the_reference(models, clips: list[Clip], family: str) -> None:
    from transformers.video_utils import load_video as reference_load_video

    model = models(family)
    processor = _processor(model)
    options = vision_geometry(str(model)).apply(SamplingOptions(fps=2.0))
    sample = partial(processor.video_processor.sample_frames, fps=2.0, num_frames=None)
    for clip in clips:
        _, meta = reference_load_video(str(clip.path), backend="decord", sample_indices_fn=sample)
        plan = load_video(str(clip.path), options).plan
        assert list(plan.frame_indices) == [int(i) for i in meta.frames_indices], clip.path.name


@pytest.mark.parametrize("family", FAMILIES)
def test_processor_takes_the_frames_as_planned(models, clips: list[Clip], family: str) -> None:
    model = models(family)
    processor = _processor(model)
    chosen = get_family(family)
    geometry = vision_geometry(str(model))
    side = geometry.frame_size[0]
    for clip in clips:
        loaded = load_video(str(clip.path), geometry.apply(SamplingOptions()))
        video = VideoInput(loaded.frames, loaded.plan.processor_metadata(), loaded.plan.video_tokens)
        request = CaptionRequest("r", "Describe the video.", [video])
        text = render_prompt(processor, request)
        kwargs = chosen.processor_kwargs(request)
        out = processor(text=text, videos=[loaded.frames], return_tensors="pt", **kwargs)
        pixels = out["pixel_values"] if family == "internvl" else out["pixel_values_videos"][0]
        assert pixels.shape == (8, 3, side, side)  # the card's 8 frames, at the tower's square
        assert out["input_ids"].shape[1] == prompt_token_count(processor, request, chosen)


@pytest.mark.engine
@pytest.mark.parametrize("family", FAMILIES)
def test_run_on_the_engine_matches_the_probe(models, clips: list[Clip], tmp_path: Path, family: str) -> None:
    model = models(family)
    chosen = clips[:3]
    records = [{"id": str(i), "video": str(c.path)} for i, c in enumerate(chosen)]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    out = tmp_path / "out.jsonl"
    engine = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_ENGINE.items() if k != "enforce_eager"]
    result = vidcap(
        "run", str(data), "--output", str(out), "--model", str(model), *engine, "--enforce-eager",
        "--max-tokens", "4", "--temperature", "0", timeout=1200,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-3000:]
    probed = vidcap("probe", *[str(c.path) for c in chosen], "--json", "--model", str(model))
    assert probed.returncode == 0, probed.stderr
    plans = [json.loads(line) for line in probed.stdout.splitlines()]
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in written] == ["0", "1", "2"]
    for record, plan in zip(written, plans, strict=True):
        assert record["status"] == "ok" or record["error"] == "the model returned an empty caption", record
        assert (plan["family"], plan["nframes"]) == (family, 8)
        # vLLM's own prompt length (its processor, its placeholders) = probe's count.
        assert record["info"]["prompt_tokens"] == plan["prompt_tokens"], (record, plan)
    summary = json.loads((tmp_path / "out.jsonl.summary.json").read_text())
    assert summary["vision"]["family"] == family
    assert summary["vision"]["frame_size"] == list(vision_geometry(str(model)).frame_size)
