"""Which slice of the input this process captions (--shard-index/--num-shards or SLURM)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from vidcap.errors import VidcapError
from vidcap.io.shards import shard_from_env, shard_range


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``, covering input positions ``range``."""

    index: int
    count: int
    range: range


def resolve_shard(index: int | None, count: int | None, total: int) -> Shard:
    """Flags first, else ``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT``, else the whole input."""
    if (index is None) != (count is None):
        raise VidcapError("--shard-index and --num-shards go together; give both")
    if index is None or count is None:
        from_env = shard_from_env(os.environ)
        index, count = from_env if from_env is not None else (0, 1)
    return Shard(index=index, count=count, range=shard_range(total, index, count))
