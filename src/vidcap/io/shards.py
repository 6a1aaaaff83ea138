"""Splitting an input file between shards (e.g. the tasks of a SLURM job array).

A shard is a contiguous range of the input's lines (elements of a JSON array), so each
shard's output is in input order and the merged output is just the shard outputs
concatenated in shard order. Splitting lines rather than records lets a shard find its
share with a newline scan and read only that (:func:`find_span`), instead of parsing the
whole input to count records.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from vidcap.errors import VidcapError
from vidcap.io.files import open_for_reading, read_error


def check_shard(shard_index: int, num_shards: int) -> None:
    """Raise VidcapError unless ``num_shards >= 1`` and ``0 <= shard_index < num_shards``."""
    if num_shards < 1:
        raise VidcapError(f"shard count must be at least 1, got {num_shards}")
    if not 0 <= shard_index < num_shards:
        raise VidcapError(
            f"shard index {shard_index} is out of range for {num_shards} shards (0..{num_shards - 1})"
        )


def shard_range(total: int, shard_index: int, num_shards: int) -> range:
    """The record indexes of one shard: contiguous, deterministic, disjoint, covering ``[0, total)``.

    Sizes differ by at most one: the first ``total % num_shards`` shards get one extra
    record. Shards beyond the records (more shards than records) get an empty range.
    """
    check_shard(shard_index, num_shards)
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    base, extra = divmod(total, num_shards)
    start = shard_index * base + min(shard_index, extra)
    return range(start, start + base + (1 if shard_index < extra else 0))


SHARD_NAME = "captions.shard-{index}-of-{count}"
"""The default output of shard ``index`` of ``count``: ``INPUT_STEM.captions.shard-I-of-N.EXT``."""


def default_output(input_path: Path, shard: tuple[int, int] | None = None) -> Path:
    """Where a run writes without ``--output``: beside the input, in the input's format.

    ``data.jsonl`` -> ``data.captions.jsonl``; with a shard ``(I, N)``,
    ``data.captions.shard-I-of-N.jsonl``, so that the tasks of an array never share a file.
    """
    if shard is None:
        return input_path.with_name(f"{input_path.stem}.captions{input_path.suffix}")
    name = SHARD_NAME.format(index=shard[0], count=shard[1])
    return input_path.with_name(f"{input_path.stem}.{name}{input_path.suffix}")


def default_shard_outputs(input_path: Path) -> list[Path]:
    """The shard outputs that runs without ``--output`` wrote beside ``input_path``, any shard count."""
    pattern = re.compile(
        re.escape(input_path.stem) + r"\.captions\.shard-\d+-of-\d+" + re.escape(input_path.suffix) + "$"
    )
    stem, suffix = glob.escape(input_path.stem), glob.escape(input_path.suffix)
    found = input_path.parent.glob(f"{stem}.captions.shard-*-of-*{suffix}")
    return sorted(p for p in found if pattern.match(p.name))


@dataclass(frozen=True)
class InputSpan:
    """The part of an input file that one shard reads: units ``[start, stop)`` of ``units``.

    A unit is what the format counts (``unit``): a line of a JSON Lines file (blank and bad
    lines included), an element of a JSON array, a row of a Parquet or CSV table, so the
    split needs no parsing: a JSONL shard finds its lines with a newline scan and then reads
    and checks only ``[byte_start, byte_stop)``; a Parquet shard reads only the row groups
    that hold its rows. Formats read whole have no byte range (both 0). ``size``: the file's
    size in bytes; ``format``: the format's name (``jsonl``, ``json``, ``parquet``, ``csv``).
    """

    path: Path
    format: str
    size: int
    units: int
    start: int
    stop: int
    byte_start: int = 0
    byte_stop: int = 0
    unit: str = "line"


_CHUNK = 1 << 24  # 16 MiB: large enough that bytes.count runs at memory speed


def _chunk_newlines(fd: int, size: int) -> list[int]:
    """The number of newlines in each _CHUNK-sized block of the file."""
    counts = []
    for offset in range(0, size, _CHUNK):
        counts.append(os.pread(fd, _CHUNK, offset).count(b"\n"))
    return counts


def _line_offset(fd: int, size: int, counts: list[int], line: int) -> int:
    """Byte offset where 0-based ``line`` starts: just after the file's ``line``-th newline."""
    if line == 0:
        return 0
    seen = 0
    for block, n in enumerate(counts):
        if seen + n >= line:
            data = os.pread(fd, _CHUNK, block * _CHUNK)
            pos = -1
            for _ in range(line - seen):
                pos = data.index(b"\n", pos + 1)
            return block * _CHUNK + pos + 1
        seen += n
    return size  # the last line has no newline: it ends at the end of the file


def line_span(path: Path, format_name: str, shard_index: int, num_shards: int) -> InputSpan:
    """Shard ``shard_index`` of ``num_shards`` of a line-based input, found without parsing it.

    One pass counting newlines (at disk/memory speed, no JSON parsing), then two block reads
    to turn the shard's first and last line into byte offsets. The lines are split with
    :func:`shard_range`, so the spans of all shards tile the file's lines. (Each format's
    ``find_span`` is reached through ``vidcap.io.formats.find_span``.)
    """
    check_shard(shard_index, num_shards)
    with open_for_reading(path) as f:
        try:
            fd = f.fileno()
            size = os.fstat(fd).st_size
            counts = _chunk_newlines(fd, size)
            newlines = sum(counts)
            last = os.pread(fd, 1, size - 1) if size else b"\n"
            units = newlines + (last != b"\n")  # a last line without a newline is a line too
            r = shard_range(units, shard_index, num_shards)
            byte_start = _line_offset(fd, size, counts, r.start)
            byte_stop = _line_offset(fd, size, counts, r.stop)
        except OSError as e:
            raise read_error(path, e) from None
    return InputSpan(path, format_name, size, units, r.start, r.stop, byte_start, byte_stop)
