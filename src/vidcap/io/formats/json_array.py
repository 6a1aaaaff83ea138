"""JSON array (``.json``): the file is one pretty-printed array of records.

It is read whole (a span is a range of its elements) and, since a half-written array is
useless, written through a JSON Lines journal (``out.json.partial.jsonl``) that ``close``
turns into the array at once (temp file + ``os.replace``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from vidcap.errors import VidcapError
from vidcap.io import files, jsonio
from vidcap.io.formats.interface import Columns, Entry, Located, Update
from vidcap.io.formats.journal import JournaledFormat
from vidcap.io.shards import InputSpan, shard_range


class ElementLocation:
    """``file:line: element N`` for an element of a JSON array, computed when formatted."""

    def __init__(self, path: Path, text: str, number: int) -> None:
        self.path, self.text, self.number = path, text, number

    def __str__(self) -> str:
        # Finding an element's line is slow, so it is done only if a message is formatted.
        line = jsonio.element_lines(self.text)[self.number - 1]
        return f"{self.path}:{line}: element {self.number}"


class JsonArrayFormat(JournaledFormat):
    """A JSON array of records: a unit is an element."""

    name = "json"
    extensions = (".json",)
    unit = "element"
    description = "(a JSON array)"

    def find_span(self, path: Path, shard_index: int, num_shards: int) -> InputSpan:
        items, _ = files.load_json_array(path, "input")
        r = shard_range(len(items), shard_index, num_shards)
        return InputSpan(path, self.name, path.stat().st_size, len(items), r.start, r.stop, unit=self.unit)

    def entries(self, path: Path) -> Iterator[Entry]:
        items, text = files.load_json_array(path, "input")
        lines: list[int] | None = None  # computed only when a bad element needs its line
        for number, item in enumerate(items, start=1):
            if isinstance(item, dict):
                yield number, item, None
                continue
            if lines is None:
                lines = jsonio.element_lines(text)
            where = f"{path}:{lines[number - 1]}: element {number}"
            yield number, None, f"{where}: record is {files.describe_kind(item)}, expected an object"

    def span_entries(self, span: InputSpan, update: Update) -> Iterator[Entry]:
        for index, (number, record, problem) in enumerate(self.entries(span.path)):
            if index < span.start:
                continue
            if index >= span.stop:
                return
            if update is not None:
                update(jsonio.dumps(record) + b"\n" if record is not None else b"!\n")
            yield number, record, problem

    def read_output(self, path: Path, what: str) -> Iterator[Located]:
        items, text = files.load_json_array(path, what)
        for number, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                kind = files.describe_kind(item)
                raise VidcapError(f"{path}: existing {what}'s element {number} is {kind}, not an object")
            yield ElementLocation(path, text, number), item

    def write_file(
        self, path: Path, records: Iterable[dict], *, like: Path | None = None, columns: Columns = None
    ) -> None:
        files.atomic_write(path, files.json_array_chunks(records))
