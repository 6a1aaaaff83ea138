"""InternVL3 and InternVL3.5 in the transformers format (``InternVLForConditionalGeneration``).

Reference: the transformers model card of InternVL (``OpenGVLab/InternVL3-1B-hf`` and the
docs' "Video input" example) feeds a video through ``InternVLProcessor`` with
``num_frames=8``; ``InternVLVideoProcessor.sample_frames`` (transformers 5.19) then takes
``torch.arange(total / n / 2, total, total / n).int()``: n frames, each from the middle of one
of n equal slots. Every frame is resized to the image processor's square (448 x 448 in the
InternVL3/3.5 checkpoints, ``vision_config.image_size``), aspect ratio not kept: vLLM 0.32
(``interns1.py``) builds the video processor with the image processor's ``size``. Each frame
costs ``image_seq_length`` tokens ((image_size / patch_size)^2 x downsample_ratio^2: 256), and
the prompt puts ``Frame{i}: <img>`` + those tokens + ``</img>`` on one line per frame.

Where the reference samples with ``fps`` (``--fps``), the count is ``int(total / video_fps * fps)``
as there; ``--nframes`` is the count itself. A count above the video's frames is cut to them
(the reference raises), with a note. No temporal metadata reaches the model.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from vidcap.families.family import Family, VisionGeometry, fixed_frame_count, text_token_count
from vidcap.video.plan import frame_range, resolve_rate, video_token_count
from vidcap.video.types import FramePlan

if TYPE_CHECKING:
    from vidcap.video.types import SamplingOptions, VideoInfo

#: The model card's frame count (``num_frames=8``).
DEFAULT_FRAMES = 8


def _pair(value: Any, default: int) -> tuple[int, int]:
    """``image_size``/``patch_size`` as (height, width): an int or a [h, w] list in the config."""
    if value is None:
        return default, default
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


def slot_middles(total: int, n: int) -> list[int]:
    """``torch.arange(total / n / 2, total, total / n).int().tolist()`` without torch.

    torch makes the count ``ceil((end - start) / step)`` and each value ``start + i * step`` in
    double precision, stored as float32 (the default dtype) and truncated by ``.int()``.
    """
    shift = total / n / 2
    step = total / n
    size = math.ceil((total - shift) / step)
    values = (shift + step * np.arange(size, dtype=np.float64)).astype(np.float32)
    return values.astype(np.int32).tolist()


class InternVL(Family):
    """InternVL3/3.5 (HF format): n frames from the middles of n equal slots, each squashed to the
    vision tower's square."""

    name = "internvl"
    label = "InternVL3 / InternVL3.5 (HF format)"
    model_types = ("internvl",)
    architectures = ("InternVLForConditionalGeneration",)
    reference = "transformers InternVLVideoProcessor (5.19) with the model card's num_frames=8"
    frame_rule = "8 frames, one from the middle of each of 8 equal slots; each resized to 448x448"

    def geometry(self, config: dict[str, Any]) -> VisionGeometry:
        """One token per (patch / downsample_ratio)^2 pixels of the ``image_size`` square."""
        vision = config.get("vision_config") or {}
        height, width = _pair(vision.get("image_size"), 448)
        patch = _pair(vision.get("patch_size"), 14)[0]
        downsample = float(config.get("downsample_ratio", 0.5))
        return VisionGeometry(
            image_factor=round(patch / downsample),
            temporal_patch_size=1,
            family=self.name,
            frame_size=(height, width),
        )

    def plan(
        self,
        info: VideoInfo,
        options: SamplingOptions,
        *,
        video_start: float | None = None,
        video_end: float | None = None,
    ) -> FramePlan:
        """The reference's frames of the video (or of its segment), at the vision tower's size."""
        fps, total, notes = resolve_rate(info)
        start_frame, _, seg_total = frame_range(total, fps, video_start, video_end, notes)
        nframes = fixed_frame_count(options, seg_total, fps, DEFAULT_FRAMES, notes)
        indices = [start_frame + i for i in slot_middles(seg_total, nframes)]
        height, width = options.frame_size or (448, 448)
        return FramePlan(
            nframes=len(indices),
            frame_indices=tuple(indices),
            timestamps=tuple(index / fps for index in indices),
            resized_width=width,
            resized_height=height,
            video_fps=fps,
            total_frames=seg_total,
            sample_fps=len(indices) / max(seg_total, 1e-6) * fps,
            video_tokens=video_token_count(len(indices), height, width, options.image_factor, 1),
            notes=tuple(notes),
        )

    def placeholder_tokens(self, processor: Any, video: Any) -> int:
        """The processor's own ``replace_video_token`` text for the video's frame count, in tokens."""
        frames = np.empty((len(video.frames), 0))
        return text_token_count(
            processor, processor.replace_video_token({"pixel_values_videos": [frames]}, 0)
        )

    def processor_kwargs(self, request: Any) -> dict[str, Any]:
        """None needed: the video processor resizes to the square the frames already have, and
        samples no frames (``do_sample_frames`` is off in its defaults and in the metadata)."""
        return {}
