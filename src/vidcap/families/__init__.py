"""Model families in a registry: one module per family, detected from ``config.json``.

The shape of vLLM's ``examples/offline_inference/vision_language.py``: one small object per
family, registered by name. ``detect_family`` finds a checkpoint's family from its config's
``architectures`` (then ``model_type``) before anything loads; ``plan_video`` plans a video
with the family named in the sampling options (torch-free: decode workers call it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vidcap.errors import VidcapError
from vidcap.families.family import Family, VisionGeometry
from vidcap.families.glm4v import Glm4v
from vidcap.families.internvl import InternVL
from vidcap.families.llava_onevision import LlavaOnevision
from vidcap.families.qwen_vl import Qwen2_5VL, Qwen3_5, Qwen3VL

if TYPE_CHECKING:
    from vidcap.video.types import FramePlan, SamplingOptions, VideoInfo

__all__ = [
    "DEFAULT_FAMILY",
    "FAMILIES",
    "IMAGE_ONLY_ARCHITECTURES",
    "Family",
    "VisionGeometry",
    "detect_family",
    "get_family",
    "named_family",
    "plan_video",
    "resolve_family",
    "supported",
    "vision_facts",
]

#: Every family vidcap can feed, by registry name.
FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (Qwen2_5VL(), Qwen3VL(), Qwen3_5(), InternVL(), LlavaOnevision(), Glm4v())
}

#: The family of a model vidcap cannot see (no config: a server's model, a test double).
DEFAULT_FAMILY = "qwen2.5-vl"


def get_family(name: str) -> Family:
    """The family registered as ``name``; KeyError for an unknown name."""
    return FAMILIES[name]


def detect_family(config: dict[str, Any]) -> Family | None:
    """The family of a checkpoint from its ``config.json`` dict; None when no family claims it.

    ``architectures`` decides (it is what vLLM dispatches on); ``model_type`` is the fallback
    for configs without it.
    """
    architectures = config.get("architectures") or []
    for family in FAMILIES.values():
        if any(arch in family.architectures for arch in architectures):
            return family
    model_type = config.get("model_type")
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    return None


# Vision-language architectures that vLLM 0.32 serves for images only: no video input there.
IMAGE_ONLY_ARCHITECTURES = frozenset(
    {
        "Idefics3ForConditionalGeneration",
        "SmolVLMForConditionalGeneration",
        "LlavaForConditionalGeneration",
        "PaliGemmaForConditionalGeneration",
        "Gemma3ForConditionalGeneration",
        "MllamaForConditionalGeneration",
        "Mistral3ForConditionalGeneration",
        "PixtralForConditionalGeneration",
    }
)


def supported() -> str:
    """The registry names, for messages: ``qwen2.5-vl, qwen3-vl, ...``."""
    return ", ".join(FAMILIES)


def named_family(name: str) -> Family:
    """The family ``--family`` names; VidcapError naming the supported ones otherwise."""
    family = FAMILIES.get(name.strip().lower())
    if family is None:
        raise VidcapError(f"unknown --family {name!r}; supported families: {supported()}")
    return family


def resolve_family(config: dict[str, Any], *, model: str, override: str | None = None) -> Family:
    """The family that feeds checkpoint ``model`` (``config``: its ``config.json`` dict).

    ``override`` (``--family``) names it for a checkpoint whose config does not say (a
    fine-tune under another architecture name). Raises VidcapError, one line naming the
    architecture and the supported families, for a checkpoint that takes no video in vLLM
    (image-only: even with ``override``) or of no known family.
    """
    architectures = [str(a) for a in config.get("architectures") or []]
    what = "/".join(architectures) or f"model_type {config.get('model_type')!r}"
    image_only = [a for a in architectures if a in IMAGE_ONLY_ARCHITECTURES]
    if image_only:
        raise VidcapError(
            f"model {model}: {image_only[0]} takes images only in vLLM, no video; "
            f"video families vidcap supports: {supported()}"
        )
    if override is not None:
        return named_family(override)
    family = detect_family(config)
    if family is None:
        raise VidcapError(
            f"model {model}: architecture {what} is not a video model family vidcap knows; "
            f"supported families: {supported()} (if it is one of them, say which with --family)"
        )
    if not family.takes_video:
        raise VidcapError(f"model {model}: {what} takes no video in vLLM; supported families: {supported()}")
    return family


def vision_facts(options: SamplingOptions) -> dict[str, Any]:
    """What the run's summary says about how the model is fed: its family, the reference the
    frame rule follows, and the geometry the plans were made with."""
    family = get_family(options.family)
    return {
        "family": family.name,
        "reference": family.reference,
        "frame_rule": family.frame_rule,
        "image_factor": options.image_factor,
        "temporal_patch_size": options.temporal_patch_size,
        "frame_size": list(options.frame_size) if options.frame_size else None,
    }


def plan_video(
    info: VideoInfo,
    options: SamplingOptions,
    *,
    video_start: float | None = None,
    video_end: float | None = None,
) -> FramePlan:
    """Plan ``info`` with the frame rule of ``options.family`` (see each family's ``plan``)."""
    return get_family(options.family).plan(info, options, video_start=video_start, video_end=video_end)
