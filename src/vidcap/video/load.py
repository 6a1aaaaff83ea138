"""Probe, plan and decode one video: the whole job of a decode worker process.

Imports stay light (PyAV, numpy): no torch, no transformers, so a worker starts in a
fraction of a second.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from vidcap.families import plan_video
from vidcap.video.decode import DecodeReport, Resize, decode_frames
from vidcap.video.metadata import probe_with_index
from vidcap.video.types import FramePlan, SamplingOptions, VideoInfo
from vidcap.video.windows import Span, format_span, plan_windows


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
    plan = plan_video(info, options, video_start=video_start, video_end=video_end)
    report = DecodeReport()
    frames = decode_frames(
        path, plan, rotation=info.rotation, threads=threads, index=index, resize=resize, report=report
    )
    return LoadedVideo(info=info, plan=plan, frames=frames, notes=tuple(report.notes))


@dataclass
class LoadedWindow:
    """One timed window of a video: its span (seconds from the start of the video), its frame
    plan and the planned frames (uint8 RGB, N x H x W x 3)."""

    span: Span
    plan: FramePlan
    frames: np.ndarray


@dataclass
class WindowedVideo:
    """A video cut into timed windows (``--window``), each with its own plan and frames.

    ``plan`` is the plan of the whole segment (``video_start``/``video_end``): its notes say
    what was assumed about the stream; the windows' own plan notes are in ``all_notes``.
    """

    info: VideoInfo
    plan: FramePlan
    windows: list[LoadedWindow]
    notes: tuple[str, ...] = field(default=())  # what decoding had to assume or repair

    @property
    def all_notes(self) -> tuple[str, ...]:
        """Everything assumed: probing, planning the segment, planning each window (named by its
        span; a note every window shares is said once), then decoding."""
        notes = [*self.info.notes, *self.plan.notes]
        for window in self.windows:
            for note in window.plan.notes:
                if note not in notes:  # the stream's notes (a missing frame rate) repeat per window
                    notes.append(f"window {format_span(window.span)}: {note}")
        return tuple(dict.fromkeys([*notes, *self.notes]))


def load_windowed_video(
    path: str,
    options: SamplingOptions,
    window: float,
    *,
    video_start: float | None = None,
    video_end: float | None = None,
    threads: int = 2,
    resize: Resize = "reference",
) -> WindowedVideo:
    """Probe ``path`` once, cut it into windows of ``window`` seconds (``video/windows.py``),
    plan each window like a whole video, and decode the frames of all windows together.

    Windows whose frames have the same planned size (all but maybe the last, which may be
    longer) are decoded in one pass over the file, their plans joined in time order; a window
    of another size takes a pass of its own, which seeks to it. Raises RecordError as
    ``load_video`` does.
    """
    info, index = probe_with_index(path, index=True)
    whole, plans = plan_windows(info, options, window, video_start=video_start, video_end=video_end)
    groups: dict[tuple[int, int], list[int]] = {}
    for number, planned in enumerate(plans):
        groups.setdefault((planned.plan.resized_width, planned.plan.resized_height), []).append(number)
    frames: dict[int, np.ndarray] = {}
    report = DecodeReport()
    for numbers in groups.values():
        first = plans[numbers[0]].plan
        joined = dataclasses.replace(
            first,
            nframes=sum(plans[n].plan.nframes for n in numbers),
            frame_indices=tuple(i for n in numbers for i in plans[n].plan.frame_indices),
            timestamps=tuple(t for n in numbers for t in plans[n].plan.timestamps),
            notes=(),
        )
        decoded = decode_frames(
            path, joined, rotation=info.rotation, threads=threads, index=index, resize=resize, report=report
        )
        offset = 0
        for n in numbers:
            count = len(plans[n].plan.frame_indices)
            frames[n] = decoded[offset : offset + count]
            offset += count
    windows = [LoadedWindow(p.span, p.plan, frames[n]) for n, p in enumerate(plans)]
    return WindowedVideo(info=info, plan=whole, windows=windows, notes=tuple(dict.fromkeys(report.notes)))
