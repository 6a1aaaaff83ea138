"""Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3.5 (dense and MoE).

Reference: qwen-vl-utils 0.0.14 ``fetch_video`` (decord backend), which the model cards use,
followed by the transformers processor (``Qwen2VLVideoProcessor`` / ``Qwen3VLVideoProcessor``)
with frame sampling off. The frame rule is ``vidcap.video.plan.plan_frames``: 2 fps, 4..768
frames in pairs, each frame resized to multiples of the patch factor within a per-frame and
a whole-video pixel budget. Qwen3-VL's processor puts a ``<t seconds>`` text and vision
markers before every temporal pair of frames; the token count asks the processor for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from vidcap.families.family import Family, VisionGeometry, hf_video_metadata, text_token_count
from vidcap.video.plan import plan_frames

if TYPE_CHECKING:
    from vidcap.video.types import FramePlan, SamplingOptions, VideoInfo


class QwenVLFamily(Family):
    """The Qwen VL families: the qwen-vl-utils frame rule, the processor's own placeholder."""

    reference = "qwen-vl-utils 0.0.14 fetch_video + the transformers processor (model card)"
    default_factor = 28  # patch size x spatial merge, when a config does not say
    frame_rule = "2 fps, 4-768 frames in pairs, sizes in multiples of the patch factor within a pixel budget"

    def geometry(self, config: dict[str, Any]) -> VisionGeometry:
        """Patch factor = ``patch_size`` x ``spatial_merge_size`` of ``vision_config``."""
        vision = config.get("vision_config")
        if not isinstance(vision, dict) or "patch_size" not in vision:  # the family's own factor
            return VisionGeometry(image_factor=self.default_factor, family=self.name)
        merge = int(vision.get("spatial_merge_size", 2))
        return VisionGeometry(
            image_factor=int(vision["patch_size"]) * merge,
            temporal_patch_size=int(vision.get("temporal_patch_size", 2)),
            family=self.name,
        )

    def plan(
        self,
        info: VideoInfo,
        options: SamplingOptions,
        *,
        video_start: float | None = None,
        video_end: float | None = None,
    ) -> FramePlan:
        """The qwen-vl-utils 0.0.14 plan (``vidcap.video.plan.plan_frames``)."""
        return plan_frames(info, options, video_start=video_start, video_end=video_end)

    def placeholder_tokens(self, processor: Any, video: Any) -> int:
        """Tokens that replace one video's placeholder token in the prompt.

        Asked of the processor's own ``replace_video_token`` (transformers >= 5.10) with the
        planned grid and metadata, so the count follows the model family: Qwen2/2.5-VL put
        ``video_tokens`` pad tokens there; Qwen3-VL puts, before each temporal patch of frames,
        a ``<t seconds>`` text and vision start/end markers around its pad tokens. vLLM builds the
        same tokens (it tokenizes each timestamp text alone, which is the same here: special
        tokens split the text on both sides). A processor without that method: ``video_tokens``.
        """
        return processor_placeholder_tokens(processor, video)

    def processor_kwargs(self, request: Any) -> dict[str, Any]:
        """Processor kwargs that make the HF video processor keep the planned frame size.

        The frames already have the planned size, a multiple of the patch factor; the processor's
        own ``smart_resize`` must leave them alone, whatever min/max pixels the checkpoint's
        preprocessor config holds. The families read ``size`` differently: Qwen2/2.5-VL bound
        one frame's area (H x W), Qwen3-VL the whole video's T x H x W (T rounded to a whole
        temporal patch). ``shortest_edge`` = the smallest frame area and ``longest_edge`` = the
        largest video volume keep every planned video inside both readings, so the same kwargs
        serve both families (and a server whose model vidcap cannot see).

        transformers' coming per-frame pixel cap (``cap_pixels_per_frame``, on by default from
        5.22) bounds a frame by ``max(min(cap, longest_edge / T), 1.05 * shortest_edge)`` (Qwen3-VL)
        or ``max(min(longest_edge, budget / T), 1.05 * shortest_edge)`` (Qwen2/2.5-VL): with
        these bounds a single video's frames are at most ``shortest_edge``, under the floor, so
        the cap changes nothing either way. Hence nothing else is pinned: ``cap_pixels_per_frame``
        itself will be removed from transformers, and passing it would then fail.
        """
        return qwen_fixed_size_kwargs(request)


def qwen_fixed_size_kwargs(request: Any) -> dict[str, Any]:
    """The ``size`` bounds of ``QwenVLFamily.processor_kwargs`` (see there)."""
    if not request.videos:
        return {}
    areas = [int(v.frames.shape[1]) * int(v.frames.shape[2]) for v in request.videos]
    # Qwen3-VL rounds T to an even count (round half to even), at most one frame more.
    volumes = [(len(v.frames) + 1) * area for v, area in zip(request.videos, areas, strict=True)]
    return {"size": {"shortest_edge": min(areas), "longest_edge": max(volumes)}}


def processor_placeholder_tokens(processor: Any, video: Any) -> int:
    """The tokens of the processor's own ``replace_video_token`` for ``video`` (a VideoInput): its
    grid (frames / temporal patch, height / patch, width / patch) and its metadata, as the
    processor's own outputs give them. A processor without that method: ``video.video_tokens``."""
    from transformers.processing_utils import ProcessorMixin

    replace = getattr(type(processor), "replace_video_token", None)
    video_processor = getattr(processor, "video_processor", None)
    if replace is None or replace is ProcessorMixin.replace_video_token or video_processor is None:
        return int(video.video_tokens)
    from transformers.video_utils import VideoMetadata

    patch = int(video_processor.patch_size)
    temporal = int(video_processor.temporal_patch_size)
    frames, height, width = (int(n) for n in video.frames.shape[:3])
    grid = np.array([[-(-frames // temporal), height // patch, width // patch]])
    metadata = VideoMetadata(**hf_video_metadata(video.metadata))
    if metadata.frames_indices is not None:  # the processor may pad this list in place
        metadata.frames_indices = list(metadata.frames_indices)
    placeholder = processor.replace_video_token({"video_grid_thw": grid, "video_metadata": [metadata]}, 0)
    return text_token_count(processor, placeholder)


class Qwen2_5VL(QwenVLFamily):
    """Qwen2-VL and Qwen2.5-VL (patch 14 x merge 2 = 28)."""

    name = "qwen2.5-vl"
    label = "Qwen2-VL / Qwen2.5-VL"
    model_types = ("qwen2_vl", "qwen2_5_vl")
    default_factor = 28
    architectures = ("Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration")


class Qwen3VL(QwenVLFamily):
    """Qwen3-VL, dense and MoE (patch 16 x merge 2 = 32; frame-pair timestamps in the prompt)."""

    name = "qwen3-vl"
    label = "Qwen3-VL (dense and MoE)"
    model_types = ("qwen3_vl", "qwen3_vl_moe")
    default_factor = 32
    architectures = ("Qwen3VLForConditionalGeneration", "Qwen3VLMoeForConditionalGeneration")


class Qwen3_5(Qwen3VL):
    """Qwen3.5, dense and MoE: natively multimodal, a hybrid (Gated DeltaNet + full attention)
    text model behind Qwen3-VL's vision tower. transformers 5.19 maps ``qwen3_5`` and
    ``qwen3_5_moe`` to ``Qwen3VLProcessor`` / ``Qwen3VLVideoProcessor`` and vLLM 0.32's
    ``Qwen3_5ForConditionalGeneration`` subclasses Qwen3-VL's (same ``Qwen3VLProcessingInfo``), so
    frames, grid and ``<t seconds>`` prompt are Qwen3-VL's: patch 16 x merge 2 = 32."""

    name = "qwen3.5"
    label = "Qwen3.5 (dense and MoE)"
    model_types = ("qwen3_5", "qwen3_5_moe")
    default_factor = 32
    architectures = ("Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration")
