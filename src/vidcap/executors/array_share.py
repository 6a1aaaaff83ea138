"""An array task's share of the input: which slice this process captions (--shard-index and
--num-shards, or a SLURM job array's variables), found without parsing the input."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vidcap.errors import VidcapError
from vidcap.io.formats import find_span
from vidcap.io.shards import InputSpan, check_shard, shard_from_env


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``, reading ``span`` of the input.

    ``explicit``: the shard came from flags or a SLURM job array (a run without either is
    shard 0 of 1 and writes the unsharded default output).
    """

    index: int
    count: int
    span: InputSpan
    explicit: bool = True


def shard_numbers(index: int | None, count: int | None) -> tuple[int, int, bool]:
    """``(index, count, explicit)``: flags first, else the SLURM job array's variables, else the
    whole input (``0, 1, False``). Reads no file."""
    if (index is None) != (count is None):
        raise VidcapError("--shard-index and --num-shards go together; give both")
    if index is not None and count is not None:
        check_shard(index, count)
        return index, count, True
    from_env = shard_from_env(os.environ)
    if from_env is None:
        return 0, 1, False
    return from_env[0], from_env[1], True


def resolve_shard(index: int | None, count: int | None, input_path: Path) -> Shard:
    """The shard (see :func:`shard_numbers`) and its span of the input, found by a newline scan
    (see :func:`find_span`)."""
    index, count, explicit = shard_numbers(index, count)
    return Shard(index=index, count=count, span=find_span(input_path, index, count), explicit=explicit)
