"""JSON Lines (``.jsonl``, ``.ndjson``): one record per line, read by byte span, appended in place.

Reading: a shard finds its lines with a newline scan (``shards.line_span``) and reads only
its byte range. Writing: every batch is one ``write`` then ``fsync``, so a SIGKILL loses at
most the batch in flight and leaves at worst a *torn* last line, which a resumed writer
cuts off (:func:`repair_tail`) and resume does not count (``files.iter_output_records``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from vidcap.io import files
from vidcap.io.formats.interface import (
    Columns,
    Entry,
    Located,
    RecordFormat,
    RecordWriter,
    Update,
    cannot_write,
    jsonl_chunks,
)
from vidcap.io.shards import InputSpan, line_span


def _line_start(fd: int, end: int) -> int:
    """Offset just after the last newline before ``end`` (0 if none), reading backwards in blocks."""
    pos = end
    while pos > 0:
        lo = max(0, pos - 65536)
        i = os.pread(fd, pos - lo, lo).rfind(b"\n")
        if i >= 0:
            return lo + i + 1
        pos = lo
    return 0


def repair_tail(fd: int) -> int:
    """Cut a torn end off a JSONL file open on ``fd``; return how many bytes were removed.

    Drops what ``files.iter_output_records`` passes over: the bytes after the last newline,
    then the last non-blank line if it is not a JSON object. Never more, so real damage
    further up is left for ``load_done`` to report rather than silently eaten.
    """
    size = os.fstat(fd).st_size
    keep = end = _line_start(fd, size)
    while end > 0:
        start = _line_start(fd, end - 1)
        content = os.pread(fd, end - start, start).rstrip(b"\r\n")
        if start == 0 and content.startswith(files.BOM):
            content = content[len(files.BOM) :]
        if files.is_blank(content):
            end = start
            continue
        if files.parse_record(content)[1] is not None:
            keep = start
        break
    if keep < size:
        os.ftruncate(fd, keep)
        os.fsync(fd)
    return size - keep


class AppendFile:
    """A JSONL file opened for appending whole, fsynced batches.

    ``aside=True`` (starting afresh over a file that may hold an earlier run's records):
    batches go to a new temp sibling, which replaces ``path`` right after the first batch is
    durable (or at :meth:`publish`). Until then ``path`` is untouched, so a run that fails
    before it has written anything (a model that does not load) loses nothing.
    """

    def __init__(self, path: Path, *, resume: bool, report_as: Path, aside: bool = False) -> None:
        self.path = path
        self._aside: Path | None = files.temp_path(path) if aside else None
        target = self._aside or path
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND
        if aside:
            flags |= os.O_EXCL
        elif not resume:
            flags |= os.O_TRUNC
        try:
            self._fd: int | None = os.open(target, flags, 0o666)
        except OSError as e:
            raise cannot_write(report_as, e) from None
        # Make the file's creation itself durable, not just its content.
        files.fsync_dir(path.parent)
        self.repaired_bytes = repair_tail(self._fd) if resume else 0

    @property
    def in_place(self) -> bool:
        """True once ``path`` is the file being written (always, unless written aside)."""
        return self._aside is None

    def append(self, records: list[dict]) -> None:
        """Write ``records`` as one buffer, fsync, and publish an aside file."""
        if self._fd is None:
            raise ValueError(f"{self.path}: writer is closed")
        if not records:
            return
        # One buffer, one write: a kill leaves complete lines plus at most one torn line.
        files.write_all(self._fd, b"".join(jsonl_chunks(records)))
        os.fsync(self._fd)
        self.publish()

    def publish(self) -> None:
        """Put the aside file in place of ``path`` (the descriptor follows the rename)."""
        if self._aside is None or self._fd is None:
            return
        os.replace(self._aside, self.path)
        self._aside = None
        files.fsync_dir(self.path.parent)

    def close(self) -> None:
        """Close; an aside file that was never published is deleted (``path`` stays as it was)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._aside is not None:
            with contextlib.suppress(OSError):
                self._aside.unlink()


class JsonlWriter(RecordWriter):
    """Appends batches to the output itself (written aside until the first batch when fresh)."""

    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        self._file = AppendFile(path, resume=resume, report_as=path, aside=not resume)
        self.repaired_bytes = self._file.repaired_bytes

    @property
    def touched_output(self) -> bool:
        return self._file.in_place

    def write_batch(self, records: list[dict]) -> None:
        self._file.append(records)

    def close(self, *, complete: bool) -> None:
        if complete:
            self._file.publish()  # a complete run with no records leaves an empty output
        self._file.close()


def jsonl_entries(path: Path, lines: Iterable[bytes], *, first_line: int, update: Update) -> Iterator[Entry]:
    """Entries of raw JSONL ``lines`` read from ``path``, the first being line ``first_line``;
    ``update`` (a hash's) receives each line's content, line endings normalized to LF."""
    try:
        for line, content, _ in files.iter_lines(lines, first_line=first_line):
            if update is not None:
                update(content + b"\n")
            if files.is_blank(content):
                yield line, None, None
                continue
            record, problem = files.parse_record(content)
            yield line, record, None if problem is None else f"{path}:{line}: {problem}"
    except OSError as e:
        raise files.read_error(path, e) from None


class JsonlFormat(RecordFormat):
    """JSON Lines: a unit is a line (blank and bad lines included)."""

    name = "jsonl"
    extensions = (".jsonl", ".ndjson")
    unit = "line"
    description = "(JSON Lines)"

    def location(self, path: Path, number: int) -> str:
        return f"{path}:{number}"

    def find_span(self, path: Path, shard_index: int, num_shards: int) -> InputSpan:
        return line_span(path, self.name, shard_index, num_shards)

    def span_entries(self, span: InputSpan, update: Update) -> Iterator[Entry]:
        with files.open_for_reading(span.path) as f:
            try:
                f.seek(span.byte_start)
            except OSError as e:
                raise files.read_error(span.path, e) from None
            lines = itertools.islice(f, span.stop - span.start)
            yield from jsonl_entries(span.path, lines, first_line=span.start + 1, update=update)

    def entries(self, path: Path) -> Iterator[Entry]:
        with files.open_for_reading(path) as f:
            yield from jsonl_entries(path, f, first_line=1, update=None)

    def open_writer(
        self, path: Path, *, resume: bool, like: Path | None = None, columns: Columns = None
    ) -> RecordWriter:
        return JsonlWriter(path, resume=resume)

    def read_output(self, path: Path, what: str) -> Iterator[Located]:
        return ((f"{path}:{line}", r) for line, r in files.iter_output_records(path))

    def write_file(
        self, path: Path, records: Iterable[dict], *, like: Path | None = None, columns: Columns = None
    ) -> None:
        files.atomic_write(path, jsonl_chunks(records))
