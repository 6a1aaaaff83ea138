"""Which slice of the input this process captions (--shard-index/--num-shards or SLURM)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vidcap.errors import VidcapError
from vidcap.io.shards import InputSpan, check_shard, default_output, find_span, shard_from_env


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

    def default_output(self) -> Path:
        """``INPUT.captions.shard-I-of-N.EXT`` for an explicit shard, else ``INPUT.captions.EXT``."""
        return default_output(self.span.path, (self.index, self.count) if self.explicit else None)


def resolve_shard(index: int | None, count: int | None, input_path: Path) -> Shard:
    """Flags first, else ``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT``, else the whole input.

    Finds the shard's span of the input by a newline scan (see :func:`find_span`).
    """
    if (index is None) != (count is None):
        raise VidcapError("--shard-index and --num-shards go together; give both")
    explicit = True
    if index is None or count is None:
        from_env = shard_from_env(os.environ)
        explicit = from_env is not None
        index, count = from_env if from_env is not None else (0, 1)
    check_shard(index, count)
    return Shard(index=index, count=count, span=find_span(input_path, index, count), explicit=explicit)
