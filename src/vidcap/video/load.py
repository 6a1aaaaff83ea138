"""Probe, plan and decode one video: the whole job of a decode worker process.

Imports stay light (PyAV, numpy): no torch, no transformers, so a worker starts in a
fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vidcap.video.decode import DecodeReport, Resize, decode_frames
from vidcap.video.plan import plan_frames
from vidcap.video.probe import probe_with_index
from vidcap.video.types import FramePlan, SamplingOptions, VideoInfo


@dataclass
class LoadedVideo:
    """A video's metadata, its frame plan, and the planned frames (uint8 RGB, N x H x W x 3)."""

    info: VideoInfo
    plan: FramePlan
    frames: np.ndarray
    notes: tuple[str, ...] = field(default=())  # what decoding had to assume or repair

    @property
    def all_notes(self) -> tuple[str, ...]:
        """Everything assumed for this video: probing, then planning, then decoding."""
        return (*self.info.notes, *self.plan.notes, *self.notes)


def load_video(
    path: str,
    options: SamplingOptions,
    *,
    video_start: float | None = None,
    video_end: float | None = None,
    threads: int = 2,
    resize: Resize = "reference",
) -> LoadedVideo:
    """Probe ``path``, plan its frames like qwen-vl-utils, and decode exactly those frames.

    ``threads`` caps the decoder's threads. Raises RecordError for a video that cannot be
    opened, planned or decoded; notes from probing, planning and decoding are in
    ``info.notes``, ``plan.notes`` and ``notes``.
    """
    # One demux pass serves both the frame count and the decoder's seek index.
    info, index = probe_with_index(path, index=True)
    plan = plan_frames(info, options, video_start=video_start, video_end=video_end)
    report = DecodeReport()
    frames = decode_frames(
        path, plan, rotation=info.rotation, threads=threads, index=index, resize=resize, report=report
    )
    return LoadedVideo(info=info, plan=plan, frames=frames, notes=tuple(report.notes))
