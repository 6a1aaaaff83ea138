"""Reading what the report shows: output files (any record format), their summaries, and a
normalised view of each record.

Records are streamed (a report may be asked of a million-record output): the report reads the
files twice, once for the counts and plots, once for the records it shows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidcap.errors import VidcapError
from vidcap.io.formats import format_for, supported
from vidcap.io.jsonio import dumps_pretty, loads
from vidcap.io.object_store import is_url
from vidcap.io.records import iter_records
from vidcap.io.sidecar import summary_path
from vidcap.io.staging import url_folder
from vidcap.pipeline.check import resolve_video_path
from vidcap.pipeline.windowed import timed_text
from vidcap.report.fields import ReportFields
from vidcap.video.windows import Span


@dataclass(frozen=True)
class OutputFile:
    """One output file, its run summary (None when absent or unreadable), and its video folder.

    ``video_base`` is the folder relative video paths are resolved against, as ``vidcap run``
    does (the input file's folder); ``notes`` say where the folder came from when that had to
    be guessed, and why a summary could not be used.
    """

    path: Path
    summary: dict[str, Any] | None
    video_base: Path | str  # a URL's folder when the run's input was in object storage
    notes: tuple[str, ...] = ()

    @property
    def summary_prompt(self) -> str | None:
        """The run's ``--summary-prompt``, as its summary's fingerprint records it, else None."""
        fingerprint = (self.summary or {}).get("fingerprint")
        options = fingerprint.get("options") if isinstance(fingerprint, dict) else None
        value = options.get("summary_prompt") if isinstance(options, dict) else None
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class WindowView:
    """One timed window of a record: its segment, caption, status and info."""

    start: float | None
    end: float | None
    caption: str | None
    status: str | None
    info: dict[str, Any]
    flags: tuple[str, ...]


@dataclass(frozen=True)
class RecordView:
    """What the report needs of one output record (the record itself is not kept).

    ``position`` is the record's 0-based place over all the outputs, in order; ``where`` is
    ``file:line``; ``problems`` name fields the report could not read as documented.
    """

    position: int
    where: str
    id: str
    status: str
    caption: str | None
    error: str | None
    notes: tuple[str, ...]
    info: dict[str, Any]
    flags: tuple[str, ...]
    windows: tuple[WindowView, ...]
    videos: tuple[str, ...]  # paths as the run opens them
    shown_videos: tuple[str, ...]  # paths as the record names them
    start: float | None
    end: float | None
    problems: tuple[str, ...] = ()
    # What the caption of a windowed record is: "summary" (--summary-prompt: a text-only pass over
    # the windows' captions, its prompt in ``summary_prompt`` when the run summary has it) or
    # "timed" (the windows' captions joined, a line each); "caption" for any other record.
    caption_kind: str = "caption"
    summary_prompt: str | None = None
    # A record made by ``vidcap clips`` (it has a shot id): the shot's id and what starts it
    # (``cut``, ``dissolve``...); ``start``/``end`` are then its span in the source video.
    shot_id: str | None = None
    shot_kind: str | None = None

    def all_flags(self) -> tuple[str, ...]:
        """The record's flags and its windows' flags, each once, in first-seen order."""
        seen = dict.fromkeys(self.flags)
        for window in self.windows:
            seen.update(dict.fromkeys(window.flags))
        return tuple(seen)

    def captions(self) -> list[str]:
        """The captions of one video or window each: a record's own, or its windows' (its summary
        and its timed text are about the whole video: ``summary()``)."""
        if self.windows:
            return [w.caption for w in self.windows if w.caption]
        return [self.caption] if self.caption else []

    def summary(self) -> str | None:
        """A windowed record's summary caption (``--summary-prompt``), else None."""
        return self.caption if self.caption_kind == "summary" else None


def open_output(path: Path, video_root: Path | None) -> OutputFile:
    """Check that ``path`` is an output the report can read; find its summary and video folder."""
    try:
        format_for(path, "output")
    except VidcapError:
        raise VidcapError(f"{path}: not a vidcap output file (expected {supported()})") from None
    if not path.is_file():
        raise VidcapError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    notes: list[str] = []
    summary = _read_summary(path, notes)
    if video_root is not None:
        return OutputFile(path, summary, video_root, tuple(notes))
    recorded = summary.get("input") if summary else None
    if is_url(recorded):  # the run's input was in object storage: its videos are read from there
        return OutputFile(path, summary, url_folder(str(recorded)), tuple(notes))
    if isinstance(recorded, str) and Path(recorded).parent.is_dir():
        return OutputFile(path, summary, Path(recorded).parent, tuple(notes))
    if isinstance(recorded, str):
        why = f"the run's input folder {Path(recorded).parent} is not here"
    else:
        why = "the run summary names no input" if summary else "no run summary"
    notes.append(f"{why}: relative video paths start from the output's folder (--video-root to choose)")
    return OutputFile(path, summary, path.parent, tuple(notes))


def _read_summary(path: Path, notes: list[str]) -> dict[str, Any] | None:
    sidecar = summary_path(path)
    if not sidecar.is_file():
        return None
    try:
        data = loads(sidecar.read_bytes())
    except (OSError, ValueError) as exc:
        notes.append(f"{sidecar}: unreadable run summary ({exc}); figures from the records only")
        return None
    if not isinstance(data, dict):
        notes.append(f"{sidecar}: run summary is not a JSON object; figures from the records only")
        return None
    return data


def iter_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, record)`` for each record of an output file, read with the project's readers.

    ``where`` is ``file:line`` (``file: element N`` in a JSON array, ``file: row N`` in Parquet).
    A malformed line stops the report with ``file:line: what is wrong`` (VidcapError).
    """
    fmt = format_for(path, "output")
    for record in iter_records(path):
        yield fmt.location(path, record.line), record.data


def caption_text(value: Any) -> str | None:
    """A caption as text: a string as it is, a list numbered one per line, anything else as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(f"[{n}] {text}" for n, text in enumerate(value, start=1))
    return dumps_pretty(value).decode()


def _number(value: Any) -> float | None:
    """A number, or the text of one (a CSV output's cells are text); None for anything else."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _info(value: Any, fields: ReportFields, what: str, problems: list[str]) -> tuple[dict, tuple[str, ...]]:
    """(info without its flags, flags) from an info object; a malformed one is a problem, not a crash."""
    if value is None:
        return {}, ()
    if not isinstance(value, dict):
        problems.append(f"{what} is not an object")
        return {}, ()
    raw_flags = value.get(fields.flags) or []
    if not isinstance(raw_flags, list) or not all(isinstance(f, str) for f in raw_flags):
        problems.append(f"{what}.{fields.flags} is not a list of strings")
        raw_flags = []
    rest = {k: v for k, v in value.items() if k != fields.flags}
    return rest, tuple(dict.fromkeys(raw_flags))


def _windows(value: Any, fields: ReportFields, problems: list[str]) -> tuple[WindowView, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append(f"'{fields.windows}' is not a list")
        return ()
    windows = []
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            problems.append(f"window {number} is not an object")
            continue
        info, flags = _info(item.get(fields.info), fields, f"window {number} {fields.info}", problems)
        status = item.get(fields.status)
        windows.append(
            WindowView(
                start=_number(item.get(fields.window_start)),
                end=_number(item.get(fields.window_end)),
                caption=caption_text(item.get(fields.caption)),
                status=str(status) if status is not None else None,
                info=info,
                flags=flags,
            )
        )
    return tuple(windows)


def _videos(record: dict[str, Any], fields: ReportFields, problems: list[str]) -> list[str]:
    value = record.get(fields.video)
    if value is None:
        return []
    paths = [value] if isinstance(value, str) else value
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        problems.append(f"'{fields.video}' is not a path or a list of paths")
        return []
    return paths


def record_view(
    record: dict[str, Any], *, position: int, where: str, output: OutputFile, fields: ReportFields
) -> RecordView:
    """Normalise one output record for the report (never raises for a malformed field)."""
    problems: list[str] = []
    info, flags = _info(record.get(fields.info), fields, f"'{fields.info}'", problems)
    notes = record.get(fields.notes)
    if isinstance(notes, str):
        notes = [notes]
    if notes is not None and not (isinstance(notes, list) and all(isinstance(n, str) for n in notes)):
        problems.append(f"'{fields.notes}' is not a list of strings")
        notes = None
    shown = _videos(record, fields, problems)
    windows = _windows(record.get(fields.windows), fields, problems)
    kind = _caption_kind(record, fields) if windows else "caption"
    record_id = record.get(fields.id)
    error = record.get(fields.error)
    shot_id, shot_kind = record.get(fields.shot_id), record.get(fields.shot_kind)
    return RecordView(
        position=position,
        where=where,
        id=str(record_id) if record_id is not None else f"#{position}",
        status=str(record.get(fields.status)),
        caption=caption_text(record.get(fields.caption)),
        error=str(error) if error is not None else None,
        notes=tuple(notes or ()),
        info=info,
        flags=flags,
        windows=windows,
        videos=tuple(resolve_video_path(p, output.video_base) for p in shown),
        shown_videos=tuple(shown),
        start=_number(record.get(fields.video_start)),
        end=_number(record.get(fields.video_end)),
        problems=tuple(problems),
        caption_kind=kind,
        summary_prompt=output.summary_prompt if kind == "summary" else None,
        shot_id=str(shot_id) if shot_id is not None else None,
        shot_kind=str(shot_kind) if shot_id is not None and shot_kind is not None else None,
    )


def _caption_kind(record: dict[str, Any], fields: ReportFields) -> str:
    """What a windowed record's caption is: ``timed`` when it is its windows' captions joined (a
    run without --summary-prompt), else ``summary``."""
    try:
        windows = record[fields.windows]
        spans = [Span(w[fields.window_start], w[fields.window_end]) for w in windows]
        joined = timed_text(spans, [w.get(fields.caption) for w in windows])
    except (KeyError, TypeError, AttributeError, ValueError):
        return "summary"
    return "timed" if record.get(fields.caption) == joined else "summary"


def iter_views(outputs: list[OutputFile], fields: ReportFields) -> Iterator[RecordView]:
    """Every record of the outputs, in order, as a :class:`RecordView`."""
    position = 0
    for output in outputs:
        for where, record in iter_rows(output.path):
            yield record_view(record, position=position, where=where, output=output, fields=fields)
            position += 1
