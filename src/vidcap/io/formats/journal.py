"""Formats written whole at close, from a JSON Lines journal of the batches (JSON array, CSV).

``out.json`` is written through ``out.json.partial.jsonl``: each batch is appended to the
journal and fsynced like a JSON Lines output (torn end and all), and ``close`` writes the
output at once (temp file + ``os.replace``), then deletes the journal. A journal that
exists is newer than the output, so resume counts the journal's records.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from vidcap.io import files
from vidcap.io.formats.interface import (
    Columns,
    Located,
    RecordFormat,
    RecordWriter,
    cannot_write,
    jsonl_chunks,
)
from vidcap.io.formats.jsonl import AppendFile


def journal_path(output: Path) -> Path:
    """The journal of an output written at close: ``out.json`` -> ``out.json.partial.jsonl``."""
    return output.with_name(output.name + ".partial.jsonl")


class JournaledWriter(RecordWriter):
    """An output written whole at close from a JSON Lines journal of the batches.

    For formats that cannot grow in place (a JSON array, CSV). ``finish(path, records)``
    writes the output atomically; ``seed(path)`` reads an existing output back, to start a
    resumed run's journal from it when there is none.
    """

    def __init__(
        self,
        path: Path,
        *,
        resume: bool,
        finish: Callable[[Path, Iterable[dict]], None],
        seed: Callable[[Path], Iterator[dict]],
    ) -> None:
        self.path = path
        self.journal = journal_path(path)
        self._finish = finish
        if resume and not self.journal.exists() and path.exists():
            try:
                # Atomic, so a kill while seeding never leaves a journal shorter than the output.
                files.atomic_write(self.journal, jsonl_chunks(seed(path)))
            except OSError as e:
                raise cannot_write(path, e) from None
        self._file: AppendFile | None = AppendFile(
            self.journal, resume=resume, report_as=path, aside=not resume
        )
        self.repaired_bytes = self._file.repaired_bytes
        self._touched = resume

    @property
    def touched_output(self) -> bool:
        return self._touched or (self._file is not None and self._file.in_place)

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
            return  # a fresh run that wrote nothing: the old output and journal stay as they were
        records = (record for _, record in files.iter_output_records(self.journal))
        try:
            self._finish(self.path, records)
        except OSError as e:
            raise cannot_write(self.path, e) from None
        # Only now is the output safely in place; a kill before this line just leaves a
        # journal with the same records, which the next run picks up.
        with contextlib.suppress(FileNotFoundError):
            self.journal.unlink()
        files.fsync_dir(self.path.parent)


class JournaledFormat(RecordFormat):
    """A format written through a :class:`JournaledWriter`: subclasses give ``write_file``
    and ``read_output``; resume reads the journal when there is one."""

    def side_files(self, output: Path) -> list[Path]:
        return [journal_path(output)]

    def done_source(self, output: Path) -> Path | None:
        journal = journal_path(output)
        if journal.exists():
            return journal  # newer than the output: the writer finishes the output from it
        return output if output.exists() else None

    def done_records(self, output: Path) -> Iterator[Located]:
        source = self.done_source(output)
        if source is None:
            return iter(())
        if source != output:
            return ((f"{source}:{line}", r) for line, r in files.iter_output_records(source))
        return self.read_output(source, "output")

    def open_writer(
        self, path: Path, *, resume: bool, like: Path | None = None, columns: Columns = None
    ) -> RecordWriter:
        def seed(p: Path) -> Iterator[dict]:
            return (record for _, record in self.read_output(p, "output"))

        return JournaledWriter(path, resume=resume, finish=self.write_file, seed=seed)
