"""Check every input record before any work starts, and learn what the engine must reserve."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidcap.config import RunOptions
from vidcap.errors import VidcapError
from vidcap.io._files import detect_format
from vidcap.io.records import BadLine, InputRecord, SpanReader
from vidcap.io.shards import InputSpan


@dataclass(frozen=True)
class DatasetFacts:
    """What the check pass learned about the shard's share of the input: how many records,
    the most videos in one record, the lines skipped as bad (``--on-bad-line skip``; the
    first ones with their messages), and a digest of the share's content (for resume)."""

    records: int
    max_videos_per_record: int
    bad_count: int = 0
    bad_lines: tuple[BadLine, ...] = ()
    digest: str | None = None


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


def check_records(span: InputSpan, opts: RunOptions, *, whole_input: bool = True) -> DatasetFacts:
    """One streaming pass over the shard's span: every record usable, ids unique (--id-key).

    Reads nothing outside the span. Ids are checked within the span only; ``vidcap merge``
    checks them across shards. ``whole_input``: the span is the whole file (one shard), so
    finding no record is an error rather than an empty shard (an empty file is an error for
    every shard). Raises VidcapError naming
    ``file:line`` (``file: element N`` for a JSON array).
    """
    input_path = span.path
    reader = SpanReader(span, on_bad_line=opts.on_bad_line, digest=True)
    most_videos = 0
    first_seen: dict[str, int] = {}
    for record in reader:
        problem = record_problem(record.data, opts)
        if problem:
            raise VidcapError(f"{record_location(input_path, record)}: {problem}")
        most_videos = max(most_videos, len(video_paths(record.data, opts.input_video_key)))
        if opts.id_key is not None:
            rid = str(record.data[opts.id_key])
            first = first_seen.setdefault(rid, record.line)
            if first != record.line:
                where = record_location(input_path, record)
                raise VidcapError(
                    f"{where}: duplicate id {rid!r} (first at {span.unit} {first}); "
                    "--id-key values must be unique"
                )
    if reader.records == 0 and (whole_input or span.size == 0):
        if reader.bad_count:
            raise VidcapError(
                f"{input_path}: no valid records: all {reader.bad_count} non-blank lines are bad "
                f"(first: {reader.bad_lines[0].message})"
            )
        raise VidcapError(f"{input_path}: input is empty: no records found")
    return DatasetFacts(
        reader.records, most_videos, reader.bad_count, tuple(reader.bad_lines), digest=reader.digest
    )


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
