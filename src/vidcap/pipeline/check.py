"""Check every input record before any work starts, and learn what the engine must reserve.

Also the checks that need the records a run will caption (``check_todo``: video files,
prompt fields) and the paths it will write (``check_output_is_not_input``): everything that
can be known before the model loads is known then.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidcap.config import RunOptions
from vidcap.errors import RecordError, VidcapError
from vidcap.io import object_store, staging
from vidcap.io.formats import format_for
from vidcap.io.lock import lock_path
from vidcap.io.records import BadLine, InputRecord, SpanReader
from vidcap.io.shards import InputSpan
from vidcap.io.sidecar import summary_path
from vidcap.io.writer import side_files
from vidcap.pipeline.text_pass import prompt_fields
from vidcap.prompts import DiyVideoPrompt, conversation_prompt

EXAMPLES = 10  # problems listed one per line before "... and N more"


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
    """``file:line`` for a JSONL record, ``file: element N`` for a JSON array's, ``file: row N``
    for a table's."""
    return format_for(input_path, "input").location(input_path, record.line)


def record_problem(record: dict, opts: RunOptions) -> str | None:
    """What makes a record unusable (a user error that stops the run), or None."""
    problem = None if opts.no_video else video_field_problem(record, opts.input_video_key)
    if problem:
        return problem
    conversation = record.get(opts.conversation_key)
    if conversation is not None and not isinstance(conversation, list):
        return f"'{opts.conversation_key}' must be a list of turns, got {type(conversation).__name__}"
    if opts.window is not None and len(video_paths(record, opts.input_video_key)) > 1:
        count = len(video_paths(record, opts.input_video_key))
        return f"--window captions one video per record; this record has {count} videos"
    for name in ("video_start", "video_end"):
        problem = seconds_problem(record, name)
        if problem:
            return problem
    for name, option in (
        (opts.output_key, "output_key"),
        (opts.status_key, "status_key"),
        (opts.error_key, "error_key"),
        (opts.info_key, "info_key"),
        # Written beside the caption when needed (raw text of a failed structured caption,
        # what decoding assumed): named after the output key.
        (f"{opts.output_key}_raw", "output_key"),
        (f"{opts.output_key}_notes", "output_key"),
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
    # The output's extension (the input's, without --output) decides what it can hold: a
    # Parquet output refuses values it would change (a column of mixed types) before any work.
    fits_output = format_for(Path(opts.output) if opts.output else input_path, "output").record_checker()
    most_videos = 0
    first_seen: dict[str, int] = {}
    for record in reader:
        problem = record_problem(record.data, opts)
        if problem is None and fits_output is not None:
            problem = fits_output(record.data)
        if problem:
            raise VidcapError(f"{record_location(input_path, record)}: {problem}")
        if not opts.no_video:
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


def resolve_video_path(path: str, base: Path | str) -> str:
    """A record's video path as a file to open: relative paths are relative to the input's folder
    (``base``, a URL's folder for an input in object storage)."""
    if path.startswith("file://"):
        path = path[len("file://") :]
    if "://" in path:
        return path  # a URL: an object store's is read through fsspec, others handed to FFmpeg
    if object_store.is_url(base):
        return staging.join_url(str(base), path)
    expanded = Path(path).expanduser()
    return str(expanded if expanded.is_absolute() else base / expanded)


def seconds_problem(record: dict[str, Any], name: str) -> str | None:
    """What is wrong with a record's ``video_start``/``video_end``, or None: a number of seconds,
    or the text of one (a CSV cell reads back as text, as in a clips file written as CSV)."""
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return None
    elif not isinstance(value, bool) and isinstance(value, int | float):
        return None
    return f"'{name}' must be a number of seconds, got {value!r}"


def video_base(opts: RunOptions, input_path: Path) -> Path | str:
    """Where relative video paths start: ``--video-root`` (a folder or a URL), else the input's folder."""
    if opts.video_root and object_store.is_url(opts.video_root):
        return opts.video_root
    return Path(opts.video_root) if opts.video_root else input_path.parent


def bound(record: dict[str, Any], name: str) -> float | None:
    """A record's optional ``video_start``/``video_end`` in seconds."""
    value = record.get(name)
    return float(value) if value is not None else None


def check_output_is_not_input(input_path: Path, output_path: Path) -> None:
    """Refuse a run whose output (or a file written beside it) is the input itself.

    Compares files, not names (``os.path.samefile``: a symlink or a hard link to the input
    is the input), so the input is never truncated, repaired or replaced.
    """
    written = [output_path, *side_files(output_path), summary_path(output_path), lock_path(output_path)]
    for path in written:
        same = path.absolute() == input_path.absolute()
        if not same:
            try:
                same = os.path.samefile(path, input_path)
            except OSError:
                same = False  # does not exist (yet): cannot be the input
        if same:
            what = "the output" if path == output_path else f"a file the run writes ({path.name})"
            raise VidcapError(
                f"{path}: {what} is the input file {input_path}; choose another --output "
                "(vidcap never writes its input)"
            )


@dataclass
class TodoFacts:
    """What ``check_todo`` found in the records a run is about to caption.

    ``missing_videos``: ``where: path: problem`` for the first few unreadable video files,
    ``missing_count`` all of them. ``field_misses``: per template field, how many records
    that use the template lack it, with the first few locations; ``template_records``: how
    many records use the template (the others have their own prompt in the conversation).
    """

    records: int = 0
    missing_videos: list[str] = field(default_factory=list)
    missing_count: int = 0
    template_records: int = 0
    field_misses: dict[str, list[str]] = field(default_factory=dict)
    field_counts: dict[str, int] = field(default_factory=dict)
    fields_seen: set[str] = field(default_factory=set)


def _video_problem(path: str, buckets: set[str]) -> str | None:
    """Why a local video file cannot be read, or None (URLs are left to the decoder).

    An object-store URL's bucket is checked once (``buckets``: those checked): a missing bucket
    or no credentials stops the run before the model loads; a missing object is its record's error."""
    if object_store.is_url(path):
        bucket = path.split("/", 3)[2] if path.count("/") >= 2 else path
        scheme_bucket = path.split("://", 1)[0] + "://" + bucket
        if scheme_bucket not in buckets:
            buckets.add(scheme_bucket)
            object_store.check_bucket(path, "video")
        return None
    if "://" in path:
        return None
    try:
        if not os.path.isfile(path):
            return "no such file" if not os.path.exists(path) else "not a file"
    except OSError as e:
        return e.strerror or str(e)
    if not os.access(path, os.R_OK):
        return "not readable (permission denied)"
    return None


def check_todo(
    records: Iterable[InputRecord], input_path: Path, opts: RunOptions, template: DiyVideoPrompt
) -> TodoFacts:
    """One pass over the records to caption: a stat per video path, the template's fields.

    Only reports; :func:`todo_problems` turns the facts into warnings or a stop.
    """
    facts = TodoFacts()
    buckets: set[str] = set()
    base = video_base(opts, input_path)
    for record in records:
        facts.records += 1
        paths = [] if opts.no_video else video_paths(record.data, opts.input_video_key)
        for path in paths:
            problem = _video_problem(resolve_video_path(path, base), buckets)
            if problem is not None:
                facts.missing_count += 1
                if len(facts.missing_videos) < EXAMPLES:
                    facts.missing_videos.append(f"{record_location(input_path, record)}: {path}: {problem}")
        own_prompt = not opts.prompt_first and conversation_prompt(record.data.get(opts.conversation_key))
        if not opts.no_video and (not paths or own_prompt):
            continue  # no video (skipped) or its own prompt: the template is not used
        # A text pass fills the template from more than the record's fields ({windows}, ...).
        fields = record.data
        if opts.no_video:
            with contextlib.suppress(RecordError):  # a bad windows field: the record's own error
                fields = prompt_fields(record.data, template)
        facts.template_records += 1
        if len(facts.fields_seen) < 1000:
            facts.fields_seen.update(k for k in fields if isinstance(k, str))
        for name in template.fields:
            if name not in fields:
                facts.field_counts[name] = facts.field_counts.get(name, 0) + 1
                examples = facts.field_misses.setdefault(name, [])
                if len(examples) < EXAMPLES:
                    examples.append(record_location(input_path, record))
    return facts


def todo_problems(facts: TodoFacts, *, on_missing_video: str) -> list[str]:
    """Warnings to print for ``facts``; raises VidcapError for what must stop the run.

    A template field that no record has is a typo: it would fail every record, so it stops
    the run. A field some records lack, or a missing video, fails only those records (as it
    would have without the check), unless ``on_missing_video == "error"``.
    """
    for name, count in facts.field_counts.items():
        if count == facts.template_records:
            close = difflib.get_close_matches(name, sorted(facts.fields_seen), n=1)
            hint = f"; did you mean '{{{close[0]}}}'?" if close else ""
            raise VidcapError(
                f"prompt template field '{{{name}}}' is in none of the {count} records that use the "
                f"template (first: {facts.field_misses[name][0]}){hint}"
            )
    warnings: list[str] = []
    if facts.missing_count:
        if on_missing_video == "error":
            raise VidcapError(
                f"{facts.missing_count} video file(s) missing or unreadable (first: "
                f"{facts.missing_videos[0]}); nothing was captioned (--on-missing-video error)"
            )
        warnings.append(
            f"{facts.missing_count} video file(s) missing or unreadable; their records will get "
            "status error (--on-missing-video error stops instead):"
        )
        warnings += [f"  {line}" for line in facts.missing_videos]
        if facts.missing_count > len(facts.missing_videos):
            warnings.append(f"  ... and {facts.missing_count - len(facts.missing_videos)} more")
    for name, count in facts.field_counts.items():
        warnings.append(
            f"{count} record(s) lack the prompt template field '{{{name}}}' and will get status "
            f"error: {', '.join(facts.field_misses[name])}" + (" ..." if count > EXAMPLES else "")
        )
    return warnings
