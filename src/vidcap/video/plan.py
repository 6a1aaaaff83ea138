"""Which frames of a video the model sees, and at what size.

The plan is the one qwen-vl-utils 0.0.14 ``fetch_video`` makes with its decord backend (the
reference Qwen2.5-VL and Qwen3-VL were tuned with): same frame count, same frame indices, same
resized frame size. Where the reference would fail or be wrong (missing or absurd frame rate,
1-frame videos, segments that hold no frame), this module still makes a sane plan and says
what it assumed in ``FramePlan.notes``.

No torch here: the module runs in decode workers, where importing torch costs a second. The
frame indices reproduce ``torch.linspace(...).round()`` in float32 with numpy, bit for bit.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np

from vidcap.errors import RecordError, VidcapError
from vidcap.video.types import MAX_PLAUSIBLE_FPS, FramePlan, SamplingOptions, VideoInfo

# The reference's constants (qwen_vl_utils/vision_process.py, 0.0.14).
MAX_RATIO = 200
IMAGE_MIN_TOKEN_NUM = 4
IMAGE_MAX_TOKEN_NUM = 16384
VIDEO_MIN_TOKEN_NUM = 128
VIDEO_MAX_TOKEN_NUM = 768
FPS = 2.0
FRAME_FACTOR = 2
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 768
# Read from the environment at import, as the reference does, so both agree when it is set.
MODEL_SEQ_LEN = int(float(os.environ.get("MODEL_SEQ_LEN", 128000)))

# Used only when a stream gives a frame count but neither frame rate nor duration.
ASSUMED_FPS = 30.0


def check_sampling(options: SamplingOptions) -> None:
    """Reject pixel bounds that no video can satisfy, naming the flags (a VidcapError).

    Called once per run, when the model's patch factor is known: the defaults scale with it.
    """
    factor = options.image_factor
    min_pixels = options.min_pixels if options.min_pixels is not None else VIDEO_MIN_TOKEN_NUM * factor**2
    for value, flag in (
        (options.min_pixels, "--min-pixels"),
        (options.max_pixels, "--max-pixels"),
        (options.total_pixels, "--total-pixels"),
    ):
        if value is not None and value <= 0:
            raise VidcapError(f"{flag} must be > 0, got {value}")
    if options.max_pixels is not None and options.max_pixels < min_pixels:
        given = (
            ""
            if options.min_pixels is not None
            else f" (its default for this model: {VIDEO_MIN_TOKEN_NUM} x {factor}^2)"
        )
        raise VidcapError(
            f"--max-pixels {options.max_pixels} is below --min-pixels {min_pixels}{given}; "
            "raise --max-pixels or lower --min-pixels"
        )


def default_total_pixels(factor: int, model_seq_len: int | None = None) -> float:
    """The whole-video pixel budget when --total-pixels is not given: 90% of the context in tokens.

    qwen-vl-utils sizes it by ``MODEL_SEQ_LEN`` (the model's context, 128000 unless that
    environment variable says otherwise). A run passes the engine's --max-model-len: the
    budget is cut to it (never raised), so a default plan leaves room for the text and the
    caption instead of planning videos the engine must refuse. With no engine context known,
    or one of 128000 and more, this is the reference's budget exactly.
    """
    seq_len = MODEL_SEQ_LEN if model_seq_len is None else min(MODEL_SEQ_LEN, model_seq_len)
    return seq_len * factor**2 * 0.9


def _round_by_factor(number: float, factor: int) -> int:
    # Python's round(): half to even, as in the reference.
    return round(number / factor) * factor


def _ceil_by_factor(number: float, factor: int) -> int:
    return math.ceil(number / factor) * factor


def _floor_by_factor(number: float, factor: int) -> int:
    return math.floor(number / factor) * factor


def smart_resize(
    height: int, width: int, factor: int, min_pixels: int | None = None, max_pixels: int | None = None
) -> tuple[int, int]:
    """Return (height, width) rounded to multiples of ``factor`` with the pixel count in bounds.

    The reference's ``smart_resize``, with two differences: a bad bound pair raises
    ValueError (the reference asserts), and a side the reference would shrink to 0 (a very
    thin frame squeezed under ``max_pixels``) is kept at ``factor``, as later qwen-vl-utils do.
    Raises ValueError for a non-positive size or an aspect ratio above ``MAX_RATIO``.
    """
    max_pixels = max_pixels if max_pixels is not None else IMAGE_MAX_TOKEN_NUM * factor**2
    min_pixels = min_pixels if min_pixels is not None else IMAGE_MIN_TOKEN_NUM * factor**2
    if max_pixels < min_pixels:
        raise ValueError(f"max_pixels {max_pixels} is below min_pixels {min_pixels}")
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size {width}x{height} is empty")
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(
            f"absolute aspect ratio must be smaller than {MAX_RATIO}, "
            f"got {max(height, width) / min(height, width)}"
        )
    h_bar = max(factor, _round_by_factor(height, factor))
    w_bar = max(factor, _round_by_factor(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, _floor_by_factor(height / beta, factor))
        w_bar = max(factor, _floor_by_factor(width / beta, factor))
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = _ceil_by_factor(height * beta, factor)
        w_bar = _ceil_by_factor(width * beta, factor)
    return h_bar, w_bar


def _fraction_to_f32(value: Fraction) -> np.float32:
    """Round an exact rational to the nearest float32, ties to even (IEEE round-to-nearest)."""
    if value == 0:
        return np.float32(0.0)
    magnitude = abs(value)
    exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if magnitude < Fraction(2) ** exponent:
        exponent -= 1
    quantum = max(exponent - 23, -149)  # 24-bit significand; subnormals share the last quantum
    mantissa = round(magnitude / Fraction(2) ** quantum)  # Fraction.__round__ is half to even
    result = math.ldexp(mantissa, quantum)  # exact in float64, and representable in float32
    return np.float32(result if value > 0 else -result)


def _linspace_f32(start: int, end: int, n: int, *, fused: bool = True) -> np.ndarray:
    """``torch.linspace(start, end, n)`` (float32, CPU), bit for bit.

    torch computes ``step = (end - start) / (n - 1)`` in float32, then the first half of the
    points as ``start + step * i`` and the second half as ``end - step * (n - 1 - i)``, so
    both ends are exact. torch's AVX2/AVX512 kernels (and aarch64 builds) are compiled with FMA,
    so each point is one fused multiply-add, rounded once; the x86 "DEFAULT" kernel
    (``ATEN_CPU_CAPABILITY=default``) rounds the product and the sum separately
    (``fused=False``). The two differ in the last bit often enough to move a frame index.
    """
    if n < 0:
        raise ValueError(f"number of steps must be non-negative, got {n}")
    s, e = np.float32(start), np.float32(end)
    if n <= 1:
        return np.full(n, s, dtype=np.float32)
    step = np.float32(e - s) / np.float32(n - 1)
    i = np.arange(n, dtype=np.int64)
    first_half = i < n // 2
    base = np.where(first_half, s, e).astype(np.float32)
    count = np.where(first_half, i, n - 1 - i).astype(np.float32)
    if not fused:
        product = (step * count).astype(np.float32)
        return np.where(first_half, base + product, base - product).astype(np.float32)
    # A float32 step times a float32 count has at most 48 significant bits: exact in float64.
    addend = np.float64(step) * count.astype(np.float64)
    addend = np.where(first_half, addend, -addend)
    base64 = base.astype(np.float64)
    total = base64 + addend
    # TwoSum: the exact rounding error of the float64 sum. Where it is zero, the sum is exact
    # and one rounding to float32 is what the FMA does; elsewhere (huge start, sub-frame step)
    # round the exact rational instead, to avoid double rounding.
    back = total - base64
    error = (base64 - (total - back)) + (addend - back)
    out = total.astype(np.float32)
    for k in np.flatnonzero(error != 0):
        out[k] = _fraction_to_f32(Fraction(float(base64[k])) + Fraction(float(addend[k])))
    return out


def frame_indices(start: int, end: int, n: int, *, fused: bool = True) -> list[int]:
    """Return ``torch.linspace(start, end, n).round().long().tolist()`` without torch.

    Rounding is half to even, like ``torch.round``. ``fused`` picks torch's FMA kernel (x86
    AVX2/AVX512 and aarch64: what the reference runs on in practice) or the x86 non-FMA
    "DEFAULT" kernel; see ``_linspace_f32``.
    """
    return np.rint(_linspace_f32(start, end, n, fused=fused)).astype(np.int64).tolist()


def video_token_count(
    nframes: int, height: int, width: int, factor: int, temporal_patch_size: int = 2
) -> int:
    """Visual tokens a video adds to the prompt: ``(nframes / temporal) * (h / factor) * (w / factor)``.

    ``factor`` is patch size x spatial merge (28 or 32); an odd frame count is padded up to a
    whole temporal patch, as the processors do.
    """
    return -(-nframes // temporal_patch_size) * (height // factor) * (width // factor)


def _secs(value: float) -> str:
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def resolve_rate(info: VideoInfo) -> tuple[float, int, list[str]]:
    """Frame rate and frame count to plan with, falling back where the stream is silent or wrong."""
    notes: list[str] = []
    fps, duration = info.fps, info.duration
    total = info.total_frames if info.total_frames is not None and info.total_frames > 0 else None
    has_duration = _usable(duration)
    fps_ok = _usable(fps) and fps <= MAX_PLAUSIBLE_FPS
    if fps_ok and has_duration and total is not None:
        # Judge the rate against frame count / duration, with a frame of slack either way
        # for how durations are measured; 1.5x apart is two different videos, not jitter.
        expected = fps * duration
        if total > expected * 1.5 + 2 or total < expected / 1.5 - 2:
            if _usable(total / duration) and total / duration <= MAX_PLAUSIBLE_FPS:
                fps_ok = False
            else:  # the duration is what is broken (e.g. an MPEG elementary stream): keep the rate
                notes.append(
                    f"Duration {_secs(duration)} s disagrees with {total} frames at {fps:g} fps; "
                    "trusted the frame rate and frame count, as the reference does."
                )
    if not fps_ok:
        what = "missing" if fps is None or fps == 0 else "implausible"
        if has_duration and total is not None:
            derived = total / duration
            notes.append(
                f"Frame rate {fps} is {what}; using {total} frames / {_secs(duration)} s = {derived:.3f} fps."
            )
            fps = derived
        elif total is not None:
            notes.append(f"Frame rate {fps} is {what} and duration unknown; assumed {ASSUMED_FPS:g} fps.")
            fps = ASSUMED_FPS
        elif has_duration:
            raise RecordError(
                "cannot plan frames: the stream reports neither a usable frame rate nor frame count"
            )
        else:
            raise RecordError(
                "cannot plan frames: the stream reports neither frame rate, duration nor frame count"
            )
    if total is None:
        if not has_duration:
            raise RecordError("cannot plan frames: the stream reports neither duration nor frame count")
        total = max(1, round(duration * fps))
        notes.append(f"Frame count unknown; estimated {total} from {_secs(duration)} s at {fps:.3f} fps.")
    return fps, total, notes


def planned_length(info: VideoInfo) -> float:
    """The video's length in seconds as the plan measures it: frame count / frame rate, both as
    planning resolves them (so ``video_start``/``video_end`` and windows are checked against the
    same length the frames are chosen from). Raises RecordError as ``plan_frames`` does."""
    fps, total, _ = resolve_rate(info)
    return total / fps


def frame_range(
    total: int, fps: float, video_start: float | None, video_end: float | None, notes: list[str]
) -> tuple[int, int, int]:
    """(first frame, last frame, frame count) of the segment, as ``calculate_video_frame_range``.

    Unlike the reference, bad times are a RecordError with a plain message, a video_end past
    the end is clamped with a note, and a segment holding fewer than 2 frame starts yields
    that one frame (count 1) instead of an error.
    """
    if video_start is None and video_end is None:
        return 0, total - 1, total
    length = total / fps  # the reference measures the video by frames, not container duration
    for name, value in (("video_start", video_start), ("video_end", video_end)):
        if value is not None and not math.isfinite(value):
            raise RecordError(f"{name} {value} is not a number of seconds")
        if value is not None and value < 0:
            raise RecordError(f"{name} {_secs(value)} s is negative")
    if video_start is not None and video_start >= length:
        raise RecordError(
            f"video_start {_secs(video_start)} s is past the end of the {_secs(length)} s video"
        )
    if video_start is not None and video_end is not None and video_start >= video_end:
        raise RecordError(f"video_start {_secs(video_start)} s is not before video_end {_secs(video_end)} s")
    if video_end is not None and video_end <= 0:
        raise RecordError(f"video_end {_secs(video_end)} s is not after the start of the video")
    start_frame = math.ceil(video_start * fps) if video_start is not None else 0
    if video_end is not None:
        if video_end > length:
            notes.append(
                f"video_end {_secs(video_end)} s is past the end of the {_secs(length)} s video; "
                "used the end."
            )
        end_frame = min(math.floor(min(video_end, length) * fps), total - 1)
    else:
        end_frame = total - 1
    if start_frame >= end_frame:
        # Too short a segment for the reference; take the frame that starts in it, or else
        # the one on screen at video_start.
        start_secs = video_start or 0.0
        frame = start_frame if start_frame == end_frame else min(math.floor(start_secs * fps), total - 1)
        notes.append(
            f"Segment {_secs(start_secs)}-{_secs(min(video_end or length, length))} s holds fewer than "
            f"2 frames; used frame {frame}."
        )
        return frame, frame, 1
    return start_frame, end_frame, end_frame - start_frame + 1


def _count_frames(options: SamplingOptions, total: int, fps: float, notes: list[str]) -> int:
    """How many frames to sample from ``total``, as the reference's ``smart_nframes``."""
    if options.nframes is not None:
        nframes = _round_by_factor(options.nframes, FRAME_FACTOR)
    else:
        target_fps = options.fps if options.fps is not None else FPS
        min_frames = _ceil_by_factor(options.min_frames, FRAME_FACTOR)
        # The reference's default max_frames is min(768, total); an explicit 768 plans the same,
        # because the result is capped at total and floored to a pair either way.
        max_frames = _floor_by_factor(options.max_frames, FRAME_FACTOR)
        nframes = total / fps * target_fps  # same operation order as the reference
        nframes = min(min(max(nframes, min_frames), max_frames), total)
        nframes = _floor_by_factor(nframes, FRAME_FACTOR)
    if total < FRAME_FACTOR:
        return FRAME_FACTOR  # a lone frame, repeated by the caller; noted there
    upper = _floor_by_factor(total, FRAME_FACTOR)
    if nframes < FRAME_FACTOR or nframes > total:
        clamped = min(max(nframes, FRAME_FACTOR), upper)
        notes.append(f"Sampling gives {nframes} frames, outside 2..{total}; used {clamped}.")
        return clamped
    return nframes


def _check_options(options: SamplingOptions) -> None:
    if options.fps is not None and options.nframes is not None:
        raise ValueError(
            f"sampling options give both fps ({options.fps}) and nframes ({options.nframes}); "
            "set fps=None to use nframes"
        )
    if options.fps is not None and not _usable(options.fps):
        raise ValueError(f"sampling fps must be a positive number, got {options.fps}")
    if options.nframes is not None and options.nframes < 1:
        raise ValueError(f"nframes must be at least 1, got {options.nframes}")
    if options.image_factor <= 0 or options.temporal_patch_size <= 0:
        raise ValueError("image_factor and temporal_patch_size must be positive")


def plan_frames(
    info: VideoInfo,
    options: SamplingOptions,
    *,
    video_start: float | None = None,
    video_end: float | None = None,
) -> FramePlan:
    """Plan frames and size exactly as qwen-vl-utils 0.0.14 ``fetch_video`` (decord) would.

    ``info.fps`` and ``info.total_frames`` stand for decord's ``get_avg_fps()`` and ``len(vr)``.
    With ``video_start``/``video_end`` (seconds), ``total_frames`` is the segment's frame count
    while the indices stay absolute. Sizing uses the display size (after rotation); the
    reference sizes the frames as decoded, ignoring rotation, which squashes rotated phone
    videos. ``info.duration`` is only used to check or replace a bad frame rate or count.

    Raises ValueError for inconsistent options (both fps and nframes, a non-positive fps,
    max_pixels below min_pixels) and RecordError for a video or segment that cannot be planned.
    """
    _check_options(options)
    fps, total, notes = resolve_rate(info)
    start_frame, end_frame, seg_total = frame_range(total, fps, video_start, video_end, notes)
    nframes = _count_frames(options, seg_total, fps, notes)
    if seg_total < FRAME_FACTOR:
        # The model takes frames in temporal pairs; one frame is shown twice.
        if video_start is None and video_end is None:
            notes.append("Video has 1 frame; repeated it to make the 2 the model needs.")
        indices = [start_frame] * FRAME_FACTOR
    else:
        indices = frame_indices(start_frame, end_frame, nframes)
    sample_fps = nframes / max(seg_total, 1e-6) * fps

    width, height = info.display_size
    if width <= 0 or height <= 0:
        raise RecordError(f"cannot plan frames: the stream reports a frame size of {width}x{height}")
    if max(width, height) / min(width, height) > MAX_RATIO:
        raise RecordError(f"frame size {width}x{height} is more than {MAX_RATIO}:1; the model cannot take it")
    factor = options.image_factor
    # fetch_video's per-frame bounds: a frame budget shared by all frames, within fixed limits.
    min_pixels = options.min_pixels if options.min_pixels is not None else VIDEO_MIN_TOKEN_NUM * factor**2
    total_pixels = (
        options.total_pixels
        if options.total_pixels is not None
        else default_total_pixels(factor, options.model_seq_len)
    )
    max_pixels = max(
        min(VIDEO_MAX_TOKEN_NUM * factor**2, total_pixels / nframes * FRAME_FACTOR), int(min_pixels * 1.05)
    )
    if options.max_pixels is not None:
        max_pixels = min(options.max_pixels, max_pixels)
    resized_height, resized_width = smart_resize(height, width, factor, min_pixels, max_pixels)

    return FramePlan(
        nframes=nframes,
        frame_indices=tuple(indices),
        timestamps=tuple(index / fps for index in indices),
        resized_width=resized_width,
        resized_height=resized_height,
        video_fps=fps,
        total_frames=seg_total,
        sample_fps=sample_fps,
        video_tokens=video_token_count(
            nframes, resized_height, resized_width, factor, options.temporal_patch_size
        ),
        notes=tuple(notes),
    )
