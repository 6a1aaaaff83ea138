"""The decode step: what a worker process does for one record (probe, plan, decode every video).

Kept free of heavy imports (no torch, transformers or vLLM): worker processes are spawned
fresh and import only this module and PyAV.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from vidcap.video.load import LoadedVideo, load_video
from vidcap.video.types import SamplingOptions


@dataclass(frozen=True)
class DecodeTask:
    """One record's videos to load; ``index`` is the record's input position."""

    index: int
    paths: tuple[str, ...]
    options: SamplingOptions
    video_start: float | None = None
    video_end: float | None = None
    threads: int = 2


@dataclass
class DecodedRecord:
    """A record's loaded videos, and the seconds the worker spent loading them (the run's
    statistics count the decode workers' own time, not only the main process's wait)."""

    videos: list[LoadedVideo]
    seconds: float


def decode_record(task: DecodeTask) -> DecodedRecord:
    """Load every video of a record; the first failure (a RecordError) fails the record."""
    started = time.perf_counter()
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
