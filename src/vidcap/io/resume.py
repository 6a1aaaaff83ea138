"""What an earlier run already wrote, and the input check that id-keyed resume relies on.

Two ways to resume:

* by position (default): output is always written in input order, so a rerun skips the
  first :attr:`DoneSet.count` records of its range;
* by id (``--id-key``): a rerun skips records whose ``str(record[id_key])`` is in
  :attr:`DoneSet.ids`. That is only sound if ids are unique in the input, which
  the run checks (``pipeline.check.check_records``, within its shard; ``vidcap merge``
  across shards) before it starts.

A ``null`` id counts as missing: it cannot tell records apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vidcap.errors import VidcapError
from vidcap.io import staging
from vidcap.io.formats import format_for
from vidcap.io.records import OnBadLine, iter_records


@dataclass(frozen=True)
class DoneSet:
    """Records already in an output.

    ``count``: complete records (a torn last line is not counted). ``ids``: their ids as
    strings when an ``id_key`` was given, else empty. ``source``: the file that was read
    (the output, or a ``.json`` output's journal), None when there was nothing to read.
    """

    count: int = 0
    ids: frozenset[str] = field(default_factory=frozenset)
    source: Path | None = None


def _id_of(record: dict, id_key: str) -> str | None:
    value = record.get(id_key)
    return None if value is None else str(value)


def load_done(output_path: str | Path, *, id_key: str | None) -> DoneSet:
    """Read an existing output (or the journal its writer keeps beside it) and say what is done.

    A missing output means nothing is done. A torn last line (left by a kill) is tolerated
    and not counted; damage before the last line, or a done record without ``id_key``
    (when given), raises VidcapError naming the output file and line.
    """
    output = Path(output_path)
    fmt = format_for(output, "output")
    source = fmt.done_source(output)
    records = staging.load_done_records(output)  # an output URL's: from the store
    if records is None:
        records = fmt.done_records(output)
    else:
        source = output
    count = 0
    ids: set[str] = set()
    for where, record in records:
        count += 1
        if id_key is not None:
            rid = _id_of(record, id_key)
            if rid is None:
                raise VidcapError(
                    f"{where}: done record has no {id_key!r} value; cannot resume by --id-key {id_key}"
                )
            ids.add(rid)
    return DoneSet(count, frozenset(ids), source)


def check_unique_ids(path: str | Path, id_key: str, on_bad_line: OnBadLine = "error") -> None:
    """Raise VidcapError if an input record lacks ``id_key`` or repeats another record's id.

    Ids are compared as ``str(value)``, as :func:`load_done` stores them, so ``7`` and
    ``"7"`` are the same id. Reads the whole input once, keeping one entry per record.
    """
    path = Path(path)
    fmt = format_for(path, "input")
    first_seen: dict[str, int] = {}
    for record in iter_records(path, on_bad_line=on_bad_line):
        where = fmt.location(path, record.line)
        rid = _id_of(record.data, id_key)
        if rid is None:
            raise VidcapError(f"{where}: record has no {id_key!r} value; --id-key needs it in every record")
        first = first_seen.setdefault(rid, record.line)
        if first != record.line:
            raise VidcapError(
                f"{where}: duplicate id {rid!r} (first at {fmt.unit} {first}); --id-key values must be unique"
            )
