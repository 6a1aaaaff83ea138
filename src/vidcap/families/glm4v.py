"""GLM-4.1V and GLM-4.5V (``Glm4vForConditionalGeneration``, ``Glm4vMoeForConditionalGeneration``).

Reference: the transformers model card of GLM-4.1V (``zai-org/GLM-4.1V-9B-Thinking``) feeds a
video through ``Glm4vProcessor``; transformers 5.19's ``Glm4vVideoProcessor.sample_frames``
takes, for a video of ``duration = total / fps`` seconds up to ``max_duration`` (300 s),
``n = max(floor(duration x 2), 1)`` frames at ``min(total - 1, ceil(i x fps / 2))`` (2 = its
``fps``); a longer video gets ``300 x 2`` frames at ``ceil(t x fps)`` for ``t`` in
``linspace(0, duration, 600)``. Repeated indices are dropped and an odd count is padded by
repeating the last frame (the frames go in pairs). Each frame is resized by its
``smart_resize``: height and width rounded to multiples of 28 (patch 14 x merge 2), and, when
the whole video (frames x height x width) lies outside 112x112 .. 28x28x2x30000 pixels
(``size`` of the GLM-4.1V checkpoints), scaled into it. The processor's prompt puts, for each
frame pair, ``<|begin_of_image|>`` + the pair's tokens + ``<|end_of_image|>`` and the pair's
first frame's whole second (``int(index / fps)``) as text, inside the template's
``<|begin_of_video|>...<|end_of_video|>``; vLLM 0.32 (``glm4_1v.py``) builds the same tokens
from the metadata's ``frames_indices`` and ``fps`` when frame sampling is off.

GLM-4.6V ships under the same architectures with another processor (``Glm46VProcessor``: its own
frame rates and ``<t> seconds`` stamps): a local checkpoint whose processor files name it is
refused (``--family glm4v`` feeds it this way anyway).

``--fps`` replaces the reference's 2 per second; ``--nframes N`` (not a reference option) takes
N evenly spaced frames, padded to a pair. vidcap's frames have the planned size already, and the
processor is told so (``size`` = the video's own frames x height x width): it leaves them alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vidcap.errors import VidcapError
from vidcap.families.family import Family, VisionGeometry
from vidcap.families.qwen_vl import processor_placeholder_tokens
from vidcap.video.plan import frame_indices, frame_range, resolve_rate, video_token_count
from vidcap.video.types import FramePlan

if TYPE_CHECKING:
    from vidcap.video.types import SamplingOptions, VideoInfo

#: ``Glm4vVideoProcessor``'s defaults, which the GLM-4.1V checkpoints keep.
DEFAULT_FPS = 2.0
MAX_DURATION = 300
MIN_PIXELS = 112 * 112
MAX_PIXELS = 28 * 28 * 2 * 30000
#: Where a checkpoint names its processor class (``check_checkpoint``).
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json")


def sample_indices(total: int, fps: float, target_fps: float = DEFAULT_FPS) -> list[int]:
    """``Glm4vVideoProcessor.sample_frames`` (transformers 5.19) for ``total`` frames at ``fps``:
    the frame indices, repeats dropped, an odd count padded with the last one."""
    max_index = total - 1
    duration = total / fps or round(max_index / fps) + 1
    if duration <= MAX_DURATION:
        n = max(math.floor(duration * target_fps), 1)
        indices = [min(max_index, math.ceil(i * fps / target_fps)) for i in range(n)]
    else:
        samples = int(MAX_DURATION * target_fps)
        if samples >= total:
            indices = list(range(total))
        else:
            seconds = np.linspace(0, duration, samples, endpoint=True)
            indices = [min(max_index, math.ceil(t * fps)) for t in seconds]
    unique = list(dict.fromkeys(indices))
    if len(unique) % 2:
        unique.append(unique[-1])
    return unique


def smart_resize(
    frames: int, height: int, width: int, factor: int = 28, temporal: int = 2,
    min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS,
) -> tuple[int, int]:  # fmt: skip
    """``transformers.models.glm4v.video_processing_glm4v.smart_resize``: (height, width) in
    multiples of ``factor``, the whole video's pixels within ``min_pixels..max_pixels``."""
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = round(frames / temporal) * temporal
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt((frames * height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


class Glm4v(Family):
    """GLM-4.1V / GLM-4.5V: 2 frames a second in pairs, sized for the whole video's pixel budget,
    each frame pair stamped with its second in the prompt."""

    name = "glm4v"
    label = "GLM-4.1V / GLM-4.5V"
    model_types = ("glm4v", "glm4v_moe")
    architectures = ("Glm4vForConditionalGeneration", "Glm4vMoeForConditionalGeneration")
    reference = "transformers Glm4vVideoProcessor.sample_frames + Glm4vProcessor (5.19), as the model card"
    frame_rule = (
        "2 fps (600 frames over 0..duration past 300 s), in pairs; sizes in multiples of 28, "
        "the whole video within 112x112..28x28x2x30000 pixels"
    )

    def geometry(self, config: dict[str, Any]) -> VisionGeometry:
        """Patch factor = ``patch_size`` x ``spatial_merge_size`` of ``vision_config``."""
        vision = config.get("vision_config") or {}
        return VisionGeometry(
            image_factor=int(vision.get("patch_size", 14)) * int(vision.get("spatial_merge_size", 2)),
            temporal_patch_size=int(vision.get("temporal_patch_size", 2)),
            family=self.name,
        )

    def check_checkpoint(self, folder: Path) -> None:
        """Refuse a checkpoint whose processor files name another processor than ``Glm4vProcessor``
        (GLM-4.6V's ``Glm46VProcessor`` under the same architectures samples by another rule)."""
        for name in PROCESSOR_FILES:
            path = folder / name
            try:
                named = json.loads(path.read_text()).get("processor_class")
            except (OSError, ValueError, AttributeError):
                continue
            if named and named != "Glm4vProcessor":
                raise VidcapError(
                    f"model {folder}: its processor is {named} ({path.name}), not Glm4vProcessor: the "
                    f"glm4v family feeds GLM-4.1V/4.5V only (--family glm4v to feed it so anyway)"
                )

    def plan(
        self,
        info: VideoInfo,
        options: SamplingOptions,
        *,
        video_start: float | None = None,
        video_end: float | None = None,
    ) -> FramePlan:
        """The reference's frames of the video (or of its segment), at the reference's size."""
        fps, total, notes = resolve_rate(info)
        start_frame, end_frame, seg_total = frame_range(total, fps, video_start, video_end, notes)
        if options.nframes is not None:
            count = max(1, min(options.nframes, seg_total))
            if count != options.nframes:
                notes.append(f"{options.nframes} frames asked, outside 1..{seg_total}; used {count}.")
            chosen = frame_indices(start_frame, end_frame, count) if count > 1 else [start_frame]
            if len(chosen) % 2:
                chosen.append(chosen[-1])
            indices = chosen
        else:
            target = options.fps if options.fps is not None else DEFAULT_FPS
            indices = [start_frame + i for i in sample_indices(seg_total, fps, target)]
        factor, temporal = options.image_factor, options.temporal_patch_size
        width, height = info.display_size
        resized_h, resized_w = smart_resize(len(indices), height, width, factor, temporal)
        return FramePlan(
            nframes=len(indices),
            frame_indices=tuple(indices),
            timestamps=tuple(index / fps for index in indices),
            resized_width=resized_w,
            resized_height=resized_h,
            video_fps=fps,
            total_frames=seg_total,
            sample_fps=len(indices) / max(seg_total, 1e-6) * fps,
            video_tokens=video_token_count(len(indices), resized_h, resized_w, factor, temporal),
            notes=tuple(notes),
        )

    def placeholder_tokens(self, processor: Any, video: Any) -> int:
        """The processor's own ``replace_video_token`` (one ``<|begin_of_image|>`` group and its
        second per frame pair) for the planned grid and metadata, in tokens (as Qwen's)."""
        return processor_placeholder_tokens(processor, video)

    def processor_kwargs(self, request: Any) -> dict[str, Any]:
        """``size`` bounds that the planned frames meet exactly: GLM's ``size`` bounds the whole
        video's frames x height x width, and a video on both bounds is left at its size (the
        processor scales only one strictly outside)."""
        if not request.videos:
            return {}
        volumes = [int(np.prod(v.frames.shape[:3])) for v in request.videos]
        return {"size": {"shortest_edge": min(volumes), "longest_edge": max(volumes)}}
