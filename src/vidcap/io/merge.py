"""Joining the outputs of a sharded run into one output, in input order.

Each shard output ``out.K.jsonl`` has a sidecar written by the runner when the shard stops,
``out.K.jsonl.summary.json`` (see :func:`summary_path`). The merge reads these fields and
ignores any others::

    {
      "shard": {"index": 2, "count": 8},   # this shard's index (0-based) and the shard count
      "input": "/abs/path/data.jsonl",     # the input file, as an absolute path
      "records_in_shard": 125,             # how many records the shard's range holds
      "complete": true                     # false when the shard run was interrupted
    }

The merge refuses (VidcapError) unless shards ``0..count-1`` are all present exactly once,
agree on ``count`` and ``input``, are complete, and hold ``records_in_shard`` records each.
The merged file is written atomically, so a refused or killed merge leaves no output.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidcap.errors import VidcapError
from vidcap.io import _files, jsonio
from vidcap.io.resume import load_done
from vidcap.io.sidecar import summary_path


@dataclass(frozen=True)
class ShardSummary:
    """The fields of a shard's summary sidecar that the merge relies on."""

    output: Path  # the shard output the summary describes
    index: int
    count: int
    input: str
    records_in_shard: int
    complete: bool


@dataclass(frozen=True)
class MergeReport:
    """What :func:`merge_outputs` wrote: ``records_per_shard[i]`` records came from shard ``i``."""

    output: Path
    input: str
    shards: int
    records: int
    records_per_shard: tuple[int, ...]


def _field(data: dict, path: Path, key: str, kind: type) -> Any:
    value: Any = data
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    # bool is an int subclass; a true/false where a number belongs is still wrong.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise VidcapError(f"{path}: field {key!r} is missing or not {kind.__name__}")
    return value


def read_shard_summary(shard_output: Path) -> ShardSummary:
    """Read and check the summary sidecar of ``shard_output``; VidcapError if absent or malformed."""
    shard_output = Path(shard_output)
    path = summary_path(shard_output)
    if not path.exists():
        raise VidcapError(f"{shard_output}: no summary file {path.name}; has this shard been run?")
    with _files.open_for_reading(path) as f:
        try:
            data = jsonio.loads(f.read())
        except (ValueError, OSError) as e:
            raise VidcapError(f"{path}: unreadable shard summary: {e}") from None
    if not isinstance(data, dict):
        raise VidcapError(f"{path}: shard summary must be a JSON object")
    return ShardSummary(
        output=shard_output,
        index=_field(data, path, "shard.index", int),
        count=_field(data, path, "shard.count", int),
        input=_field(data, path, "input", str),
        records_in_shard=_field(data, path, "records_in_shard", int),
        complete=_field(data, path, "complete", bool),
    )


def _check_shard_set(summaries: list[ShardSummary]) -> list[ShardSummary]:
    """Check that the summaries describe one complete sharded run; return them in shard order."""
    first = summaries[0]
    for s in summaries[1:]:
        if s.count != first.count:
            raise VidcapError(
                f"shard outputs disagree on the shard count: {first.output} says {first.count}, "
                f"{s.output} says {s.count}"
            )
        if s.input != first.input:
            raise VidcapError(
                f"shard outputs come from different inputs: {first.output} from {first.input}, "
                f"{s.output} from {s.input}"
            )
    n = first.count
    by_index: dict[int, ShardSummary] = {}
    for s in summaries:
        if not 0 <= s.index < n:
            raise VidcapError(f"{s.output}: shard index {s.index} is out of range for {n} shards")
        if s.index in by_index:
            other = by_index[s.index].output
            raise VidcapError(f"shard {s.index} of {n} given twice: {other} and {s.output}")
        by_index[s.index] = s
    missing = [i for i in range(n) if i not in by_index]
    if missing:
        label = "shard" if len(missing) == 1 else "shards"
        raise VidcapError(f"{label} {', '.join(map(str, missing))} of {n} missing")
    ordered = [by_index[i] for i in range(n)]
    incomplete = [
        f"shard {s.index} incomplete: {load_done(s.output, id_key=None).count} of {s.records_in_shard} "
        f"records; rerun it ({s.output})"
        for s in ordered
        if not s.complete
    ]
    if incomplete:
        raise VidcapError("; ".join(incomplete))
    return ordered


def _shard_records(s: ShardSummary, counts: list[int]) -> Iterator[dict]:
    """Stream one shard's records, checking their number against its summary at the end."""
    if not s.output.exists():
        raise VidcapError(f"shard {s.index} output {s.output} is missing (its summary exists)")
    if _files.detect_format(s.output, "shard output") == "jsonl":
        records: Iterator[dict] = (r for _, r in _files.iter_output_records(s.output))
    else:
        items, _ = _files.load_json_array(s.output, "shard output")
        records = iter(items)
    n = 0
    for record in records:
        if not isinstance(record, dict):
            raise VidcapError(f"{s.output}: element {n + 1} is {_files.describe_kind(record)}, not a record")
        n += 1
        yield record
    if n != s.records_in_shard:
        raise VidcapError(
            f"shard {s.index} output {s.output} has {n} records but its summary says "
            f"{s.records_in_shard}; rerun it"
        )
    counts.append(n)


def merge_outputs(shard_outputs: list[Path], output: Path) -> MergeReport:
    """Concatenate complete shard outputs in shard order into ``output`` (format by extension).

    Shard outputs may be given in any order and in either format. Streams JSON Lines
    shards record by record; writes ``output`` atomically (temp file + rename).
    """
    if not shard_outputs:
        raise VidcapError("merge: no shard outputs given")
    output = Path(output)
    fmt = _files.detect_format(output, "output")
    paths = [Path(p) for p in shard_outputs]
    for p in paths:
        _files.detect_format(p, "shard output")
        if p.resolve() == output.resolve():
            raise VidcapError(f"merge output {output} is also one of the shard outputs; choose another name")
    ordered = _check_shard_set([read_shard_summary(p) for p in paths])
    counts: list[int] = []

    def records() -> Iterator[dict]:
        for s in ordered:
            yield from _shard_records(s, counts)

    if fmt == "jsonl":
        chunks: Iterator[bytes] = (jsonio.dumps(r) + b"\n" for r in records())
    else:
        chunks = _files.json_array_chunks(records())
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        _files.atomic_write(output, chunks)
    except OSError as e:
        raise VidcapError(f"cannot write output: {output}: {e.strerror or e}") from None
    return MergeReport(output, ordered[0].input, len(ordered), sum(counts), tuple(counts))
