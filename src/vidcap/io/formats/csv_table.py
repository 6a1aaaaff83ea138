"""CSV (``.csv``): a header row, then one record per row; lossy for types, for DataFlow's ``FileStorage``.

DataFlow's ``FileStorage(cache_type="csv")`` reads and writes CSV, so vidcap does too, with
these documented losses: every cell reads back as a string (``7`` -> ``"7"``), an empty
cell reads back as null (so does an empty string), and nested values (the conversation,
info, lists) are written as JSON text and read back as that text. Use ``.jsonl`` or
``.parquet`` where types matter.

A unit is a data row (the header is not counted; a quoted cell may span lines). The file
is read whole; an output is written through a JSON Lines journal and finished at close
(``journal.py``), like a JSON array.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from pathlib import Path

from vidcap.errors import VidcapError
from vidcap.io import files, jsonio
from vidcap.io.formats.interface import Columns, Entry, Located, Update
from vidcap.io.formats.journal import JournaledFormat
from vidcap.io.shards import InputSpan, shard_range


def _rows(path: Path, what: str) -> Iterator[tuple[int, dict | None, str | None]]:
    """``(row number, record, problem)`` for each data row of the CSV file ``path``."""
    with files.open_for_reading(path) as f:
        try:
            raw = f.read()
        except OSError as e:
            raise files.read_error(path, e) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise VidcapError(f"{path}:{line}: invalid UTF-8 (byte 0x{raw[e.start]:02x})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return
        if len(set(header)) != len(header):
            raise VidcapError(f"{path}:1: the {what} CSV header names a column twice")
        for number, row in enumerate(reader, start=1):
            if not any(cell.strip() for cell in row):
                yield number, None, None  # a blank line
                continue
            if len(row) > len(header):
                problem = f"{path}: row {number}: {len(row)} cells but the header names {len(header)} columns"
                yield number, None, problem
                continue
            cells = row + [""] * (len(header) - len(row))
            yield number, {k: (v if v != "" else None) for k, v in zip(header, cells, strict=True)}, None
    except csv.Error as e:
        raise VidcapError(f"{path}:{reader.line_num}: invalid CSV: {e}") from None


def _cell(value: object) -> str:
    """A value as CSV text: strings as they are, null as an empty cell, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return jsonio.dumps(value).decode("utf-8")


class CsvFormat(JournaledFormat):
    """CSV with a header row: a unit is a data row."""

    name = "csv"
    extensions = (".csv",)
    unit = "row"
    description = "(CSV, lossy for types)"

    def find_span(self, path: Path, shard_index: int, num_shards: int) -> InputSpan:
        rows = sum(1 for _ in _rows(path, "input"))
        r = shard_range(rows, shard_index, num_shards)
        return InputSpan(path, self.name, path.stat().st_size, rows, r.start, r.stop, unit=self.unit)

    def span_entries(self, span: InputSpan, update: Update) -> Iterator[Entry]:
        for index, (number, record, problem) in enumerate(_rows(span.path, "input")):
            if index < span.start:
                continue
            if index >= span.stop:
                return
            if update is not None:
                update(jsonio.dumps(record) + b"\n" if record is not None else b"!\n")
            yield number, record, problem

    def entries(self, path: Path) -> Iterator[Entry]:
        return _rows(path, "input")

    def read_output(self, path: Path, what: str) -> Iterator[Located]:
        for number, record, problem in _rows(path, what):
            if problem is not None:
                raise VidcapError(f"{problem} (in existing {what})")
            if record is not None:
                yield f"{path}: row {number}", record

    def write_file(
        self, path: Path, records: Iterable[dict], *, like: Path | None = None, columns: Columns = None
    ) -> None:
        rows = list(records)  # the header is the union of every record's keys
        header = list(dict.fromkeys(k for r in rows for k in r))

        def chunks() -> Iterator[bytes]:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            if header:
                writer.writerow(header)
            for record in rows:
                writer.writerow([_cell(record.get(k)) for k in header])
                yield out.getvalue().encode("utf-8", "surrogatepass")
                out.seek(0)
                out.truncate()
            yield out.getvalue().encode("utf-8")

        files.atomic_write(path, chunks())
