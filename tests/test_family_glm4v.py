"""GLM-4.1V / GLM-4.5V are fed as their authors feed them.

Reference: transformers 5.19's ``Glm4vVideoProcessor`` (its ``sample_frames`` and ``smart_resize``)
through transformers' video loader (``load_video`` with decord, as the other families' parity
tests), then ``Glm4vProcessor`` for pixels and prompt (a ``<|begin_of_image|>`` group and the
second of each frame pair). On real clips of several codecs and containers: vidcap's plan names
the reference's frames at the reference's size, the processor takes vidcap's frames as they are
with the prompt length vidcap counts, and one ``vidcap run`` on the real vLLM engine (a tiny
random-weight GLM-4.1V) gives each record the prompt length ``vidcap probe`` plans.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY_ENGINE, write_jsonl
from tests.conftest import run_vidcap as vidcap
from tests.corpus import Clip, encode_clip, has_encoder
from tests.test_families import config_only
from vidcap.engines.caption_engine import CaptionRequest, VideoInput
from vidcap.engines.chat import prompt_token_count, render_prompt
from vidcap.families import detect_family, get_family
from vidcap.families.glm4v import sample_indices, smart_resize
from vidcap.model.info import vision_geometry
from vidcap.video.load import load_video
from vidcap.video.types import SamplingOptions

# (encoder, container, frames, fps): odd and even counts, standard and odd rates, < 1 s to 6 s.
CLIPS = [
    ("libx264", "mp4", 37, 10),
    ("mpeg4", "avi", 60, 25),
    ("libvpx-vp9", "webm", 45, 12),
    ("mpeg2video", "ts", 50, 25),
    ("libx264", "mkv", 7, 10),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vidcap.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "glm4v", family="glm4v")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    folder = tmp_path_factory.mktemp("glm-clips")
    made = []
    for n, (encoder, ext, frames, fps) in enumerate(CLIPS):
        if has_encoder(encoder):
            path = folder / f"{n}-{encoder}.{ext}"
            made.append(encode_clip(path, encoder, frames, fps, options={"g": "12"}))
    assert len(made) >= 4
    return made


def _grid(plan) -> list[int]:
    """The processor's ``video_grid_thw`` for a plan's frames as they are (patch 14, pairs)."""
    return [plan.nframes // 2, plan.resized_height // 14, plan.resized_width // 14]


def _processor(model: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model)


@pytest.mark.parametrize(
    "config",
    [
        {"architectures": ["Glm4vForConditionalGeneration"], "model_type": "glm4v"},
        {"architectures": ["Glm4vMoeForConditionalGeneration"], "model_type": "glm4v_moe"},  # GLM-4.5V
        {"model_type": "glm4v"},
    ],
)
def test_glm_checkpoints_are_detected(tmp_path: Path, config: dict) -> None:
    assert detect_family(config).name == "glm4v"
    vision = {"patch_size": 14, "spatial_merge_size": 2}
    folder = config_only(tmp_path / "glm", **config, vision_config=vision)
    geometry = vision_geometry(str(folder))
    assert (geometry.family, geometry.image_factor, geometry.temporal_patch_size) == ("glm4v", 28, 2)


def test_rules_are_the_reference_arithmetic(model: Path) -> None:
    from transformers.models.glm4v.video_processing_glm4v import smart_resize as reference_resize
    from transformers.video_utils import VideoMetadata

    sample = _processor(model).video_processor.sample_frames
    # Short and long (past max_duration 300 s), integer and NTSC rates, asked rates.
    rates = ((1, 30.0), (7, 10.0), (37, 10.0), (61, 29.97), (9001, 29.97), (30000, 25.0), (601, 2.0))
    for total, fps in rates:
        for target in (None, 1.0, 2.0, 3.0):
            meta = VideoMetadata(total_num_frames=total, fps=fps, duration=total / fps)
            expected = sample(meta, fps=target).tolist()
            assert sample_indices(total, fps, target or 2.0) == expected, (total, fps, target)
    for frames in (2, 8, 600):
        for height, width in ((120, 160), (720, 1280), (1080, 1920), (20, 300), (2160, 3840), (13, 13)):
            assert smart_resize(frames, height, width) == reference_resize(
                frames, height, width, min_pixels=112 * 112, max_pixels=28 * 28 * 2 * 30000
            ), (frames, height, width)


@pytest.mark.parametrize("fps", [None, 1.0])
def test_plan_names_the_reference_frames_at_its_size(
    model: Path, clips: list[Clip], fps: float | None
) -> None:
    from transformers.video_utils import load_video as reference_load_video

    processor = _processor(model)
    options = vision_geometry(str(model)).apply(SamplingOptions(fps=fps))
    for clip in clips:

        def sample(metadata, **kwargs):
            return processor.video_processor.sample_frames(metadata, fps=fps)

        frames, meta = reference_load_video(str(clip.path), backend="decord", sample_indices_fn=sample)
        plan = load_video(str(clip.path), options).plan
        assert list(plan.frame_indices) == [int(i) for i in meta.frames_indices], clip.path.name
        assert (plan.total_frames, plan.video_fps) == (meta.total_num_frames, pytest.approx(meta.fps))
        # The reference's own resize of its frames (do_sample_frames off: they are sampled).
        out = processor.video_processor(videos=[frames], do_sample_frames=False, return_tensors="pt")
        grid = out["video_grid_thw"][0].tolist()
        assert grid == _grid(plan), clip.path.name


def test_processor_takes_the_frames_as_planned(model: Path, clips: list[Clip]) -> None:
    processor = _processor(model)
    family = get_family("glm4v")
    geometry = vision_geometry(str(model))
    for clip in clips:
        loaded = load_video(str(clip.path), geometry.apply(SamplingOptions()))
        plan = loaded.plan
        video = VideoInput(loaded.frames, plan.processor_metadata(), plan.video_tokens)
        request = CaptionRequest("r", "Describe the video.", [video])
        text = render_prompt(processor, request)
        kwargs = family.processor_kwargs(request)
        metadata = {k: v for k, v in plan.processor_metadata().items() if k != "do_sample_frames"}
        out = processor(
            text=text, videos=[loaded.frames], video_metadata=[metadata], do_sample_frames=False,
            return_tensors="pt", **kwargs,
        )  # fmt: skip
        assert out["video_grid_thw"][0].tolist() == _grid(plan), clip.path.name
        assert out["input_ids"].shape[1] == prompt_token_count(processor, request, family), clip.path.name
        # Each frame pair is stamped with its first frame's whole second.
        seconds = [str(int(i / plan.video_fps)) for i in plan.frame_indices[::2]]
        decoded = processor.tokenizer.decode(out["input_ids"][0])
        assert decoded.count("<|begin_of_image|>") == len(seconds)
        assert [part.split("<|")[0] for part in decoded.split("<|end_of_image|>")[1:]] == seconds


@pytest.mark.engine
def test_run_on_the_engine_matches_the_probe(model: Path, clips: list[Clip], tmp_path: Path) -> None:
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
    for record, plan, clip in zip(written, plans, chosen, strict=True):
        assert record["status"] == "ok" or record["error"] == "the model returned an empty caption", record
        expected = sample_indices(len(clip.shown), clip.fps)
        assert (plan["family"], plan["nframes"]) == ("glm4v", len(expected))
        # vLLM's own prompt length (its processor, its frame-pair timestamps) = probe's count.
        assert record["info"]["prompt_tokens"] == plan["prompt_tokens"], (record, plan)
    summary = json.loads((tmp_path / "out.jsonl.summary.json").read_text())
    assert summary["vision"]["family"] == "glm4v"


@pytest.mark.parametrize(
    ("size", "rotation", "fps", "total"),
    [((1280, 720), 0, 30.0, 30), ((1920, 1080), 90, 29.97, 11988), ((640, 360), 0, 25.0, 7501)],
)
def test_plan_of_large_and_long_videos_is_the_reference(
    model: Path, size: tuple[int, int], rotation: int, fps: float, total: int
) -> None:
    """Sizes the test clips (160x120) do not reach: the budget past 300 s, a rotated phone clip."""
    from transformers.models.glm4v.video_processing_glm4v import smart_resize as reference_resize
    from transformers.video_utils import VideoMetadata

    from vidcap.video.types import VideoInfo

    sample = _processor(model).video_processor.sample_frames
    info = VideoInfo("v.mp4", "mp4", "h264", *size, rotation, fps, total / fps, total)
    plan = get_family("glm4v").plan(info, vision_geometry(str(model)).apply(SamplingOptions()))
    expected = sample(VideoMetadata(total_num_frames=total, fps=fps, duration=total / fps)).tolist()
    width, height = info.display_size
    assert list(plan.frame_indices) == expected
    assert (plan.resized_height, plan.resized_width) == reference_resize(
        len(expected), height, width, min_pixels=112 * 112, max_pixels=28 * 28 * 2 * 30000
    )
    if total == 30:  # README's example: 2 frames at 1288x728 (the Qwen rule: 4 at 1008x560)
        assert (plan.nframes, plan.resized_width, plan.resized_height) == (2, 1288, 728)


def test_nframes_takes_evenly_spaced_frames_in_pairs(model: Path) -> None:
    """``--nframes`` (no option of the reference processor): N evenly spaced frames, an odd count
    padded with the last, as the processor pads; more than the video holds is cut, with a note."""
    from vidcap.video.plan import frame_indices
    from vidcap.video.types import VideoInfo

    info = VideoInfo("v.mp4", "mp4", "h264", 320, 240, 0, 25.0, 4.0, 100)
    family = get_family("glm4v")
    geometry = vision_geometry(str(model))
    five = family.plan(info, geometry.apply(SamplingOptions(nframes=5)))
    assert list(five.frame_indices) == [*frame_indices(0, 99, 5), frame_indices(0, 99, 5)[-1]]
    assert five.video_tokens == 3 * (five.resized_height // 28) * (five.resized_width // 28)
    short = VideoInfo("v.mp4", "mp4", "h264", 320, 240, 0, 25.0, 0.12, 3)
    cut = family.plan(short, geometry.apply(SamplingOptions(nframes=8)))
    assert list(cut.frame_indices) == [0, 1, 2, 2] and "8 frames asked" in cut.notes[-1]


def test_glm46v_processor_under_the_same_architecture_is_refused(tmp_path: Path, clips: list[Clip]) -> None:
    """GLM-4.6V ships as ``Glm4vMoeForConditionalGeneration`` / ``Glm4vForConditionalGeneration`` with
    ``Glm46VProcessor`` (another frame rule): refused before anything loads, unless ``--family``."""
    from vidcap.errors import VidcapError

    folder = config_only(tmp_path / "glm46v", architectures=["Glm4vMoeForConditionalGeneration"])
    (folder / "processor_config.json").write_text(json.dumps({"processor_class": "Glm46VProcessor"}))
    with pytest.raises(VidcapError, match="its processor is Glm46VProcessor") as caught:
        vision_geometry(str(folder))
    assert "\n" not in str(caught.value)
    assert vision_geometry(str(folder), family="glm4v").family == "glm4v"
    probed = vidcap("probe", str(clips[0].path), "--model", str(folder))
    assert probed.returncode == 2 and "Glm46VProcessor" in probed.stderr, probed.stderr
