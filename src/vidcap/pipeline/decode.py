"""The decode step: what a worker process does for one record (probe, plan, decode every video).

Kept free of heavy imports (no torch, transformers or vLLM): worker processes are spawned
fresh and import only this module and PyAV.
"""

from __future__ import annotations

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


def decode_record(task: DecodeTask) -> list[LoadedVideo]:
    """Load every video of a record; the first failure (a RecordError) fails the record."""
    return [
        load_video(
            path,
            task.options,
            video_start=task.video_start,
            video_end=task.video_end,
            threads=task.threads,
        )
        for path in task.paths
    ]
