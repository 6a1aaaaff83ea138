"""The decode step: what a worker process does for one record (probe, plan, decode every video).

Kept free of heavy imports (no torch, transformers or vLLM): worker processes are spawned
fresh and import only this module and PyAV.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from vidcap.errors import RecordError
from vidcap.video.load import LoadedVideo, WindowedVideo, load_video, load_windowed_video
from vidcap.video.types import SamplingOptions


@dataclass(frozen=True)
class DecodeTask:
    """One record's videos to load; ``index`` is the record's input position.

    ``window`` (seconds, ``--window``): cut the video into timed windows, each planned and
    decoded as in ``vidcap.video.windows``; a windowed record has exactly one video.
    """

    index: int
    paths: tuple[str, ...]
    options: SamplingOptions
    video_start: float | None = None
    video_end: float | None = None
    threads: int = 2
    window: float | None = None


@dataclass
class DecodedRecord:
    """A record's loaded videos (``WindowedVideo`` items with ``--window``), and the seconds the
    worker spent loading them (the run's statistics count the decode workers' own time, not only
    the main process's wait)."""

    videos: list[LoadedVideo] | list[WindowedVideo]
    seconds: float


def decode_record(task: DecodeTask) -> DecodedRecord:
    """Load every video of a record; the first failure (a RecordError) fails the record.

    With ``task.window``: one video, as a ``WindowedVideo`` (its file probed once and decoded in
    one pass where the windows' frame sizes allow); a record with several videos is a RecordError.
    """
    started = time.perf_counter()
    if task.window is not None:
        if len(task.paths) > 1:
            raise RecordError(
                f"--window captions one video per record; this record has {len(task.paths)} videos"
            )
        windowed = [
            load_windowed_video(
                path,
                task.options,
                task.window,
                video_start=task.video_start,
                video_end=task.video_end,
                threads=task.threads,
            )
            for path in task.paths
        ]
        return DecodedRecord(windowed, time.perf_counter() - started)
    videos = [
        load_video(
            path,
            task.options,
            video_start=task.video_start,
            video_end=task.video_end,
            threads=task.threads,
        )
        for path in task.paths
    ]
    return DecodedRecord(videos, time.perf_counter() - started)
