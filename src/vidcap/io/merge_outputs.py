"""Joining the outputs of a sharded run into one output, in input order, after proving the tiling.

Each shard output ``out.K.jsonl`` has a summary sidecar written by the runner,
``out.K.jsonl.summary.json`` (see :func:`summary_path`). The merge reads these fields and
ignores any others::

    {
      "shard": {"index": 2, "count": 8},   # this shard's index (0-based) and the shard count
      "records_in_shard": 125,             # how many records the shard's span holds
      "complete": true,                    # false when the shard run was interrupted
      "id_key": "id",                      # the run's --id-key, or null
      "fingerprint": {
        "version": 1,
        "input": {"path": "/abs/data.jsonl", "size": 123456, "format": "jsonl", "units": 1000},
        "span": {"start": 250, "stop": 375, ...},   # the input lines (elements) the shard read
        ...
      }
    }

The merge refuses (VidcapError, one line) unless the shards come from one input (same path,
size and line count: any other is named as foreign), their spans tile the input's lines
exactly (every gap and overlap is named), each is complete and holds ``records_in_shard``
records, and, when the runs used ``--id-key``, no id occurs in two shards. A summary
without a fingerprint (written by a vidcap before 0.2) is refused: its shard's span cannot
be known. The merged file is written atomically, so a refused or killed merge leaves no output.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidcap.errors import VidcapError
from vidcap.io import staging
from vidcap.io.columns import output_columns
from vidcap.io.files import make_parent_folder
from vidcap.io.formats import format_for, format_named
from vidcap.io.resume import load_done
from vidcap.io.sidecar import FINGERPRINT_VERSION, read_summary, summary_path


@dataclass(frozen=True)
class InputIdentity:
    """Which input a shard read: its absolute path, size in bytes, format and line (element) count."""

    path: str
    size: int
    format: str
    units: int

    def __str__(self) -> str:
        return f"{self.path} ({self.size} bytes)"


@dataclass(frozen=True)
class ShardSummary:
    """The fields of a shard's summary sidecar that the merge relies on."""

    output: Path  # the shard output the summary describes
    index: int
    count: int
    input: InputIdentity
    start: int  # the shard's span of the input: units [start, stop)
    stop: int
    records_in_shard: int
    complete: bool
    id_key: str | None = None
    options: dict[str, Any] | None = field(default=None, compare=False)  # the fingerprint's options

    @property
    def input_path(self) -> str:
        """The input file the shard read (absolute path)."""
        return self.input.path


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
    data = read_summary(shard_output)
    if data is None:
        raise VidcapError(f"{shard_output}: no summary file {path.name}; has this shard been run?")
    fingerprint = data.get("fingerprint")
    if fingerprint is None:
        version = data.get("vidcap_version", "unknown")
        raise VidcapError(
            f"{path}: written by vidcap {version}, which does not record which input lines the shard "
            "read, so the tiling cannot be checked; rerun the shard with this version (--overwrite)"
        )
    version = _field(data, path, "fingerprint.version", int)
    if version > FINGERPRINT_VERSION:
        raise VidcapError(
            f"{path}: run fingerprint version {version} is newer than this vidcap reads "
            f"({FINGERPRINT_VERSION}); merge with the vidcap that ran the shards"
        )
    id_key = data.get("id_key")
    return ShardSummary(
        output=shard_output,
        index=_field(data, path, "shard.index", int),
        count=_field(data, path, "shard.count", int),
        input=InputIdentity(
            path=_field(data, path, "fingerprint.input.path", str),
            size=_field(data, path, "fingerprint.input.size", int),
            format=_field(data, path, "fingerprint.input.format", str),
            units=_field(data, path, "fingerprint.input.units", int),
        ),
        start=_field(data, path, "fingerprint.span.start", int),
        stop=_field(data, path, "fingerprint.span.stop", int),
        records_in_shard=_field(data, path, "records_in_shard", int),
        complete=_field(data, path, "complete", bool),
        id_key=id_key if isinstance(id_key, str) else None,
        options=fingerprint.get("options") if isinstance(fingerprint.get("options"), dict) else None,
    )


def _check_one_input(summaries: list[ShardSummary], input_path: Path | None) -> InputIdentity:
    """The input all shards read; shards of any other input are named (VidcapError).

    With ``input_path`` (``vidcap merge INPUT``), that file as it is now is the input;
    otherwise the input most shards read. An input whose size changed since is refused.
    """
    if input_path is not None:
        path, size = staging.source_name(input_path), input_path.stat().st_size  # a URL's, if staged
        matching = [s.input for s in summaries if (s.input.path, s.input.size) == (path, size)]
        expected = matching[0] if matching else InputIdentity(path, size, "", -1)
    else:
        expected = Counter(s.input for s in summaries).most_common(1)[0][0]
    foreign = [s for s in summaries if s.input != expected]
    if foreign:
        named = "; ".join(f"{s.output} is a shard of {s.input}" for s in foreign)
        raise VidcapError(f"shard outputs of another input than {expected}: {named}")
    current = Path(expected.path)
    if input_path is None and current.is_file() and current.stat().st_size != expected.size:
        raise VidcapError(
            f"the input {current} is now {current.stat().st_size} bytes but the shards read it at "
            f"{expected.size} bytes: it changed since; rerun the shards (--overwrite)"
        )
    return expected


def _check_tiling(summaries: list[ShardSummary], source: InputIdentity) -> list[ShardSummary]:
    """Check that the shards' spans cover the input's lines once each; return them in input order."""
    unit = format_named(source.format).unit
    ordered = sorted(summaries, key=lambda s: (s.start, s.stop, s.index))
    problems: list[str] = []
    counts = {s.count for s in summaries}
    present = {s.index for s in summaries}

    def gap(start: int, stop: int) -> str:
        where = f"{unit}s {start + 1}-{stop} of {source.path} are"
        if stop - start == 1:
            where = f"{unit} {stop} of {source.path} is"
        hint = ""
        if len(counts) == 1:  # one shard count: the missing shards can be named
            n = next(iter(counts))
            missing = [str(i) for i in range(n) if i not in present]
            if missing:
                hint = f" (shard{'s' if len(missing) > 1 else ''} {', '.join(missing)} of {n} missing)"
        return f"{where} in no shard output{hint}"

    covered_to, last = 0, None
    for s in ordered:
        if not 0 <= s.start <= s.stop <= source.units:
            outside = f"span {s.start}-{s.stop} is outside the input ({source.units} {unit}s)"
            problems.append(f"{s.output}: {outside}")
            continue
        if s.start == s.stop:
            continue  # an empty shard (more shards than lines) holds nothing, overlaps nothing
        if s.start > covered_to:
            problems.append(gap(covered_to, s.start))
        elif s.start < covered_to and last is not None:
            both = f"{unit}s {s.start + 1}-{min(covered_to, s.stop)}"
            problems.append(f"{last.output} and {s.output} overlap: both hold {both}")
        if s.stop > covered_to:
            covered_to, last = s.stop, s
    if covered_to < source.units:
        problems.append(gap(covered_to, source.units))
    if problems:
        raise VidcapError("shards do not tile the input: " + "; ".join(problems))
    incomplete = [
        f"shard {s.index} incomplete: {load_done(s.output, id_key=None).count} of {s.records_in_shard} "
        f"records; rerun it ({s.output})"
        for s in ordered
        if not s.complete
    ]
    if incomplete:
        raise VidcapError("; ".join(incomplete))
    return ordered


def _shard_records(s: ShardSummary, counts: list[int]) -> Iterator[tuple[object, dict]]:
    """Stream one shard's ``(location, record)``, checking their number against its summary at the end."""
    if not s.output.exists():
        raise VidcapError(f"shard {s.index} output {s.output} is missing (its summary exists)")
    records = format_for(s.output, "shard output").read_output(s.output, "shard output")
    n = 0
    for where, record in records:
        n += 1
        yield where, record
    if n != s.records_in_shard:
        raise VidcapError(
            f"shard {s.index} output {s.output} has {n} records but its summary says "
            f"{s.records_in_shard}; rerun it"
        )
    counts.append(n)


def _unique_ids(located: Iterator[tuple[object, dict]], id_key: str | None) -> Iterator[dict]:
    """The records, checking that no ``id_key`` value repeats across all shards (None: no check).

    Each shard checked its own ids before it ran; only the merge sees them all. Keeps one
    entry per record (the id string) in memory.
    """
    if id_key is None:
        for _, record in located:
            yield record
        return
    seen: set[str] = set()
    for where, record in located:
        value = record.get(id_key)
        rid = None if value is None else str(value)
        if rid is not None:
            if rid in seen:
                raise VidcapError(
                    f"{where}: duplicate id {rid!r} across shards (an earlier shard or record has it); "
                    f"--id-key {id_key} values must be unique in the whole input"
                )
            seen.add(rid)
        yield record


def _columns(shard: ShardSummary) -> dict[str, Any] | None:
    """vidcap's own fields and their types, as the shard's run wrote them (None if not recorded)."""
    try:
        return output_columns(shard.options) if shard.options is not None else None
    except KeyError:  # a summary of a vidcap that did not record the output field names
        return None


def merge_outputs(shard_outputs: list[Path], output: Path, *, input_path: Path | None = None) -> MergeReport:
    """Concatenate complete shard outputs in input order into ``output`` (format by extension).

    Shard outputs may be given in any order and in any format; their spans must tile one
    input (see the module doc). ``input_path``: the input they must come from (else the one
    most of them read). Streams JSON Lines shards record by record; writes ``output``
    atomically (temp file + rename).
    """
    if not shard_outputs:
        raise VidcapError("merge: no shard outputs given")
    output = Path(output)
    fmt = format_for(output, "output")
    paths = [Path(p) for p in shard_outputs]
    for p in paths:
        format_for(p, "shard output")
        if p.resolve() == output.resolve():
            raise VidcapError(f"merge output {output} is also one of the shard outputs; choose another name")
    summaries = [read_shard_summary(p) for p in paths]
    source = _check_one_input(summaries, input_path)
    ordered = _check_tiling(summaries, source)
    id_keys = {s.id_key for s in ordered} - {None}
    if len(id_keys) > 1:
        raise VidcapError(f"shards were run with different --id-key values: {', '.join(sorted(id_keys))}")
    counts: list[int] = []

    def located() -> Iterator[tuple[object, dict]]:
        for s in ordered:
            yield from _shard_records(s, counts)

    records = _unique_ids(located(), next(iter(id_keys), None))
    # A typed output keeps the input's column types; the input is only a hint for that.
    like = Path(source.path) if Path(source.path).is_file() else None
    make_parent_folder(output)
    try:
        fmt.write_file(output, records, like=like, columns=_columns(ordered[0]))
    except OSError as e:
        raise VidcapError(f"cannot write output: {output}: {e.strerror or e}") from None
    return MergeReport(output, source.path, len(ordered), sum(counts), tuple(counts))
