"""Model families in a registry: one module per family, detected from ``config.json``.

The shape of vLLM's ``examples/offline_inference/vision_language.py``: one small object per
family, registered by name. ``detect_family`` finds a checkpoint's family from its config's
``architectures`` (then ``model_type``) before anything loads; ``plan_video`` plans a video
with the family named in the sampling options (torch-free: decode workers call it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vidcap.families.base import Family, VisionGeometry
from vidcap.families.qwen_vl import Qwen2_5VL, Qwen3VL

if TYPE_CHECKING:
    from vidcap.video.types import FramePlan, SamplingOptions, VideoInfo

__all__ = [
    "DEFAULT_FAMILY",
    "FAMILIES",
    "Family",
    "VisionGeometry",
    "detect_family",
    "get_family",
    "plan_video",
]

#: Every family vidcap can feed, by registry name.
FAMILIES: dict[str, Family] = {family.name: family for family in (Qwen2_5VL(), Qwen3VL())}

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


def plan_video(
    info: VideoInfo,
    options: SamplingOptions,
    *,
    video_start: float | None = None,
    video_end: float | None = None,
) -> FramePlan:
    """Plan ``info`` with the frame rule of ``options.family`` (see each family's ``plan``)."""
    return get_family(options.family).plan(info, options, video_start=video_start, video_end=video_end)
