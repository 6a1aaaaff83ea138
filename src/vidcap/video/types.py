"""Plain data passed between probing, planning, decoding and request building.

All are frozen dataclasses of builtins and tuples so that they pickle cheaply to and from
decode worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A frame rate above this is a container's time base or a bogus header, not a frame rate:
# probing and planning both treat it as unknown.
MAX_PLAUSIBLE_FPS = 1000.0


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream."""

    path: str
    container: str
    codec: str
    width: int  # coded width, before rotation
    height: int
    rotation: int  # degrees clockwise the frames must be turned for display (0, 90, 180, 270)
    fps: float | None  # average frame rate; None when the stream does not say
    duration: float | None  # seconds
    total_frames: int | None  # None when neither the stream nor the index says
    pix_fmt: str = ""
    bit_depth: int = 8
    notes: tuple[str, ...] = ()  # assumptions made where the stream was silent or wrong

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) after rotation."""
        if self.rotation % 180 == 90:
            return self.height, self.width
        return self.width, self.height


@dataclass(frozen=True)
class SamplingOptions:
    """How frames are chosen and sized; defaults are qwen-vl-utils 0.0.14's.

    ``fps`` and ``nframes`` are exclusive; with neither, fps is 2.0. Pixel bounds left as None
    take the reference's defaults for the model's patch factor (``image_factor`` = patch size
    x spatial merge).
    """

    fps: float | None = None  # None: 2.0, unless nframes is given
    nframes: int | None = None
    min_frames: int = 4
    max_frames: int = 768
    min_pixels: int | None = None
    max_pixels: int | None = None
    total_pixels: int | None = None
    image_factor: int = 28  # 28 for Qwen2/2.5-VL (patch 14), 32 for Qwen3-VL (patch 16)
    temporal_patch_size: int = 2
    # The model family whose frame rule plans the video (a name in vidcap.families.FAMILIES).
    family: str = "qwen2.5-vl"
    # (height, width) the family resizes every frame to (InternVL's square); None: sized per video.
    frame_size: tuple[int, int] | None = None
    frame_tokens: int | None = None  # visual tokens of one such frame, where the family says
    # The context length the default total_pixels budget is cut to (qwen-vl-utils' MODEL_SEQ_LEN,
    # 128000 unless its environment variable says otherwise); a run sets the engine's max_model_len.
    model_seq_len: int | None = None


@dataclass(frozen=True)
class FramePlan:
    """Exactly which frames to decode and at what size, plus what the model will see."""

    nframes: int
    # Time slots of 1 / video_fps from the first frame: the frame indices of a constant-rate
    # file; elsewhere slot i is the frame on screen in it (see vidcap.video.metadata).
    frame_indices: tuple[int, ...]
    timestamps: tuple[float, ...]  # seconds, from the start of the stream
    resized_width: int
    resized_height: int
    video_fps: float  # the source frame rate used for the plan
    total_frames: int  # frames in the planned range (the segment, if video_start/end were given)
    sample_fps: float  # nframes / total_frames * video_fps, as the reference reports it
    video_tokens: int  # visual tokens this video adds to the prompt
    notes: tuple[str, ...] = field(default=())  # assumptions made while planning

    def processor_metadata(self) -> dict:
        """The metadata dict vLLM and the HF video processor take beside the frames."""
        return {
            "fps": self.video_fps,
            "total_num_frames": self.total_frames,
            "frames_indices": list(self.frame_indices),
            "duration": self.total_frames / self.video_fps if self.video_fps else None,
            "width": self.resized_width,
            "height": self.resized_height,
            "video_backend": "pyav",
            "do_sample_frames": False,
        }
