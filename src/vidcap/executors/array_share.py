"""An array task's share of the input: which slice this process captions (--shard-index and
--num-shards, or a SLURM job array's variables), found without parsing the input."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vidcap.errors import VidcapError
from vidcap.io.formats import find_span
from vidcap.io.shards import InputSpan, check_shard


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
