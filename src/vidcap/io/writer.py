"""Crash-safe output writers: JSON Lines appended batch by batch, or a JSON array finalized atomically.

Runs are killed without warning (pre-empted SLURM nodes), so every batch is written with a
single ``write`` followed by ``fsync``: a SIGKILL loses at most the batch in flight, and
what it leaves behind is at worst a *torn* last line, which a resumed writer cuts off.

* ``.jsonl``/``.ndjson``: records are appended to the output itself.
* ``.json``: a half-written array is useless, so records are appended to a journal,
  ``<output>.partial.jsonl``, and :meth:`RecordWriter.close` writes the whole array at once
  (temp file + ``os.replace``), then deletes the journal.

Starting afresh (``--overwrite``) never loses the old output before the new run has written
its first batch: the new file is written aside and renamed over the old one only then.

Resuming: call :func:`vidcap.io.resume.load_done` first (it reads the same files, raises on
real damage and counts exactly the records the writer keeps), then
``open_writer(path, resume=True)``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from vidcap.errors import VidcapError
from vidcap.io import _files, jsonio


def journal_path(output: Path) -> Path:
    """The journal of a ``.json`` output: ``out.json`` -> ``out.json.partial.jsonl``."""
    return output.with_name(output.name + ".partial.jsonl")


def _cannot_write(path: Path, e: OSError) -> VidcapError:
    return VidcapError(f"cannot write output: {path}: {e.strerror or e}")


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


def _repair_tail(fd: int) -> int:
    """Cut a torn end off a JSONL file open on ``fd``; return how many bytes were removed.

    Drops what ``_files.iter_output_records`` passes over: the bytes after the last newline,
    then the last non-blank line if it is not a JSON object. Never more, so real damage
    further up is left for ``load_done`` to report rather than silently eaten.
    """
    size = os.fstat(fd).st_size
    keep = end = _line_start(fd, size)
    while end > 0:
        start = _line_start(fd, end - 1)
        content = os.pread(fd, end - start, start).rstrip(b"\r\n")
        if start == 0 and content.startswith(_files.BOM):
            content = content[len(_files.BOM) :]
        if _files.is_blank(content):
            end = start
            continue
        if _files.parse_record(content)[1] is not None:
            keep = start
        break
    if keep < size:
        os.ftruncate(fd, keep)
        os.fsync(fd)
    return size - keep


class _AppendFile:
    """A JSONL file opened for appending whole, fsynced batches.

    ``aside=True`` (starting afresh over a file that may hold an earlier run's records):
    batches go to a new temp sibling, which replaces ``path`` right after the first batch is
    durable (or at :meth:`publish`). Until then ``path`` is untouched, so a run that fails
    before it has written anything (a model that does not load) loses nothing.
    """

    def __init__(self, path: Path, *, resume: bool, report_as: Path, aside: bool = False) -> None:
        self.path = path
        self._aside: Path | None = _files.temp_path(path) if aside else None
        target = self._aside or path
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND
        if aside:
            flags |= os.O_EXCL
        elif not resume:
            flags |= os.O_TRUNC
        try:
            self._fd: int | None = os.open(target, flags, 0o666)
        except OSError as e:
            raise _cannot_write(report_as, e) from None
        # Make the file's creation itself durable, not just its content.
        _files.fsync_dir(path.parent)
        self.repaired_bytes = _repair_tail(self._fd) if resume else 0

    @property
    def in_place(self) -> bool:
        """True once ``path`` is the file being written (always, unless written aside)."""
        return self._aside is None

    def append(self, records: list[dict]) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path}: writer is closed")
        if not records:
            return
        # One buffer, one write: a kill leaves complete lines plus at most one torn line.
        data = b"".join([jsonio.dumps(r) + b"\n" for r in records])
        _files.write_all(self._fd, data)
        os.fsync(self._fd)
        self.publish()

    def publish(self) -> None:
        """Put the aside file in place of ``path`` (the descriptor follows the rename)."""
        if self._aside is None or self._fd is None:
            return
        os.replace(self._aside, self.path)
        self._aside = None
        _files.fsync_dir(self.path.parent)

    def close(self) -> None:
        """Close; an aside file that was never published is deleted (``path`` stays as it was)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._aside is not None:
            with contextlib.suppress(OSError):
                self._aside.unlink()


class RecordWriter:
    """Writes output records in batches; create it with :func:`open_writer`.

    ``path`` is the output file; ``repaired_bytes`` says how many bytes of a torn end the
    resumed file lost (0 when nothing was torn or ``resume`` was false).
    """

    path: Path
    repaired_bytes: int

    @property
    def touched_output(self) -> bool:
        """False while a fresh (``resume=False``) writer has not yet replaced the old output."""
        raise NotImplementedError

    def write_batch(self, records: list[dict]) -> None:
        """Append ``records`` durably (returns after fsync); an empty list is a no-op."""
        raise NotImplementedError

    def close(self, *, complete: bool) -> None:
        """Finish the output; calling it again does nothing.

        ``complete`` says whether the run finished its range (false: interrupted or failed).
        Both formats leave a valid file holding every record written so far either way, which
        a later ``resume=True`` run continues. One exception: a fresh writer that wrote no
        record and is closed incomplete leaves the old output (if any) exactly as it was.
        """
        raise NotImplementedError


class _JsonlWriter(RecordWriter):
    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        self._file = _AppendFile(path, resume=resume, report_as=path, aside=not resume)
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


class _JsonArrayWriter(RecordWriter):
    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        self.journal = journal_path(path)
        if resume and not self.journal.exists() and path.exists():
            self._seed_journal()
        self._file: _AppendFile | None = _AppendFile(
            self.journal, resume=resume, report_as=path, aside=not resume
        )
        self.repaired_bytes = self._file.repaired_bytes
        self._touched = resume

    @property
    def touched_output(self) -> bool:
        return self._touched or (self._file is not None and self._file.in_place)

    def _seed_journal(self) -> None:
        """Start the journal from an existing array (a finished or interrupted earlier run)."""
        items, _ = _files.load_json_array(self.path, "output")
        for number, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                kind = _files.describe_kind(item)
                raise VidcapError(f"{self.path}: existing output's element {number} is {kind}, not an object")
        try:
            # Atomic, so a kill while seeding never leaves a journal shorter than the array.
            _files.atomic_write(self.journal, (jsonio.dumps(r) + b"\n" for r in items))
        except OSError as e:
            raise _cannot_write(self.path, e) from None

    def write_batch(self, records: list[dict]) -> None:
        if self._file is None:
            raise ValueError(f"{self.path}: writer is closed")
        self._file.append(records)

    def close(self, *, complete: bool) -> None:
        if self._file is None:
            return
        if complete:
            self._file.publish()
        self._touched = self._touched or self._file.in_place
        self._file.close()
        self._file = None
        if not self._touched:
            return  # a fresh run that wrote nothing: the old array and journal stay as they were
        records = (record for _, record in _files.iter_output_records(self.journal))
        try:
            _files.atomic_write(self.path, _files.json_array_chunks(records))
        except OSError as e:
            raise _cannot_write(self.path, e) from None
        # Only now is the array safely in place; a kill before this line just leaves a
        # journal with the same records, which the next run picks up.
        with contextlib.suppress(FileNotFoundError):
            self.journal.unlink()
        _files.fsync_dir(self.path.parent)


def open_writer(path: str | Path, *, resume: bool) -> RecordWriter:
    """Open an output for writing; the format follows the extension (``.jsonl``/``.ndjson`` or ``.json``).

    ``resume=False`` starts the output afresh, writing aside: the old output stays until the
    first batch is durable (a ``.json`` array is only replaced when the writer is closed).
    ``resume=True`` continues an existing output after cutting off a torn last line; a
    ``.json`` output continues its journal, or one seeded from the array.
    The folder is created if missing; VidcapError if it cannot be created or written.
    """
    path = Path(path)
    fmt = _files.detect_format(path, "output")
    if path.is_dir():
        raise VidcapError(f"cannot write output: {path}: Is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VidcapError(f"cannot write output: {path}: cannot create folder: {e.strerror or e}") from None
    if fmt == "jsonl":
        return _JsonlWriter(path, resume=resume)
    return _JsonArrayWriter(path, resume=resume)
