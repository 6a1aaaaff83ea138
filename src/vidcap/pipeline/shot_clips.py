"""One input record to its clip records: what ``vidcap clips`` writes for each video.

A clip record is the input record with ``video``, ``video_start`` and ``video_end`` (seconds,
frame starts as ``vidcap run`` plans them), ``shot_id`` and ``shot_kind``: exactly what
``vidcap run`` takes, so the shots are captioned without cutting or re-encoding any file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidcap.errors import RecordError
from vidcap.pipeline.check import (
    bound,
    resolve_video_path,
    seconds_problem,
    video_field_problem,
    video_paths,
)
from vidcap.video.metadata import probe_with_index
from vidcap.video.plan import resolve_rate
from vidcap.video.shots import cut_kind, find_cuts, frame_times, interval_cuts, scan_video, shots_from_cuts

ADDED_FIELDS = ("video_start", "video_end", "shot_id", "shot_kind")
ERROR_KEY = "clips_error"  # not run's "error"/"status": a clips file stays an input `vidcap run` takes


@dataclass(frozen=True)
class SplitOptions:
    """How ``vidcap clips`` cuts each video (``--split`` and the options beside it)."""

    split: str = "shots"  # "shots" or "interval"
    detector: str = "content"
    threshold: float | None = None
    min_frames: int = 15  # no cut closer than this to the previous one (PySceneDetect's min_scene_len)
    min_shot: float = 0.0
    drop_short: bool = False  # shots under min_shot are left out, not merged
    max_shot: float | None = None
    every: float | None = None
    trim_start: float = 0.0
    trim_end: float = 0.0
    video_key: str = "video"
    id_key: str | None = None


def clip_records(
    data: dict[str, Any], line: int, input_dir: Path, output_dir: Path, opts: SplitOptions
) -> list[dict[str, Any]]:
    """The clip records of one input record, in order. Raises RecordError for a record or video
    that cannot be split (the caller writes it as an error record)."""
    problem = video_field_problem(data, opts.video_key)
    if problem:
        raise RecordError(problem)
    paths = video_paths(data, opts.video_key)
    if len(paths) != 1:
        raise RecordError(f"'{opts.video_key}' must name one video to split, got {len(paths)}")
    for name in (*ADDED_FIELDS[2:], ERROR_KEY):
        if data.get(name) is not None:
            raise RecordError(f"record already has a '{name}' field, which vidcap clips writes")
    for name in ("video_start", "video_end"):
        problem = seconds_problem(data, name)
        if problem:
            raise RecordError(problem)
    if opts.id_key is not None and data.get(opts.id_key) is None:
        raise RecordError(f"record has no '{opts.id_key}' field (--id-key)")
    path = resolve_video_path(paths[0], input_dir)

    if opts.split == "interval":
        info, index = probe_with_index(path)
        fps, total, _ = resolve_rate(info)
        times = frame_times(index, total, fps)
        end = total / fps
    else:
        scan = scan_video(path, transnet=opts.detector == "transnetv2")
        fps, times, end = scan.fps, list(scan.times), scan.end
    segment_start = bound(data, "video_start") or 0.0
    segment_end = bound(data, "video_end")
    trim_start = segment_start + opts.trim_start
    trim_end = opts.trim_end + (max(0.0, end - segment_end) if segment_end is not None else 0.0)
    if opts.split == "interval":
        assert opts.every is not None
        cuts = interval_cuts(times, opts.every, trim_start)
        kinds = ["interval"] * len(cuts)
    else:
        cuts = find_cuts(scan, opts.detector, opts.threshold, opts.min_frames)
        kinds = [cut_kind(scan, cut) for cut in cuts]
    shots = shots_from_cuts(
        times,
        end,
        cuts,
        fps=fps,
        min_shot=opts.min_shot,
        drop_short=opts.drop_short,
        max_shot=opts.max_shot,
        trim_start=trim_start,
        trim_end=trim_end,
        kinds=kinds,
    )
    if not shots:
        raise RecordError(f"nothing left of {path} ({end:.3f} s) after trimming")
    source = source_id(data, line, opts)
    video = _path_for_output(paths[0], path, input_dir, output_dir)
    records = []
    for number, shot in enumerate(shots, 1):
        record = dict(data)
        record[opts.video_key] = video
        record["video_start"] = shot.start
        record["video_end"] = shot.end
        record["shot_id"] = f"{source}-{number}"
        record["shot_kind"] = shot.kind
        records.append(record)
    return records


def source_id(data: dict[str, Any], line: int, opts: SplitOptions) -> str:
    """What a record's shot ids start with: its ``--id-key`` value, else its input line."""
    return str(data[opts.id_key]) if opts.id_key is not None else str(line)


@dataclass(frozen=True)
class ClipTask:
    """One input record to split, as a pool worker receives it."""

    line: int
    data: dict[str, Any]
    input_dir: Path
    output_dir: Path
    opts: SplitOptions


def clip_task(task: ClipTask) -> list[dict[str, Any]]:
    """``clip_records`` of one task (a module-level function, for the decode pool)."""
    return clip_records(task.data, task.line, task.input_dir, task.output_dir, task.opts)


def _path_for_output(original: str, resolved: str, input_dir: Path, output_dir: Path) -> str:
    """The video path as the clips file names it: ``vidcap run`` resolves a relative path from
    the clips file's folder, so a relative path is rewritten from there."""
    if "://" in original or Path(original).expanduser().is_absolute():
        return original
    if input_dir.resolve() == output_dir.resolve():
        return original
    return os.path.relpath(resolved, output_dir)
