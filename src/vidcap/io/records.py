"""Reading input records, whatever the format (``vidcap.io.formats``, chosen by extension).

A run reads only its shard's span of the file (:class:`SpanReader`, over the span that
:func:`vidcap.io.formats.find_span` found): once to check every line of it before any work,
so that a malformed line 90,000 lines down stops the run before the first video is decoded,
then again to stream its records. :func:`scan_input` and :func:`iter_records` read the whole
file (other commands, tests). All of them see the file through the same parser, so they
agree on which lines are records.

Blank (whitespace-only) lines are ignored. A unit (line, element) that is not valid UTF-8,
not valid JSON, or not a JSON object is a *bad line*: with ``on_bad_line="error"`` it stops the run with a
``file:line: what is wrong`` message; with ``"skip"`` it is left out, reported by the scan,
and does not take an index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vidcap.errors import VidcapError
from vidcap.io.formats import find_span, format_for
from vidcap.io.shards import InputSpan

__all__ = ["BadLine", "InputRecord", "InputScan", "SpanReader", "find_span", "iter_records", "scan_input"]

OnBadLine = Literal["error", "skip"]

MAX_REPORTED_BAD_LINES = 1000
"""At most this many bad lines are kept in :attr:`InputScan.bad_lines` (all are counted)."""


@dataclass(frozen=True)
class InputRecord:
    """One valid input record.

    ``index`` is its 0-based position among the valid records (bad and blank lines take no
    index); ``line`` is its 1-based line in a JSONL file, or its 1-based element number in a
    JSON array (each format's ``location`` words it in messages); ``data`` is the parsed
    object, keys in file order.
    """

    index: int
    line: int
    data: dict


@dataclass(frozen=True)
class BadLine:
    """A line that is not a record; ``message`` is the full ``file:line: what is wrong`` text."""

    line: int
    message: str


@dataclass(frozen=True)
class InputScan:
    """What :func:`scan_input` found: counts, and the bad lines (with ``on_bad_line="skip"``)."""

    path: Path
    format: str
    records: int  # valid records: the indexes 0..records-1
    blank_lines: int
    bad_count: int  # every bad line, even beyond MAX_REPORTED_BAD_LINES
    bad_lines: tuple[BadLine, ...]  # the first MAX_REPORTED_BAD_LINES of them, in file order


class SpanReader:
    """Reads the records of one shard's :class:`InputSpan` and nothing else of the file.

    Iterating yields the span's valid records; each :class:`InputRecord`'s ``index`` counts
    the valid records *of the span* from 0 and ``line`` is the line (element) number in the
    whole file. A bad line raises VidcapError with ``on_bad_line="error"``; with ``"skip"``
    it is counted in :attr:`bad_count` and the first ones kept in :attr:`bad_lines`. With
    ``digest=True``, :attr:`digest` is afterwards a hash of the span's content (blank and
    bad lines too): what the run's fingerprint records so a resume can tell its input.
    ``start``: the number of valid records to pass over (they are still read and hashed).
    """

    def __init__(
        self, span: InputSpan, *, on_bad_line: OnBadLine = "error", digest: bool = False, start: int = 0
    ) -> None:
        _check_mode(on_bad_line)
        self.span, self.on_bad_line, self.start = span, on_bad_line, start
        self._hash = hashlib.blake2b(digest_size=16) if digest else None
        self.records = 0
        self.bad_count = 0
        self.bad_lines: list[BadLine] = []

    @property
    def digest(self) -> str | None:
        """``blake2b-128:HEX`` of the content read so far (None without ``digest=True``)."""
        return None if self._hash is None else f"blake2b-128:{self._hash.hexdigest()}"

    def __iter__(self) -> Iterator[InputRecord]:
        span = self.span
        update = None if self._hash is None else self._hash.update
        for line, record, problem in format_for(span.path, "input").span_entries(span, update):
            if record is None:
                if problem is None:
                    continue
                if self.on_bad_line == "error":
                    raise VidcapError(problem)
                self.bad_count += 1
                if len(self.bad_lines) < MAX_REPORTED_BAD_LINES:
                    self.bad_lines.append(BadLine(line, problem))
                continue
            index = self.records
            self.records += 1
            if index >= self.start:
                yield InputRecord(index, line, record)


def _check_mode(on_bad_line: str) -> None:
    if on_bad_line not in ("error", "skip"):
        raise ValueError(f"on_bad_line must be 'error' or 'skip', not {on_bad_line!r}")


def scan_input(path: str | Path, *, on_bad_line: OnBadLine = "error") -> InputScan:
    """Validate every line of an input file in one streaming pass and count its records.

    Raises VidcapError for an unsupported extension, a missing, unreadable or directory
    path, the first bad line (``on_bad_line="error"``), or an input without any valid
    record. With ``"skip"``, bad lines are listed in the result rather than raised.
    """
    _check_mode(on_bad_line)
    path = Path(path)
    fmt = format_for(path, "input")
    records = blank = bad_count = 0
    bad: list[BadLine] = []
    for line, record, problem in fmt.entries(path):
        if record is not None:
            records += 1
        elif problem is None:
            blank += 1
        elif on_bad_line == "error":
            raise VidcapError(problem)
        else:
            bad_count += 1
            if len(bad) < MAX_REPORTED_BAD_LINES:
                bad.append(BadLine(line, problem))
    if records == 0:
        if bad_count:
            raise VidcapError(
                f"{path}: no valid records: all {bad_count} non-blank lines are bad (first: {bad[0].message})"
            )
        raise VidcapError(f"{path}: input is empty: no records found")
    return InputScan(path, fmt.name, records, blank, bad_count, tuple(bad))


def iter_records(
    path: str | Path,
    *,
    on_bad_line: OnBadLine = "error",
    start: int = 0,
    stop: int | None = None,
) -> Iterator[InputRecord]:
    """Stream the valid records whose index is in ``[start, stop)`` (``stop=None``: to the end).

    JSONL files are read line by line and reading stops at ``stop``; a ``.json`` array is
    loaded whole. Indexes match :func:`scan_input`'s count for the same ``on_bad_line``.
    A bad line raises VidcapError with ``"error"`` (the scan would have raised first) and
    is passed over with ``"skip"``.
    """
    _check_mode(on_bad_line)
    if start < 0 or (stop is not None and stop < start):
        raise ValueError(f"bad record range [{start}, {stop})")
    if stop == start:
        return
    index = 0
    for line, record, problem in format_for(Path(path), "input").entries(Path(path)):
        if record is None:
            if problem is not None and on_bad_line == "error":
                raise VidcapError(problem)
            continue
        if index >= start:
            yield InputRecord(index, line, record)
        index += 1
        if stop is not None and index >= stop:
            return
