"""What a model family is to vidcap: a small object that knows how its authors feed it video.

A family (one module each, registered in ``vidcap.families``) knows, before any model loads:
its vision geometry (read from the checkpoint's ``config.json``), which frames to show and at
what size (its frame rule, torch-free: it runs in decode workers), how many prompt tokens a
video costs (asked of the model's own processor), and the processor kwargs that make the
engine's processor keep the planned frames as they are. Its ``reference`` names what its
authors publish that the rule follows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from vidcap.video.types import FramePlan, SamplingOptions, VideoInfo


@dataclass(frozen=True)
class VisionGeometry:
    """``image_factor`` = the side in pixels of the square one visual token covers: patch size x
    spatial merge (28 for Qwen2.5-VL, 32 for Qwen3-VL); ``family``: the registry name of the
    family the checkpoint belongs to; ``frame_size``: (height, width) every frame is resized to,
    for a family whose frames all have one size (None: the family's rule sizes each video);
    ``frame_tokens``: the visual tokens one such frame costs, where they do not follow from
    ``image_factor`` (LLaVA-OneVision pools its patch grid, rounding up)."""

    image_factor: int = 28
    temporal_patch_size: int = 2
    family: str = "qwen2.5-vl"
    frame_size: tuple[int, int] | None = None
    frame_tokens: int | None = None

    def apply(self, options: SamplingOptions) -> SamplingOptions:
        """``options`` planned for this model: its patch geometry and family."""
        return dataclasses.replace(
            options,
            image_factor=self.image_factor,
            temporal_patch_size=self.temporal_patch_size,
            family=self.family,
            frame_size=self.frame_size,
            frame_tokens=self.frame_tokens,
        )


class Family:
    """One model family: detection, geometry, frame rule, token count, processor kwargs.

    Subclasses set the class attributes and override what differs; instances are stateless.
    """

    name: str = ""  # the registry name, as ``--family`` takes it
    label: str = ""  # how people write it (``Qwen2.5-VL``)
    model_types: tuple[str, ...] = ()  # config.json ``model_type`` values
    architectures: tuple[str, ...] = ()  # config.json ``architectures`` entries
    takes_video: bool = True  # vLLM 0.32 takes video input for this architecture
    reference: str = ""  # what the frame rule and inputs follow (one line)
    frame_rule: str = ""  # the rule in a few words, for the README and probe

    def geometry(self, config: dict[str, Any]) -> VisionGeometry:
        """The patch geometry of a checkpoint of this family, from its ``config.json`` dict."""
        return VisionGeometry(family=self.name)

    def check_checkpoint(self, folder: Path) -> None:
        """Refuse (VidcapError, one line) a local checkpoint of this architecture that its files
        show is fed another way (its processor); nothing to check by default."""

    def plan(
        self,
        info: VideoInfo,
        options: SamplingOptions,
        *,
        video_start: float | None = None,
        video_end: float | None = None,
    ) -> FramePlan:
        """Which frames of ``info`` the model sees and at what size (torch-free)."""
        raise NotImplementedError

    def placeholder_tokens(self, processor: Any, video: Any) -> int:
        """Prompt tokens that replace one video's placeholder token (``video``: a VideoInput)."""
        return int(video.video_tokens)

    def processor_kwargs(self, request: Any) -> dict[str, Any]:
        """``mm_processor_kwargs`` that keep the planned frames as they are (``request``: a
        CaptionRequest)."""
        return {}

    def __repr__(self) -> str:
        return f"<family {self.name}>"


def fixed_frame_count(
    options: SamplingOptions, seg_total: int, fps: float, default: int, notes: list[str]
) -> int:
    """Frames a family that samples a fixed count takes from a segment of ``seg_total`` frames at
    ``fps``: ``--nframes``, else ``--fps`` over the segment, else its model card's ``default``;
    held to 1..seg_total, with a note in ``notes`` when that changed it."""
    if options.nframes is not None:
        nframes = options.nframes
    elif options.fps is not None:
        nframes = int(seg_total / fps * options.fps)
    else:
        nframes = default
    if nframes > seg_total or nframes < 1:
        clamped = min(max(nframes, 1), seg_total)
        notes.append(f"Sampling gives {nframes} frames, outside 1..{seg_total}; used {clamped}.")
        nframes = clamped
    return nframes


def text_token_count(processor: Any, prompt_text: str) -> int:
    """Tokens of a text, without special tokens added (the processor's tokenizer)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    return len(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])


def hf_video_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The plan's metadata less the keys ``transformers.video_utils.VideoMetadata`` does not take
    (``do_sample_frames`` is a processor argument there, not metadata)."""
    from transformers.video_utils import VideoMetadata

    known = {f.name for f in dataclasses.fields(VideoMetadata)}
    return {k: v for k, v in metadata.items() if k in known}
