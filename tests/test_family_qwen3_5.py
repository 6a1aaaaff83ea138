"""Qwen3.5 (dense and MoE) is fed as its authors feed it: as Qwen3-VL.

Reference: transformers 5.19 maps ``qwen3_5`` and ``qwen3_5_moe`` to ``Qwen3VLProcessor`` and
``Qwen3VLVideoProcessor`` (patch 16 x merge 2, a ``<t seconds>`` text before each frame pair), and
vLLM 0.32's ``Qwen3_5ForConditionalGeneration`` subclasses Qwen3-VL's model and processing; the
video recipe is Qwen3-VL's model card's: qwen-vl-utils 0.0.14 ``process_vision_info`` then the
processor with ``do_resize=False``. On real clips of several codecs and containers: vidcap's
processed input (grid, expanded prompt with its timestamps) equals that reference's, and one
``vidcap run`` on the real vLLM engine (a tiny random-weight Qwen3.5, its Gated DeltaNet layers
on vLLM's CPU kernels) gives each record the prompt length ``vidcap probe`` plans.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY_ENGINE, write_jsonl
from tests.conftest import run_vidcap as vidcap
from tests.corpus import Clip, encode_clip, has_encoder
from tests.test_families import config_only
from tests.test_model_parity import load_processor, reference_inputs, request_for, sampling_for, vidcap_inputs
from vidcap.engines.chat import render_prompt
from vidcap.families import detect_family
from vidcap.model.info import has_linear_attention, vision_geometry

# (encoder, container, frames, fps): odd and even counts, standard and odd rates.
CLIPS = [
    ("libx264", "mp4", 37, 10),
    ("mpeg4", "avi", 60, 25),
    ("libvpx-vp9", "webm", 45, 12),
    ("libx264", "mkv", 7, 10),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vidcap.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "qwen3.5", family="qwen3.5")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    folder = tmp_path_factory.mktemp("qwen3.5-clips")
    made = []
    for n, (encoder, ext, frames, fps) in enumerate(CLIPS):
        if has_encoder(encoder):
            path = folder / f"{n}-{encoder}.{ext}"
            made.append(encode_clip(path, encoder, frames, fps, options={"g": "12"}))
    assert len(made) >= 3
    return made


@pytest.mark.parametrize(
    "config",
    [
        {"architectures": ["Qwen3_5ForConditionalGeneration"], "model_type": "qwen3_5"},
        {"architectures": ["Qwen3_5MoeForConditionalGeneration"], "model_type": "qwen3_5_moe"},
        {"model_type": "qwen3_5"},
    ],
)
def test_qwen3_5_checkpoints_are_detected(tmp_path: Path, config: dict) -> None:
    assert detect_family(config).name == "qwen3.5"
    vision = {"patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2}
    folder = config_only(tmp_path / "qwen3.5", **config, vision_config=vision)
    geometry = vision_geometry(str(folder))
    assert (geometry.family, geometry.image_factor, geometry.temporal_patch_size) == ("qwen3.5", 32, 2)


def test_transformers_feeds_qwen3_5_with_qwen3_vl_processors() -> None:
    """The premise of the family: what transformers loads for a Qwen3.5 checkpoint is Qwen3-VL's."""
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES
    from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING_NAMES

    for model_type in ("qwen3_5", "qwen3_5_moe"):
        assert PROCESSOR_MAPPING_NAMES[model_type] == "Qwen3VLProcessor"
        assert "Qwen3VLVideoProcessor" in str(VIDEO_PROCESSOR_MAPPING_NAMES[model_type])


def test_processed_input_is_the_reference(model: Path, clips: list[Clip]) -> None:
    """Grid and the whole expanded prompt (each frame pair's ``<t seconds>``) equal the card's
    pipeline's (qwen-vl-utils + the processor) on each real clip."""
    processor = load_processor(model)
    assert type(processor).__name__ == "Qwen3VLProcessor"
    for clip in clips:
        request = request_for(clip.path, sampling_for(model), clip.path.name)
        ours = vidcap_inputs(processor, request)
        ref, ref_metadata, _ = reference_inputs(
            processor, clip.path, "qwen3.5", render_prompt(processor, request)
        )
        assert ours["video_grid_thw"].tolist() == ref["video_grid_thw"].tolist(), clip.path.name
        assert ours["input_ids"].tolist() == ref["input_ids"].tolist(), clip.path.name
        md = request.videos[0].metadata
        assert list(md["frames_indices"]) == list(ref_metadata[0]["frames_indices"]), clip.path.name


def test_hybrid_text_model_is_seen_before_loading(model: Path, tmp_path: Path) -> None:
    """Qwen3.5's linear-attention layers are read from its config (the engine then keeps chunked
    prefill or prefix caching off, never both on, where vLLM's CPU build needs that)."""
    assert has_linear_attention(str(model))
    qwen3 = config_only(tmp_path / "qwen3", model_type="qwen3_vl", text_config={"num_hidden_layers": 2})
    assert not has_linear_attention(str(qwen3))


@pytest.mark.engine
def test_run_on_the_engine_matches_the_probe(model: Path, clips: list[Clip], tmp_path: Path) -> None:
    """A seeded run (on vLLM's CPU build: no chunked prefill, so no prefix caching for a hybrid
    model, which vLLM would refuse) captions every record with the prompt length probe plans."""
    chosen = clips[:3]
    records = [{"id": str(i), "video": str(c.path)} for i, c in enumerate(chosen)]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    out = tmp_path / "out.jsonl"
    engine = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_ENGINE.items() if k != "enforce_eager"]
    result = vidcap(
        "run", str(data), "--output", str(out), "--model", str(model), *engine, "--enforce-eager",
        "--max-tokens", "4", "--temperature", "0", "--seed", "0", timeout=1200,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-3000:]
    probed = vidcap("probe", *[str(c.path) for c in chosen], "--json", "--model", str(model))
    assert probed.returncode == 0, probed.stderr
    plans = [json.loads(line) for line in probed.stdout.splitlines()]
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in written] == ["0", "1", "2"]
    for record, plan in zip(written, plans, strict=True):
        assert record["status"] == "ok" or record["error"] == "the model returned an empty caption", record
        assert plan["family"] == "qwen3.5"
        # vLLM's own prompt length (its processor, its frame-pair timestamps) = probe's count.
        assert record["info"]["prompt_tokens"] == plan["prompt_tokens"], (record, plan)
    summary = json.loads((tmp_path / "out.jsonl.summary.json").read_text())
    assert summary["vision"]["family"] == "qwen3.5"
