"""Find shot boundaries (cuts) in a video, from frames decoded at low resolution.

Two detectors after PySceneDetect's (whose defaults they keep, without its OpenCV dependency),
and TransNetV2 (``transnetv2``, :mod:`vidcap.video.transnet`) where its package is installed:

* ``content``: a frame's score is the mean absolute difference of its hue, saturation and
  value from the previous frame's (OpenCV's 8-bit HSV scales: H 0-179, S and V 0-255),
  averaged over the three; a score at or over the threshold (27) starts a new shot.
* ``adaptive``: the same score divided by the mean score of the ``window`` frames either side;
  a ratio at or over the threshold (3.0) with a score of at least ``min_content`` (15) is a
  cut. It ignores fast motion, where every frame scores high, that ``content`` takes for cuts.

Any way a cut closer than ``min_frames`` to the previous one is not taken. Each cut found is
told hard or gradual (a dissolve or a fade through black) by :func:`cut_kind`.

Frames are numbered in presentation order from 0 and each frame's time is what ``vidcap run``
plans with (:func:`frame_times`): ``i / fps`` for a constant-rate file (slot ``i`` of the plan
is frame ``i``), else the frame's own timestamp from the first frame's. So a shot starting at
frame ``i`` has ``video_start`` exactly frame ``i``'s start.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from vidcap.errors import RecordError
from vidcap.video.metadata import PacketIndex, libav_message, open_container, probe_with_index, video_stream
from vidcap.video.plan import resolve_rate
from vidcap.video.transnet import INPUT_SIZE, transition_probabilities, transnet_cuts

Detector = Literal["content", "adaptive", "transnetv2"]
DETECTORS: tuple[str, ...] = ("content", "adaptive", "transnetv2")
DEFAULT_THRESHOLD: dict[str, float] = {"content": 27.0, "adaptive": 3.0, "transnetv2": 0.5}

# Width frames are scaled to before scoring (PySceneDetect scales to about 256); cuts are
# changes of the whole picture, which 160 pixels show as well, at a lower cost.
SCAN_WIDTH = 160

SPREAD = 6  # frames either side of a cut that ShotScan.across compares (a 14-frame neighbourhood)


@dataclass(frozen=True)
class ShotScan:
    """A video's per-frame scores: ``scores[i]`` compares frame ``i`` with frame ``i - 1``
    (``scores[0]`` is 0); ``times[i]`` is frame ``i``'s start in seconds (see ``frame_times``)."""

    path: str
    fps: float
    scores: np.ndarray
    times: tuple[float, ...]
    end: float  # the end of the last frame: the video's length as ``vidcap run`` plans it
    notes: tuple[str, ...] = ()
    brightness: np.ndarray | None = None  # each frame's mean V (0-255), which tells fades apart
    # across[i]: the score between frames i - 1 - SPREAD and i + SPREAD (NaN near the ends)
    across: np.ndarray | None = None
    probabilities: np.ndarray | None = None  # TransNetV2's, when asked for (``transnet=True``)

    @property
    def frames(self) -> int:
        """Frames decoded."""
        return len(self.scores)


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)`` to float32 HSV planes ``(3, H, W)`` on OpenCV's 8-bit scales
    (H 0-179, S and V 0-255), as PySceneDetect scores frames (OpenCV rounds to integers)."""
    r, g, b = (rgb[..., c].astype(np.float32) for c in range(3))
    v = np.maximum(np.maximum(r, g), b)
    delta = v - np.minimum(np.minimum(r, g), b)
    s = np.divide(delta * 255.0, v, out=np.zeros_like(v), where=v > 0)
    step = np.divide(30.0, delta, out=np.zeros_like(delta), where=delta > 0)  # 60 degrees, halved
    h = np.where(v == r, (g - b) * step, np.where(v == g, 60.0 + (b - r) * step, 120.0 + (r - g) * step))
    h[h < 0] += 180.0
    return np.stack([h, s, v])


def content_score(previous: np.ndarray, current: np.ndarray) -> float:
    """Mean over H, S and V of the mean absolute difference of two HSV frames."""
    return float(np.abs(current - previous).mean())


def frame_times(index: PacketIndex | None, count: int, fps: float) -> list[float]:
    """The start in seconds of frames ``0..count-1``, as ``vidcap run``'s plan places them:
    ``i / fps`` where the timestamps follow a constant rate (or cannot be trusted), else each
    frame's timestamp from the first frame's (past the listed ones: ``i / fps``)."""
    if index is None or not index.reliable or index.regular:
        return [i / fps for i in range(count)]
    stamped = index.times()
    return [stamped[i] if i < len(stamped) else i / fps for i in range(count)]


def scan_video(path: str, *, width: int = SCAN_WIDTH, threads: int = 2, transnet: bool = False) -> ShotScan:
    """Decode every frame of ``path`` at ``width`` pixels wide and score each against the one
    before; with ``transnet``, also run TransNetV2 over the frames (``ShotScan.probabilities``).
    Raises RecordError for a video that cannot be opened or has no decodable frame; damaged
    packets in between are passed over (a note counts them)."""
    info, index = probe_with_index(path)
    fps, _, rate_notes = resolve_rate(info)
    notes = list(rate_notes)
    scores: list[float] = []
    brightness: list[float] = []
    across: list[float] = [math.nan] * (SPREAD + 1)  # no neighbourhood before the first frames
    tiny: list[np.ndarray] = []  # the frames at TransNetV2's size
    errors, first_error = 0, ""
    with open_container(path) as container:
        stream = video_stream(container, path)
        stream.codec_context.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        scale = VideoReformatter()
        height = 0
        previous: np.ndarray | None = None
        # The last frames, at a quarter of the scan's width: the change across each frame's
        # neighbourhood tells a hard cut (all the change in one frame) from a gradual one.
        recent: deque[np.ndarray] = deque(maxlen=2 * SPREAD + 2)
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as exc:
                errors, first_error = errors + 1, first_error or libav_message(exc)
                break
            try:
                decoded = stream.codec_context.decode(packet)
            except av.FFmpegError as exc:
                errors, first_error = errors + 1, first_error or libav_message(exc)
                continue
            for frame in decoded:
                if not height:  # keep the aspect ratio; even, as the scaler prefers
                    height = max(2, round(width * frame.height / max(frame.width, 1) / 2) * 2)
                small = scale.reformat(
                    frame, width=width, height=height, format="rgb24", interpolation=Interpolation.AREA
                )
                hsv = rgb_to_hsv(small.to_ndarray())
                scores.append(0.0 if previous is None else content_score(previous, hsv))
                brightness.append(float(hsv[2].mean()))
                previous = hsv
                if transnet:
                    tiny.append(
                        scale.reformat(
                            frame, *INPUT_SIZE, format="rgb24", interpolation=Interpolation.BICUBIC
                        ).to_ndarray()
                    )
                recent.append(hsv[:, ::4, ::4].copy())  # a copy: the whole frame is freed
                if len(recent) == recent.maxlen:
                    across.append(content_score(recent[0], recent[-1]))
    if not scores:
        if errors:
            raise RecordError(f"corrupt video {path}: {first_error}")
        raise RecordError(f"no decodable frames in {path}")
    if errors:
        notes.append(f"{errors} decode error(s), first: {first_error}")
    times = tuple(frame_times(index, len(scores), fps))
    return ShotScan(
        path,
        fps,
        np.asarray(scores, np.float32),
        times,
        times[-1] + 1 / fps,
        tuple(notes),
        np.asarray(brightness, np.float32),
        np.asarray((across + [math.nan] * SPREAD)[: len(scores)], np.float32),
        transition_probabilities(np.stack(tiny)) if transnet else None,
    )


def content_cuts(scores: np.ndarray, threshold: float, min_frames: int) -> list[int]:
    """Frames that start a new shot: score >= ``threshold``, at least ``min_frames`` after the
    previous cut (or the start)."""
    cuts: list[int] = []
    last = 0
    for frame in np.flatnonzero(scores >= threshold):
        if frame - last >= min_frames:
            cuts.append(int(frame))
            last = int(frame)
    return cuts


def adaptive_cuts(
    scores: np.ndarray, threshold: float, min_frames: int, *, window: int = 2, min_content: float = 15.0
) -> list[int]:
    """Frames whose score is ``threshold`` times the mean of the ``window`` frames either side
    (and at least ``min_content``), at least ``min_frames`` after the previous cut."""
    cuts: list[int] = []
    last = 0
    n = len(scores)
    for frame in range(1, n):
        if scores[frame] < min_content:
            continue
        neighbours = np.concatenate(
            [scores[max(1, frame - window) : frame], scores[frame + 1 : min(n, frame + window + 1)]]
        )
        average = float(neighbours.mean()) if len(neighbours) else 0.0
        ratio = float(scores[frame]) / average if average > 1e-6 else float("inf")
        if ratio >= threshold and frame - last >= min_frames:
            cuts.append(frame)
            last = frame
    return cuts


def find_cuts(scan: ShotScan, detector: str, threshold: float | None, min_frames: int) -> list[int]:
    """The cut frames ``detector`` finds in ``scan`` (``threshold=None``: its default)."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; choose from {', '.join(DETECTORS)}")
    limit = DEFAULT_THRESHOLD[detector] if threshold is None else threshold
    if detector == "content":
        return content_cuts(scan.scores, limit, min_frames)
    if detector == "transnetv2":
        if scan.probabilities is None:
            raise ValueError("scan_video(..., transnet=True) gives the transnetv2 detector its input")
        return transnet_cuts(scan.probabilities, limit, min_frames)
    return adaptive_cuts(scan.scores, limit, min_frames)


HARD_SHARE = 0.75  # a hard cut's frame holds this share of its neighbourhood's change or more
FADE_DARKNESS = 0.2  # a fade dips below this share of both shots' brightness


def cut_kind(scan: ShotScan, frame: int) -> str:
    """What the cut at ``frame`` is: ``fade`` (through black), ``dissolve`` or ``cut`` (hard).

    A fade: the frames within 15 of the cut dip to a fifth of the brightness of both shots
    around it (measured 15-30 frames away). Else a hard cut puts nearly all the change of the
    cut's neighbourhood (``SPREAD`` frames either side, ``ShotScan.across``) in one frame (0.92
    or more on the measured corpus), where a dissolve spreads it (0.61 or less): under
    ``HARD_SHARE`` it is a dissolve. Without the neighbourhood (a cut near either end): ``cut``.
    """
    if scan.brightness is not None:
        light = scan.brightness
        before, after = light[max(0, frame - 30) : max(0, frame - 15)], light[frame + 16 : frame + 31]
        if len(before) and len(after):
            dip = float(light[max(0, frame - 15) : frame + 16].min())
            if dip < FADE_DARKNESS * min(float(np.median(before)), float(np.median(after))):
                return "fade"
    if scan.across is not None and frame < len(scan.across):
        across = float(scan.across[frame])
        if math.isfinite(across) and across > 0 and scan.scores[frame] / across < HARD_SHARE:
            return "dissolve"
    return "cut"


@dataclass(frozen=True)
class Shot:
    """Frames ``[first, stop)`` of a video, from ``start`` to ``end`` seconds; ``kind`` says what
    begins it: ``start`` (the video's, or the trimmed start), ``cut``, ``dissolve`` or ``fade``
    (a detected hard cut or gradual transition, see :func:`cut_kind`), ``split``
    (a long shot split evenly) or ``interval`` (a fixed clip)."""

    first: int
    stop: int
    start: float
    end: float
    kind: str


def shots_from_cuts(
    times: Sequence[float],
    end: float,
    cuts: Sequence[int],
    *,
    fps: float,
    min_shot: float = 0.0,
    max_shot: float | None = None,
    trim_start: float = 0.0,
    trim_end: float = 0.0,
    kinds: Sequence[str] | None = None,
    drop_short: bool = False,
) -> list[Shot]:
    """Turn cut frames into shots covering the video from ``trim_start`` to ``end - trim_end``.

    A shot shorter than ``min_shot`` seconds is merged into the shot before it (the first into
    the one after it), or left out with ``drop_short``; one longer than ``max_shot`` is split
    into equal parts at frame starts.
    ``kinds`` names each cut's kind (default ``cut``). Times are frame starts from ``times``;
    a shot ends where the next begins, the last at ``end`` (less ``trim_end``).
    """
    frames = len(times)
    kinds = list(kinds) if kinds is not None else ["cut"] * len(cuts)
    first = next((i for i, t in enumerate(times) if t >= trim_start - 1e-9), frames)
    stop_time = end - trim_end
    stop = next((i for i, t in enumerate(times) if t >= stop_time - 1e-9), frames)
    if first >= stop:
        return []
    bounds = [(first, "start")] + [(c, k) for c, k in zip(cuts, kinds, strict=True) if first < c < stop]

    def time_at(frame: int) -> float:
        return times[frame] if frame < frames else end

    spans = [[b, (bounds[i + 1][0] if i + 1 < len(bounds) else stop), k] for i, (b, k) in enumerate(bounds)]
    if min_shot > 0 and drop_short:
        spans = [span for span in spans if time_at(span[1]) - time_at(span[0]) >= min_shot - 1e-9]
    elif min_shot > 0:
        merged: list[list] = []
        for span in spans:
            short = time_at(span[1]) - time_at(span[0]) < min_shot - 1e-9
            if merged and short:
                merged[-1][1] = span[1]
            elif merged and time_at(merged[-1][1]) - time_at(merged[-1][0]) < min_shot - 1e-9:
                merged[-1][1] = span[1]  # the first shot was short: it joins this one
            else:
                merged.append(span)
        spans = merged
    shots: list[Shot] = []
    for a, b, kind in spans:
        pieces = [(a, kind)]
        length = time_at(b) - time_at(a)
        if max_shot is not None and length > max_shot + 1e-9:
            parts = int(np.ceil(length / max_shot - 1e-9))
            for part in range(1, parts):
                target = time_at(a) + length * part / parts
                frame = min(range(a, b), key=lambda i: abs(times[i] - target))
                if frame > pieces[-1][0]:
                    pieces.append((frame, "split"))
        for i, (p, k) in enumerate(pieces):
            q = pieces[i + 1][0] if i + 1 < len(pieces) else b
            finish = round(stop_time, 6) if q >= stop else _frame_seconds(time_at(q), q, fps)
            shots.append(Shot(p, q, _frame_seconds(time_at(p), p, fps), finish, k))
    return shots


def _frame_seconds(value: float, frame: int, fps: float) -> float:
    """``value`` (frame ``frame``'s start) to the microsecond, rounded so that ``vidcap run``'s
    segment planning, which takes the first frame at ``ceil(video_start * fps)``, starts there:
    rounding up (1 / 29.97 to 0.033367) would start a frame late."""
    rounded = math.floor(value * 1e6 + 1e-6) / 1e6
    if frame / fps == value:  # a constant-rate frame start: check the planner's arithmetic
        while rounded > 0 and math.ceil(rounded * fps) > frame:
            rounded = round(rounded - 1e-6, 6)
    return rounded


def interval_cuts(times: Sequence[float], every: float, trim_start: float = 0.0) -> list[int]:
    """Frames that start each ``every``-second clip after ``trim_start`` (the frame at or after
    each multiple)."""
    cuts: list[int] = []
    target = trim_start + every
    for i, t in enumerate(times):
        if t >= target - 1e-9:
            cuts.append(i)
            while target <= t + 1e-9:
                target += every
    return cuts
