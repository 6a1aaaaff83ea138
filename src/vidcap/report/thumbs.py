"""Small JPEG thumbnails of the frames a run's plan sampled: the job of a report worker process.

Kept free of heavy imports (PyAV and numpy only), like ``pipeline/decode_step.py``: the report
decodes in the project's worker pool (``video/pool.py``), whose processes are spawned fresh.

The plan is the one ``vidcap run`` makes (``plan_video``, same options, same segment); the
report decodes only an evenly spread subset of its frames, straight at thumbnail size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from vidcap.families import plan_video
from vidcap.video.decode import DecodeReport, decode_frames
from vidcap.video.metadata import probe_with_index
from vidcap.video.types import SamplingOptions

JPEG_QSCALE = 5  # FFmpeg's mjpeg quantiser: 2 (finest) to 31; 5 keeps a 128 x 72 frame near 2-4 KB


@dataclass(frozen=True)
class StripTask:
    """One strip to draw: a video (or one window of it) and how many frames to show at what size."""

    path: str
    options: SamplingOptions
    start: float | None = None
    end: float | None = None
    max_frames: int = 12
    box: tuple[int, int] = (128, 72)  # thumbnail width x height bound, aspect kept
    threads: int = 1


@dataclass(frozen=True)
class Strip:
    """The thumbnails of one strip: ``(timestamp seconds, JPEG bytes)`` per shown frame.

    ``planned`` is how many frames the run's plan sampled (``len(frames)`` may be fewer);
    ``notes`` say what planning or decoding had to assume.
    """

    frames: tuple[tuple[float, bytes], ...]
    planned: int
    width: int
    height: int
    notes: tuple[str, ...] = ()


def spread(count: int, most: int) -> list[int]:
    """``min(count, most)`` positions out of ``range(count)``, evenly spread, first and last included."""
    if count <= most:
        return list(range(count))
    if most == 1:
        return [0]
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})


def fit(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """``width x height`` scaled down (never up) to fit ``box``, aspect kept, at least 2 x 2."""
    scale = min(box[0] / width, box[1] / height, 1.0)
    return max(2, round(width * scale)), max(2, round(height * scale))


def encode_jpeg(rgb: np.ndarray, qscale: int = JPEG_QSCALE) -> bytes:
    """One uint8 RGB frame (H x W x 3) as baseline JPEG bytes, with FFmpeg's mjpeg encoder."""
    import av

    height, width = rgb.shape[:2]
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = Fraction(1, 1)
    codec.options = {"qmin": str(qscale), "qmax": str(qscale)}
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuvj420p")
    return b"".join(bytes(packet) for packet in [*codec.encode(frame), *codec.encode(None)])


def draw_strip(task: StripTask) -> Strip:
    """Plan ``task.path`` as ``vidcap run`` does, decode a spread of the planned frames, encode JPEGs.

    Raises RecordError (from probing, planning or decoding) for a video that cannot be read.
    """
    info, index = probe_with_index(task.path, index=True)
    plan = plan_video(info, task.options, video_start=task.start, video_end=task.end)
    chosen = spread(plan.nframes, task.max_frames)
    width, height = fit(plan.resized_width, plan.resized_height, task.box)
    # The same frames at thumbnail size: libswscale scales while converting, nothing big is held.
    small = dataclasses.replace(
        plan,
        nframes=len(chosen),
        frame_indices=tuple(plan.frame_indices[i] for i in chosen),
        timestamps=tuple(plan.timestamps[i] for i in chosen),
        resized_width=width,
        resized_height=height,
    )
    report = DecodeReport()
    frames = decode_frames(
        task.path,
        small,
        rotation=info.rotation,
        threads=task.threads,
        index=index,
        resize="fast",
        report=report,
    )
    notes = (*info.notes, *plan.notes, *report.notes)
    jpegs = tuple((float(t), encode_jpeg(frame)) for t, frame in zip(small.timestamps, frames, strict=True))
    return Strip(frames=jpegs, planned=plan.nframes, width=width, height=height, notes=notes)
