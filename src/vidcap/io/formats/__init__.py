"""The record formats, chosen by file extension: one module per format, one line each here.

A new format (WebDataset, Lance, ...) is a :class:`~vidcap.io.formats.interface.RecordFormat`
subclass in its own module plus its line in :data:`FORMATS`; reading, shards, writing,
resume and merge then work for it without other edits.
"""

from __future__ import annotations

from pathlib import Path

from vidcap.errors import VidcapError
from vidcap.io.formats.csv_table import CsvFormat
from vidcap.io.formats.interface import RecordFormat
from vidcap.io.formats.json_array import JsonArrayFormat
from vidcap.io.formats.jsonl import JsonlFormat
from vidcap.io.formats.parquet import ParquetFormat
from vidcap.io.shards import InputSpan, check_shard

FORMATS: tuple[RecordFormat, ...] = (JsonlFormat(), JsonArrayFormat(), ParquetFormat(), CsvFormat())
"""Every format, in the order the list of supported extensions names them."""

_BY_EXTENSION = {ext: fmt for fmt in FORMATS for ext in fmt.extensions}
_BY_NAME = {fmt.name: fmt for fmt in FORMATS}


def supported() -> str:
    """The supported extensions, for messages: ``.jsonl, .ndjson (JSON Lines), .json (a JSON array)``."""
    return ", ".join(f"{', '.join(f.extensions)} {f.description}".strip() for f in FORMATS)


def format_for(path: Path, what: str) -> RecordFormat:
    """The format implied by ``path``'s extension; ``what`` ("input", "output") words the error."""
    fmt = _BY_EXTENSION.get(Path(path).suffix.lower())
    if fmt is None:
        found = f"unsupported {what} file extension {Path(path).suffix!r}"
        if not Path(path).suffix:
            found = f"{what} file has no extension"
        raise VidcapError(f"{path}: {found}; use {supported()}")
    return fmt


def format_named(name: str) -> RecordFormat:
    """The format a summary names (``fingerprint.input.format``); VidcapError if unknown."""
    fmt = _BY_NAME.get(name)
    if fmt is None:
        raise VidcapError(f"unknown record format {name!r}; this vidcap reads {', '.join(_BY_NAME)}")
    return fmt


def find_span(path: Path, shard_index: int, num_shards: int) -> InputSpan:
    """Shard ``shard_index`` of ``num_shards`` of the input at ``path``, found without parsing it
    where the format allows (see each format's ``find_span``)."""
    check_shard(shard_index, num_shards)
    return format_for(path, "input").find_span(Path(path), shard_index, num_shards)
