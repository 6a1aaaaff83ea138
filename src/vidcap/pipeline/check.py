"""Check every input record before any work starts, and learn what the engine must reserve."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidcap.config import RunOptions
from vidcap.errors import VidcapError
from vidcap.io._files import detect_format
from vidcap.io.records import BadLine, InputRecord, iter_records, scan_input
from vidcap.io.resume import check_unique_ids


@dataclass(frozen=True)
class DatasetFacts:
    """What the check pass learned: how many records, the most videos in one record, and
    the lines skipped as bad (``--on-bad-line skip``; the first ones with their messages)."""

    records: int
    max_videos_per_record: int
    bad_count: int = 0
    bad_lines: tuple[BadLine, ...] = ()


def video_paths(record: dict, key: str) -> list[str]:
    """The record's video field as a list (a single path, a list of paths, or null/[] for none)."""
    value = record[key]
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def video_field_problem(record: dict, key: str) -> str | None:
    """What is wrong with a record's video field (``run`` and ``probe`` read it alike), or None."""
    if key not in record:
        return f"record has no '{key}' field (set --input-video-key to the field holding the video path)"
    value = record[key]
    if value is not None and not isinstance(value, str | list):
        return f"'{key}' must be a path or a list of paths, got {type(value).__name__}"
    if isinstance(value, list) and not all(isinstance(v, str) and v for v in value):
        return f"'{key}' must be a list of non-empty path strings"
    if isinstance(value, str) and not value:
        return f"'{key}' is an empty string"
    return None


def record_location(input_path: Path, record: InputRecord) -> str:
    """``file:line`` for a JSONL record, ``file: element N`` for a JSON array's."""
    if detect_format(input_path, "input") == "json":
        return f"{input_path}: element {record.line}"
    return f"{input_path}:{record.line}"


def record_problem(record: dict, opts: RunOptions) -> str | None:
    """What makes a record unusable (a user error that stops the run), or None."""
    problem = video_field_problem(record, opts.input_video_key)
    if problem:
        return problem
    conversation = record.get(opts.conversation_key)
    if conversation is not None and not isinstance(conversation, list):
        return f"'{opts.conversation_key}' must be a list of turns, got {type(conversation).__name__}"
    for name in ("video_start", "video_end"):
        bound = record.get(name)
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int | float)):
            return f"'{name}' must be a number of seconds, got {bound!r}"
    for name, option in (
        (opts.output_key, "output_key"),
        (opts.status_key, "status_key"),
        (opts.error_key, "error_key"),
    ):
        if name in record:
            flag = "--" + option.replace("_", "-")
            return (
                f"record already has a '{name}' field; choose another name with {flag} ({option}= in Python)"
            )
    if opts.id_key is not None and (
        record.get(opts.id_key) is None or isinstance(record[opts.id_key], dict | list)
    ):
        return f"record has no '{opts.id_key}' value (--id-key needs a string or number in every record)"
    return None


def check_records(input_path: Path, opts: RunOptions) -> DatasetFacts:
    """One streaming pass over the input: every record usable (ids unique too, with --id-key).

    Raises VidcapError naming ``file:line`` (``file: element N`` for a JSON array).
    """
    # With "error", the pass below stops at the first bad line itself; only "skip" needs the
    # scan, for its report of what was skipped (a second full parse of the input otherwise).
    scan = scan_input(input_path, on_bad_line="skip") if opts.on_bad_line == "skip" else None
    count = 0
    most_videos = 0
    for record in iter_records(input_path, on_bad_line=opts.on_bad_line):
        problem = record_problem(record.data, opts)
        if problem:
            raise VidcapError(f"{record_location(input_path, record)}: {problem}")
        count += 1
        most_videos = max(most_videos, len(video_paths(record.data, opts.input_video_key)))
    if count == 0:  # (with "skip", the scan has said so already, naming the bad lines)
        raise VidcapError(f"{input_path}: input is empty: no records found")
    if opts.id_key is not None:
        check_unique_ids(input_path, opts.id_key, opts.on_bad_line)
    if scan is None:
        return DatasetFacts(count, most_videos)
    return DatasetFacts(count, most_videos, bad_count=scan.bad_count, bad_lines=scan.bad_lines)


def record_id(record: InputRecord, opts: RunOptions) -> str:
    """The key resume uses: the --id-key value, else the input position."""
    if opts.id_key is not None:
        return str(record.data[opts.id_key])
    return str(record.index)


def resolve_video_path(path: str, base: Path) -> str:
    """A record's video path as a file to open: relative paths are relative to the input's folder."""
    if path.startswith("file://"):
        path = path[len("file://") :]
    if "://" in path:
        return path  # a URL: handed to FFmpeg as it is
    expanded = Path(path).expanduser()
    return str(expanded if expanded.is_absolute() else base / expanded)


def bound(record: dict[str, Any], name: str) -> float | None:
    """A record's optional ``video_start``/``video_end`` in seconds."""
    value = record.get(name)
    return float(value) if value is not None else None
