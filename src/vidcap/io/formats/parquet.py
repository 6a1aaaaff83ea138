"""Parquet (``.parquet``): typed columns in, typed columns out, crash-safe by part files.

Reading: a unit is a row; a shard's span is a row range, and only the row groups that hold
it are read. Each row becomes a dict, columns in file order, nested values as dicts/lists.

Writing: a Parquet file is only readable once its footer is written, so a file being
appended to is lost to a SIGKILL. Instead, each flushed batch is a complete Parquet file
(one row group), ``out.parquet.parts/part-000007.parquet``, written to a temp name, fsynced
and renamed into place: every part there is whole. ``close`` joins the parts, in order,
into ``out.parquet`` (temp file + ``os.replace``) and deletes the folder. A parts folder
that exists is newer than the output (like a JSON array's journal), so a rerun after a
kill resumes from exactly the rows in its parts. ``--overwrite`` writes its parts in an
aside folder that takes the parts folder's place after the first batch.

Types: the input's columns keep the input's types (``like``: a Parquet input's schema);
vidcap's own fields (caption, status, error, info, ...) are typed from their values: str,
int64, float64, bool, lists and structs. A value Parquet cannot hold exactly (a column of
ints and strings, or of ints and floats, an int beyond 64 bits, an empty object) is a
one-line error naming the record, found before any work (:meth:`record_checker`). A field
missing from a record, or from a nested object, reads back as null: a column is in every row.

pyarrow is imported inside the functions that need it, so other formats never load it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidcap.errors import VidcapError
from vidcap.io import files
from vidcap.io.formats.interface import (
    Columns,
    Entry,
    Located,
    RecordFormat,
    RecordWriter,
    Update,
    cannot_write,
)
from vidcap.io.shards import InputSpan, shard_range

if TYPE_CHECKING:
    import pyarrow as pa

_INT64 = (-(2**63), 2**63 - 1)
_FILE_BATCH = 10_000  # records per row group when a whole file is written (merge, storage)

# A value's type as Parquet would store it: None (null: fits anything), a scalar's name,
# ("list", item) or ("struct", {field: type}).
Sketch = Any


class ParquetTypeError(Exception):
    """A value Parquet cannot hold exactly; ``str()`` says which field and why."""


def parts_dir(output: Path) -> Path:
    """The folder of a Parquet output's durable batches: ``out.parquet`` -> ``out.parquet.parts``."""
    return output.with_name(output.name + ".parts")


def _part_files(folder: Path) -> list[Path]:
    """The finished parts in ``folder``, in write order (temp files of a killed write are not parts)."""
    return sorted(folder.glob("part-*.parquet"), key=lambda p: int(p.stem.split("-")[1]))


def _describe(sketch: Sketch) -> str:
    if sketch is None:
        return "null"
    if isinstance(sketch, str):
        return {"str": "a string", "int": "an integer", "float": "a float", "bool": "a boolean"}.get(
            sketch, f"a {sketch}"
        )
    return "a list" if sketch[0] == "list" else "an object"


def _sketch(value: Any, field: str) -> Sketch:
    """The Parquet type of ``value`` (recursively); ParquetTypeError for what Parquet cannot hold exactly."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ParquetTypeError(
                f"field {field!r} holds the integer {value}, beyond Parquet's 64-bit integers"
            )
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | tuple):
        item: Sketch = None
        for element in value:
            item = _unify(item, _sketch(element, f"{field}[]"), f"{field}[]", "in the same list")
        return ("list", item)
    if isinstance(value, dict):
        if not value:
            raise ParquetTypeError(f"field {field!r} holds an empty object, which Parquet cannot store")
        return ("struct", {str(k): _sketch(v, f"{field}.{k}") for k, v in value.items()})
    return type(value).__name__  # bytes, datetime, Decimal, ... (from a Parquet input): kept as they are


def _unify(old: Sketch, new: Sketch, field: str, where: str = "in an earlier record") -> Sketch:
    """The one type that holds values of both sketches exactly; ParquetTypeError if there is none."""
    if old is None:
        return new
    if new is None or old == new:
        return old
    if isinstance(old, tuple) and isinstance(new, tuple) and old[0] == new[0]:
        if old[0] == "list":
            return ("list", _unify(old[1], new[1], f"{field}[]", where))
        merged = dict(old[1])
        for key, sketch in new[1].items():
            merged[key] = _unify(merged.get(key), sketch, f"{field}.{key}", where)
        return ("struct", merged)
    raise ParquetTypeError(
        f"field {field!r} holds {_describe(new)} here but {_describe(old)} {where}; a Parquet column "
        "holds one type (make the values alike, or write .jsonl)"
    )


class SchemaCheck:
    """Follows the columns' types record by record; ``check(record)`` says what Parquet cannot hold."""

    def __init__(self) -> None:
        self.columns: dict[str, Sketch] = {}

    def check(self, record: dict) -> str | None:
        """What in ``record`` Parquet cannot hold given the records before it, or None."""
        try:
            updated = {k: _unify(self.columns.get(k), _sketch(v, k), k) for k, v in record.items()}
        except ParquetTypeError as e:
            return f"cannot be written as Parquet: {e}"
        self.columns.update(updated)
        return None


def _like_schema(like: Path | None) -> pa.Schema | None:
    """The schema of a Parquet input, whose column types the output keeps (None otherwise)."""
    if like is None or like.suffix.lower() != ".parquet" or not like.is_file():
        return None
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(like)
    except Exception:  # an unreadable input was refused long before; no hint then
        return None


def _arrow_type(sketch: Sketch) -> pa.DataType:
    """The Arrow type of a sketch made of vidcap's own fields' types (``vidcap.io.columns``)."""
    import pyarrow as pa

    if sketch is None:
        return pa.null()
    if isinstance(sketch, tuple):
        if sketch[0] == "list":
            return pa.list_(_arrow_type(sketch[1]))
        return pa.struct([(name, _arrow_type(item)) for name, item in sketch[1].items()])
    return {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}[sketch]


def _declared(declared: Sketch, observed: Sketch, field: str) -> Sketch:
    """A declared type widened by what the values hold: fields the declaration does not name
    (a structured caption's), and nothing else (a declared float holds integers as floats)."""
    if declared == "float" and observed == "int":
        return declared
    if isinstance(declared, tuple) and isinstance(observed, tuple) and declared[0] == observed[0]:
        if declared[0] == "list":
            return ("list", _declared(declared[1], observed[1], f"{field}[]"))
        merged = dict(declared[1])
        for key, sketch in observed[1].items():
            merged[key] = _declared(merged.get(key), sketch, f"{field}.{key}")
        return ("struct", merged)
    return _unify(declared, observed, field)


def records_table(
    records: list[dict], like: pa.Schema | None, where: str, columns: Columns | None = None
) -> pa.Table:
    """``records`` as an Arrow table, input columns typed as in ``like``.

    ``columns``: vidcap's own fields and their types (``vidcap.io.columns.output_columns``):
    each is a column of that type, after the input's columns and in that order, whether or
    not a record has it, so that every output of a run has one schema. Other columns come
    in first-seen order, typed from their values. ``where`` names the output in errors.
    Values Parquet cannot hold exactly raise VidcapError.
    """
    import pyarrow as pa

    own = dict(columns or {})
    names = [k for k in dict.fromkeys(k for r in records for k in r) if k not in own] + list(own)
    arrays = []
    for name in names:
        values = [r.get(name) for r in records]
        try:
            if like is not None and name in like.names:
                arrays.append(pa.array(values, type=like.field(name).type))
                continue
            sketch: Sketch = own.get(name)
            for value in values:
                observed = _sketch(value, name)
                sketch = _declared(sketch, observed, name) if name in own else _unify(sketch, observed, name)
            arrays.append(pa.array(values, type=_arrow_type(sketch)) if name in own else pa.array(values))
        except ParquetTypeError as e:
            raise VidcapError(f"{where}: cannot be written as Parquet: {e}") from None
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as e:
            raise VidcapError(f"{where}: cannot be written as Parquet: field {name!r}: {e}") from None
    return pa.table(arrays, names=names) if names else pa.table({}).slice(0, 0)


def _write_part(table: pa.Table, path: Path) -> None:
    """Write ``table`` as the complete Parquet file ``path``: temp name, fsync, rename, fsync folder."""
    import pyarrow.parquet as pq

    tmp = files.temp_path(path)
    try:
        pq.write_table(table, tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    files.fsync_dir(path.parent)


def _join_parts(parts: list[Path], output: Path, columns: Columns = None) -> None:
    """Write the rows of ``parts``, in order, as ``output`` (atomically), one row group per part.

    The parts' schemas are unified (a column null in one batch and a string in the next is
    a string column; an object's fields are the union of its fields), one part in memory at a time.
    ``columns`` (vidcap's own, with their types) are in the output even with no part.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(p) for p in parts]
    if columns:
        schemas.append(pa.schema([(name, _arrow_type(sketch)) for name, sketch in columns.items()]))
    schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    empty = schema.empty_table()
    tmp = files.temp_path(output)
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for part in parts:
                table = pa.concat_tables([empty, pq.read_table(part)], promote_options="permissive")
                writer.write_table(table.select(schema.names))
            if not parts:
                writer.write_table(empty)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    files.fsync_dir(output.parent)


class ParquetWriter(RecordWriter):
    """Writes each batch as a durable part file; ``close`` joins the parts into the output."""

    def __init__(self, path: Path, *, resume: bool, like: Path | None, columns: Columns = None) -> None:
        self.path = path
        self._columns = columns
        self.parts = parts_dir(path)
        self._like = _like_schema(like)
        self._closed = False
        try:
            if resume:
                if not self.parts.is_dir():
                    self._seed()
                for stale in self.parts.glob(".part-*.tmp-*"):  # a part a kill left half-written
                    stale.unlink()
                self._dir = self.parts
                self._touched = True
            else:
                self._dir = files.temp_path(self.parts)
                self._dir.mkdir()
                self._touched = False
        except OSError as e:
            raise cannot_write(path, e) from None
        existing = _part_files(self._dir)
        self._next = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0

    def _seed(self) -> None:
        """Start the parts folder of a resumed run: the existing output (if any) is its first part."""
        aside = files.temp_path(self.parts)
        aside.mkdir()
        if self.path.exists():
            first = aside / "part-000000.parquet"
            try:
                os.link(self.path, first)  # the output is replaced, never changed in place
            except OSError:
                shutil.copyfile(self.path, first)
        files.fsync_dir(aside)
        os.replace(aside, self.parts)
        files.fsync_dir(self.path.parent)

    @property
    def touched_output(self) -> bool:
        return self._touched

    def write_batch(self, records: list[dict]) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        if not records:
            return
        table = records_table(records, self._like, str(self.path), self._columns)
        try:
            _write_part(table, self._dir / f"part-{self._next:06d}.parquet")
        except OSError as e:
            raise cannot_write(self.path, e) from None
        self._next += 1
        self._publish()

    def _publish(self) -> None:
        """Put an aside parts folder in place of the parts folder (from now on it is what resumes)."""
        if self._touched:
            return
        if self.parts.exists():
            # An earlier interrupted run's parts; --overwrite drops them. A kill right here
            # leaves the old output alone, as if this run had not started.
            shutil.rmtree(self.parts)
        os.replace(self._dir, self.parts)
        files.fsync_dir(self.path.parent)
        self._dir = self.parts
        self._touched = True

    def close(self, *, complete: bool) -> None:
        if self._closed:
            return
        self._closed = True
        if complete:
            self._publish()  # a complete run with no records leaves an empty output
        if not self._touched:
            shutil.rmtree(self._dir, ignore_errors=True)
            return  # a fresh run that wrote nothing: the old output and parts stay as they were
        try:
            _join_parts(_part_files(self.parts), self.path, self._columns)
        except OSError as e:
            raise cannot_write(self.path, e) from None
        # Only now is the output in place; a kill before this line leaves the parts, which
        # the next run picks up.
        shutil.rmtree(self.parts, ignore_errors=True)
        files.fsync_dir(self.path.parent)


def _open_table(path: Path, what: str) -> Any:
    import pyarrow.parquet as pq

    with files.open_for_reading(path):
        pass  # the usual one-line errors for a missing file, a folder, no permission
    try:
        return pq.ParquetFile(path)
    except Exception as e:
        raise VidcapError(f"{path}: not a readable Parquet {what} file: {e}") from None


class ParquetFormat(RecordFormat):
    """Parquet: a unit is a row."""

    name = "parquet"
    extensions = (".parquet",)
    unit = "row"
    description = "(Parquet)"

    def find_span(self, path: Path, shard_index: int, num_shards: int) -> InputSpan:
        rows = _open_table(path, "input").metadata.num_rows
        r = shard_range(rows, shard_index, num_shards)
        return InputSpan(path, self.name, path.stat().st_size, rows, r.start, r.stop, unit=self.unit)

    def span_entries(self, span: InputSpan, update: Update) -> Iterator[Entry]:
        table = _open_table(span.path, "input")
        first = 0  # the first row of the current row group
        for group in range(table.metadata.num_row_groups):
            rows = table.metadata.row_group(group).num_rows
            if first + rows > span.start and first < span.stop:
                lo, hi = max(span.start - first, 0), min(span.stop - first, rows)
                try:
                    batch = table.read_row_group(group).slice(lo, hi - lo).to_pylist()
                except Exception as e:
                    raise VidcapError(f"{span.path}: cannot read row group {group}: {e}") from None
                for number, record in enumerate(batch, start=first + lo + 1):
                    if update is not None:
                        update(repr(record).encode("utf-8", "surrogatepass") + b"\n")
                    yield number, record, None
            first += rows
            if first >= span.stop:
                return

    def open_writer(
        self, path: Path, *, resume: bool, like: Path | None = None, columns: Columns = None
    ) -> RecordWriter:
        return ParquetWriter(path, resume=resume, like=like, columns=columns)

    def side_files(self, output: Path) -> list[Path]:
        return [parts_dir(output)]

    def done_source(self, output: Path) -> Path | None:
        if parts_dir(output).is_dir():
            return parts_dir(output)  # newer than the output: the writer joins them into it
        return output if output.exists() else None

    def done_records(self, output: Path) -> Iterator[Located]:
        source = self.done_source(output)
        if source is None:
            return iter(())
        if source == output:
            return self.read_output(output, "output")
        return (located for part in _part_files(source) for located in self.read_output(part, "output"))

    def read_output(self, path: Path, what: str) -> Iterator[Located]:
        table = _open_table(path, what)
        number = 0
        for batch in table.iter_batches():
            for record in batch.to_pylist():
                number += 1
                yield f"{path}: row {number}", record

    def write_file(
        self, path: Path, records: Iterable[dict], *, like: Path | None = None, columns: Columns = None
    ) -> None:
        schema = _like_schema(like)
        folder = files.temp_path(path)
        folder.mkdir()
        try:
            chunk: list[dict] = []
            number = 0
            for record in records:
                chunk.append(record)
                if len(chunk) >= _FILE_BATCH:
                    part = folder / f"part-{number:06d}.parquet"
                    _write_part(records_table(chunk, schema, str(path), columns), part)
                    chunk, number = [], number + 1
            if chunk:
                table = records_table(chunk, schema, str(path), columns)
                _write_part(table, folder / f"part-{number:06d}.parquet")
            _join_parts(_part_files(folder), path, columns)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def record_checker(self) -> Callable[[dict], str | None] | None:
        return SchemaCheck().check
