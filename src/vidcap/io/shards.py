"""Splitting the input's records between shards (e.g. the tasks of a SLURM job array).

A shard is a contiguous range of record indexes, so each shard's output is in input order
and the merged output is just the shard outputs concatenated in shard order.
"""

from __future__ import annotations

from collections.abc import Mapping

from vidcap.errors import VidcapError


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


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise VidcapError(f"{name}={value!r} is not an integer") from None


def shard_from_env(environ: Mapping[str, str]) -> tuple[int, int] | None:
    """``(shard_index, num_shards)`` for a SLURM job-array task, or None outside a job array.

    Uses ``SLURM_ARRAY_TASK_ID`` and ``SLURM_ARRAY_TASK_COUNT``; the index is counted from
    ``SLURM_ARRAY_TASK_MIN`` in steps of ``SLURM_ARRAY_TASK_STEP`` (so ``--array=1-8`` and
    ``--array=0-14:2`` both give indexes 0..7). Arrays that are not an evenly spaced range
    (``--array=1,4,9``) cannot be mapped to shards and raise VidcapError.
    """
    task_id = _env_int(environ, "SLURM_ARRAY_TASK_ID")
    if task_id is None:
        return None
    count = _env_int(environ, "SLURM_ARRAY_TASK_COUNT")
    if count is None:
        raise VidcapError(
            "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass the shard explicitly"
        )
    low = _env_int(environ, "SLURM_ARRAY_TASK_MIN") or 0
    step = _env_int(environ, "SLURM_ARRAY_TASK_STEP") or 1
    high = _env_int(environ, "SLURM_ARRAY_TASK_MAX")
    hint = "use an evenly spaced array such as --array=0-N, or pass the shard explicitly"
    if step < 1 or (task_id - low) % step:
        raise VidcapError(
            f"SLURM_ARRAY_TASK_ID={task_id} is not on the array's range (min {low}, step {step}); {hint}"
        )
    if high is not None and (high - low) // step + 1 != count:
        raise VidcapError(
            f"SLURM job array {low}-{high} (step {step}) does not have SLURM_ARRAY_TASK_COUNT={count} "
            f"evenly spaced tasks; {hint}"
        )
    index = (task_id - low) // step
    check_shard(index, count)
    return index, count
