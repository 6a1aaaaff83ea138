"""The record-format interface: what every format reads and writes, and the bookkeeping they share.

A format (JSON Lines, JSON array, Parquet, CSV) is one :class:`RecordFormat` subclass that
implements only what differs between formats: how an input is split into shard spans and
read, how an output is written batch by batch and finished, and how a finished output is
read back. Everything that must agree across formats lives here or in the callers that
use the interface (``records``, ``writer``, ``resume``, ``merge``), never in ``if`` branches:

* a shard's :class:`~vidcap.io.shards.InputSpan` of *units* (lines, elements, rows);
* input entries: ``(unit number, record, problem)``, the reader's raw material;
* :class:`RecordWriter`: durable batches, ``close(complete)``, ``touched_output`` and the
  write-aside of ``--overwrite`` (a fresh writer never loses the old output before it has
  written its first batch);
* ``journal.JournaledWriter``: for formats that cannot be appended to in place (a JSON
  array, CSV), batches go to a JSON Lines journal beside the output and ``close`` writes
  the output whole, atomically, from the journal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from vidcap.errors import VidcapError
from vidcap.io import jsonio
from vidcap.io.shards import InputSpan

Entry = tuple[int, dict | None, str | None]
"""One unit of an input: ``(number, record, None)`` for a record, ``(number, None, message)``
for a bad unit (the message is the full ``file:where: what is wrong``), ``(number, None, None)``
for a blank line. Numbers are 1-based."""

Located = tuple[object, dict]
"""A record read back from an output, with its location (``str()`` gives ``file:where``)."""

Columns = Mapping[str, Any] | None
"""vidcap's own fields of an output record and their types (``vidcap.io.columns.output_columns``):
a typed format (Parquet) gives each that type in every output, whether or not a record has it."""

Update = Callable[[bytes], object] | None
"""A hash's ``update``: receives the span's content, for the run's fingerprint."""


def cannot_write(path: Path, e: OSError) -> VidcapError:
    """The one-line error for an output that cannot be written."""
    return VidcapError(f"cannot write output: {path}: {e.strerror or e}")


class RecordWriter:
    """Writes output records in batches; create it with :func:`vidcap.io.writer.open_writer`.

    ``path`` is the output file; ``repaired_bytes`` says how many bytes of a torn end the
    resumed output lost (0 when nothing was torn or ``resume`` was false).
    """

    path: Path
    repaired_bytes: int = 0

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
        Every format leaves a valid file holding every record written so far either way, which
        a later ``resume=True`` run continues. One exception: a fresh writer that wrote no
        record and is closed incomplete leaves the old output (if any) exactly as it was.
        """
        raise NotImplementedError


class RecordFormat:
    """One file format for records; subclasses implement the methods that raise NotImplementedError.

    ``name`` is what summaries record (``fingerprint.input.format``); ``extensions`` pick the
    format (lower case, with the dot); ``unit`` is what a span counts and messages name
    (``line``, ``element``, ``row``).
    """

    name: str = ""
    extensions: tuple[str, ...] = ()
    unit: str = "line"
    description: str = ""  # "(JSON Lines)": shown after the extensions in the list of formats

    # -- input --------------------------------------------------------------------------

    def location(self, path: Path, number: int) -> str:
        """Where unit ``number`` (1-based) of ``path`` is, for messages: ``file: row 3``."""
        return f"{path}: {self.unit} {number}"

    def find_span(self, path: Path, shard_index: int, num_shards: int) -> InputSpan:
        """Shard ``shard_index`` of ``num_shards`` of the input at ``path`` (see ``shards.shard_range``)."""
        raise NotImplementedError

    def span_entries(self, span: InputSpan, update: Update) -> Iterator[Entry]:
        """The entries of exactly the units of ``span``; ``update`` receives their content."""
        raise NotImplementedError

    def entries(self, path: Path) -> Iterator[Entry]:
        """The entries of the whole input file."""
        return self.span_entries(self.find_span(path, 0, 1), None)

    # -- output -------------------------------------------------------------------------

    def open_writer(
        self, path: Path, *, resume: bool, like: Path | None = None, columns: Columns = None
    ) -> RecordWriter:
        """A writer for the output ``path`` (its folder exists). ``like``: the input, whose
        column types a typed format keeps; ``columns``: the types of vidcap's own fields
        (both ignored by untyped formats)."""
        raise NotImplementedError

    def side_files(self, output: Path) -> list[Path]:
        """Files and folders the writer keeps beside ``output`` while it works (journal, parts)."""
        return []

    def done_source(self, output: Path) -> Path | None:
        """The file a resume reads the done records from (None: nothing was written yet)."""
        return output if output.exists() else None

    def done_records(self, output: Path) -> Iterator[Located]:
        """The records a resume counts as done: exactly those the writer keeps when it resumes."""
        source = self.done_source(output)
        if source is None:
            return iter(())
        return self.read_output(source, "output")

    def read_output(self, path: Path, what: str) -> Iterator[Located]:
        """Every record of a finished output file (``what`` names its role in messages)."""
        raise NotImplementedError

    def write_file(
        self, path: Path, records: Iterable[dict], *, like: Path | None = None, columns: Columns = None
    ) -> None:
        """Write ``records`` as the whole file ``path``, atomically (merge, storage); ``like``
        and ``columns`` as for :meth:`open_writer`."""
        raise NotImplementedError

    def record_checker(self) -> Callable[[dict], str | None] | None:
        """A check, record by record in input order, that this format can hold every value
        exactly (None: it can hold whatever a record holds). Returns what is wrong, or None."""
        return None


def jsonl_chunks(records: Iterable[dict]) -> Iterator[bytes]:
    """``records`` as JSON Lines, one record per chunk."""
    return (jsonio.dumps(r) + b"\n" for r in records)
