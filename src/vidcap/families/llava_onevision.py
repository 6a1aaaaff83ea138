"""LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``, the llava-hf checkpoints).

Reference: the transformers model card of LLaVA-OneVision (``llava-hf/llava-onevision-qwen2-*-ov-hf``,
"Video inference") passes ``num_frames=8`` to ``apply_chat_template``; transformers 5.19's
``LlavaOnevisionVideoProcessor`` samples with ``default_sample_indices_fn``:
``arange(n) * total // n`` (the first frame of each of n equal slots), and resizes every frame to
its ``size`` square (384 x 384, the SigLIP tower's ``image_size``), aspect ratio not kept. vLLM
0.32 (``llava_onevision.py``) runs that processor and counts, per video, the frames x the pooled
patch grid (``ceil(image_size / patch_size / 2)^2``: 196 for 384 / 14) plus one newline token,
all ``<video>`` tokens in the prompt.

``--fps`` counts frames as the reference does (``int(total / video_fps * fps)``), ``--nframes``
is the count; a count above the video's frames is cut to them (the reference raises), with a note.
No temporal metadata reaches the model.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from vidcap.families.family import Family, VisionGeometry, fixed_frame_count, text_token_count
from vidcap.video.plan import frame_range, resolve_rate
from vidcap.video.types import FramePlan

if TYPE_CHECKING:
    from vidcap.video.types import SamplingOptions, VideoInfo

#: The model card's frame count (``num_frames=8``).
DEFAULT_FRAMES = 8


def slot_starts(total: int, n: int) -> list[int]:
    """``np.arange(n, dtype=int) * total // n``: the first frame of each of n equal slots."""
    return [i * total // n for i in range(n)]


class LlavaOnevision(Family):
    """LLaVA-OneVision: the first frame of each of 8 equal slots, each squashed to the tower's square."""

    name = "llava-onevision"
    label = "LLaVA-OneVision"
    model_types = ("llava_onevision",)
    architectures = ("LlavaOnevisionForConditionalGeneration",)
    reference = "transformers LlavaOnevisionVideoProcessor (5.19) with the model card's num_frames=8"
    frame_rule = "8 frames, the first of each of 8 equal slots; each resized to 384x384"

    def geometry(self, config: dict[str, Any]) -> VisionGeometry:
        """The SigLIP tower's square, and its patch grid pooled by 2 (rounding up) per frame."""
        vision = config.get("vision_config") or {}
        side = int(vision.get("image_size", 384))
        patch = int(vision.get("patch_size", 14))
        pooled = math.ceil(side // patch / int(config.get("spatial_pool_stride", 2)))
        return VisionGeometry(
            image_factor=patch,
            temporal_patch_size=1,
            family=self.name,
            frame_size=(side, side),
            frame_tokens=pooled * pooled,
        )

    def plan(
        self,
        info: VideoInfo,
        options: SamplingOptions,
        *,
        video_start: float | None = None,
        video_end: float | None = None,
    ) -> FramePlan:
        """The reference's frames of the video (or of its segment), at the tower's square."""
        fps, total, notes = resolve_rate(info)
        start_frame, _, seg_total = frame_range(total, fps, video_start, video_end, notes)
        nframes = fixed_frame_count(options, seg_total, fps, DEFAULT_FRAMES, notes)
        indices = [start_frame + i for i in slot_starts(seg_total, nframes)]
        height, width = options.frame_size or (384, 384)
        per_frame = options.frame_tokens if options.frame_tokens is not None else 196
        return FramePlan(
            nframes=nframes,
            frame_indices=tuple(indices),
            timestamps=tuple(index / fps for index in indices),
            resized_width=width,
            resized_height=height,
            video_fps=fps,
            total_frames=seg_total,
            sample_fps=nframes / max(seg_total, 1e-6) * fps,
            video_tokens=nframes * per_frame + 1,  # + the newline token after the frames
            notes=tuple(notes),
        )

    def placeholder_tokens(self, processor: Any, video: Any) -> int:
        """The processor's own ``replace_video_token`` for the video's frame count, in tokens."""
        placeholder = processor.replace_video_token({"pixel_values_videos": [video.frames]}, 0)
        return text_token_count(processor, placeholder)

    def processor_kwargs(self, request: Any) -> dict[str, Any]:
        """None needed: the processor resizes to the square the frames already have, and samples
        no frames (``do_sample_frames`` is off in its defaults and in the metadata). (The Qwen
        ``size`` bounds, read here as edge lengths, made it allocate ~200 GB.)"""
        return {}
