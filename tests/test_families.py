"""Model families: detection from config.json, ``--family``, and refusing what vidcap cannot feed.

None of these load a model: a folder holding only a ``config.json`` is enough, because the
family is found (or the checkpoint refused) before anything loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_vidcap as vidcap
from tests.conftest import write_jsonl
from tests.test_cli_errors import assert_one_line_error
from vidcap.config import EngineConfig, RunConfig, RunOptions, build_config
from vidcap.engines.caption_engine import CaptionRequest, VideoInput
from vidcap.errors import ENGINE_ERROR_CHARS, VidcapError, engine_error
from vidcap.families import FAMILIES, detect_family, resolve_family
from vidcap.model.info import vision_geometry
from vidcap.pipeline.requests import length_problem


def config_only(folder: Path, **config: object) -> Path:
    """A model folder holding only ``config.json``: enough to detect a family, nothing loads."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


QWEN3 = {"architectures": ["Qwen3VLForConditionalGeneration"], "model_type": "qwen3_vl",
         "vision_config": {"patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2}}  # fmt: skip


@pytest.mark.parametrize(
    ("config", "family"),
    [
        ({"architectures": ["Qwen2VLForConditionalGeneration"]}, "qwen2.5-vl"),
        ({"architectures": ["Qwen2_5_VLForConditionalGeneration"]}, "qwen2.5-vl"),
        ({"architectures": ["Qwen3VLMoeForConditionalGeneration"]}, "qwen3-vl"),
        ({"model_type": "qwen3_vl"}, "qwen3-vl"),  # no architectures: model_type decides
        ({"architectures": ["FooForCausalLM"], "model_type": "foo"}, None),
    ],
)
def test_family_is_detected_from_the_config(config: dict, family: str | None) -> None:
    found = detect_family(config)
    assert (found.name if found else None) == family


def test_geometry_follows_the_family(tmp_path: Path) -> None:
    geometry = vision_geometry(str(config_only(tmp_path / "q3", **QWEN3)))
    assert (geometry.family, geometry.image_factor, geometry.temporal_patch_size) == ("qwen3-vl", 32, 2)


def test_unknown_architecture_is_refused_naming_it_and_the_families(tmp_path: Path) -> None:
    model = config_only(tmp_path / "foo", architectures=["FooVLForConditionalGeneration"], model_type="foo")
    with pytest.raises(VidcapError) as caught:
        vision_geometry(str(model))
    message = str(caught.value)
    assert "FooVLForConditionalGeneration" in message and "\n" not in message
    assert all(name in message for name in FAMILIES)


def test_image_only_architecture_is_refused_even_with_a_family(tmp_path: Path) -> None:
    config = {"architectures": ["Idefics3ForConditionalGeneration"], "model_type": "idefics3"}
    for family in (None, "qwen2.5-vl"):
        with pytest.raises(VidcapError, match="Idefics3ForConditionalGeneration takes images only"):
            resolve_family(config, model="smol", override=family)


def test_family_flag_names_the_family_of_an_unknown_architecture(tmp_path: Path) -> None:
    model = config_only(tmp_path / "ft", architectures=["MyFineTune"], vision_config=QWEN3["vision_config"])
    geometry = vision_geometry(str(model), family="qwen3-vl")
    assert (geometry.family, geometry.image_factor) == ("qwen3-vl", 32)
    with pytest.raises(VidcapError, match=r"unknown --family 'nope'; supported families: qwen2\.5-vl"):
        vision_geometry(str(model), family="nope")


def test_family_is_a_config_key_of_the_engine() -> None:
    config = build_config({"family": "qwen3-vl"}, {"model": "m"})
    assert config.engine.family == "qwen3-vl"
    assert config.sampling.family == "qwen2.5-vl"  # the plan's family is set from the model, not here


def test_probe_refuses_an_unknown_model_before_reading_videos(tmp_path: Path, clip_dir: Path) -> None:
    model = config_only(tmp_path / "foo", architectures=["FooVLForConditionalGeneration"])
    result = vidcap("probe", str(clip_dir / "a.mp4"), "--model", str(model))
    assert_one_line_error(result, "FooVLForConditionalGeneration", "supported families: qwen2.5-vl, qwen3-vl")


def test_probe_plans_for_the_named_family(tmp_path: Path, clip_dir: Path) -> None:
    model = config_only(tmp_path / "ft", architectures=["MyFineTune"], vision_config=QWEN3["vision_config"])
    result = vidcap("probe", str(clip_dir / "a.mp4"), "--json", "--model", str(model), "--family", "qwen3-vl")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["resized_width"] % 32 == 0 and row["resized_height"] % 32 == 0


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (
            {"architectures": ["SmolVLMForConditionalGeneration"]},
            "SmolVLMForConditionalGeneration takes images only",
        ),
        (
            {"architectures": ["FooVLForConditionalGeneration"]},
            "architecture FooVLForConditionalGeneration is not",
        ),
    ],
)
def test_run_refuses_before_the_model_loads(
    tmp_path: Path, clip_dir: Path, config: dict, needle: str
) -> None:
    # The folder holds no weights: a run that tried to load it would fail otherwise, and later.
    model = config_only(tmp_path / "model", **config)
    data = write_jsonl(tmp_path / "data.jsonl", [{"id": "1", "video": str(clip_dir / "a.mp4")}])
    out = tmp_path / "out.jsonl"
    result = vidcap("run", str(data), "--output", str(out), "--model", str(model))
    assert_one_line_error(result, needle, "qwen2.5-vl, qwen3-vl")
    assert not out.exists() or out.read_text() == ""


def test_engine_error_leaves_out_a_frame_array() -> None:
    frames = np.zeros((4, 64, 64, 3), dtype=np.uint8)
    error = ValueError(f"cannot process video input {frames!r}\nshape mismatch")
    text = engine_error(error)
    assert text.startswith("ValueError: cannot process video input") and "(data left out)" in text
    assert "\n" not in text and "0, 0" not in text
    assert len(engine_error("x" * 5000)) <= ENGINE_ERROR_CHARS


class _CountFails:
    """An engine whose processor refuses the record (as InternVL's did before its family)."""

    max_model_len = 4096

    def count_prompt_tokens(self, request: CaptionRequest) -> int:
        raise AttributeError("'InternVLVideoProcessor' object has no attribute 'patch_size'")


def test_a_processor_failure_is_the_records_error_in_one_line() -> None:
    video = VideoInput(np.zeros((2, 28, 28, 3), dtype=np.uint8), {"fps": 2.0}, 2)
    request = CaptionRequest("r1", "describe", [video])
    config = RunConfig(run=RunOptions(input="x"), engine=EngineConfig(model="m"))
    problem = length_problem(_CountFails(), request, config)  # type: ignore[arg-type]
    assert problem == (
        "the model's processor cannot take this record: "
        "AttributeError: 'InternVLVideoProcessor' object has no attribute 'patch_size'"
    )


def test_probe_shows_the_family_and_the_prompt_length_of_the_run(tiny_model: Path, clip_dir: Path) -> None:
    from transformers import AutoProcessor

    from vidcap.config import DEFAULT_PROMPT
    from vidcap.engines.chat import prompt_token_count
    from vidcap.families import get_family
    from vidcap.video.load import load_video
    from vidcap.video.types import SamplingOptions

    clip = clip_dir / "b.mp4"
    result = vidcap("probe", str(clip), "--json", "--model", str(tiny_model))
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["family"] == "qwen2.5-vl"
    # What the engines count for the run's default prompt with this video's planned frames.
    options = vision_geometry(str(tiny_model)).apply(SamplingOptions())
    loaded = load_video(str(clip), options)
    request = CaptionRequest(
        "r",
        DEFAULT_PROMPT,
        [VideoInput(loaded.frames, loaded.plan.processor_metadata(), loaded.plan.video_tokens)],
    )
    processor = AutoProcessor.from_pretrained(tiny_model)
    assert row["prompt_tokens"] == prompt_token_count(processor, request, get_family("qwen2.5-vl"))
    assert row["prompt_tokens"] > row["video_tokens"]

    table = vidcap("probe", str(clip), "--model", str(tiny_model))
    assert table.stdout.splitlines()[0].startswith(
        "model family: Qwen2-VL / Qwen2.5-VL (qwen2.5-vl); frames as"
    )


def test_vision_facts_name_the_family_and_its_reference() -> None:
    from vidcap.families import vision_facts
    from vidcap.video.types import SamplingOptions

    geometry = resolve_family({"architectures": ["InternVLForConditionalGeneration"]}, model="m").geometry(
        {"vision_config": {"image_size": [448, 448], "patch_size": [14, 14]}, "downsample_ratio": 0.5}
    )
    facts = vision_facts(geometry.apply(SamplingOptions()))
    assert facts["family"] == "internvl" and "InternVLVideoProcessor" in facts["reference"]
    assert (facts["frame_size"], facts["image_factor"], facts["temporal_patch_size"]) == ([448, 448], 28, 1)


def test_family_without_a_model_is_checked_too() -> None:
    geometry = vision_geometry(None, family="qwen3-vl")  # a server's model: the family's own factor
    assert (geometry.family, geometry.image_factor) == ("qwen3-vl", 32)
    with pytest.raises(VidcapError, match="unknown --family 'x'"):
        vision_geometry(None, family="x")
