"""Shard ranges and SLURM job-array environments."""

from __future__ import annotations

import itertools

import pytest

from vidcap.errors import VidcapError
from vidcap.io.shards import shard_from_env, shard_range

CASES = [(total, n) for total in [*range(0, 40), 97, 1000, 12_345] for n in [*range(1, 13), 16, 64, 100]]


def test_shards_are_contiguous_disjoint_covering_and_balanced() -> None:
    for total, n in CASES:
        ranges = [shard_range(total, i, n) for i in range(n)]
        assert all(r.step == 1 for r in ranges)
        # Contiguous and in order: each starts where the previous one stopped; together [0, total).
        assert ranges[0].start == 0 and ranges[-1].stop == total, (total, n)
        assert all(a.stop == b.start for a, b in itertools.pairwise(ranges)), (total, n)
        sizes = [len(r) for r in ranges]
        assert sum(sizes) == total and max(sizes) - min(sizes) <= 1, (total, n)
        # The first total % n shards are the bigger ones.
        assert sizes == [total // n + (1 if i < total % n else 0) for i in range(n)], (total, n)
        assert ranges == [shard_range(total, i, n) for i in range(n)]  # deterministic


def test_examples() -> None:
    assert [shard_range(10, i, 3) for i in range(3)] == [range(0, 4), range(4, 7), range(7, 10)]
    assert [shard_range(2, i, 4) for i in range(4)] == [range(0, 1), range(1, 2), range(2, 2), range(2, 2)]


@pytest.mark.parametrize(("index", "n"), [(-1, 4), (4, 4), (0, 0), (0, -2)])
def test_invalid_shard(index: int, n: int) -> None:
    with pytest.raises(VidcapError):
        shard_range(10, index, n)


def test_no_job_array() -> None:
    assert shard_from_env({}) is None
    assert shard_from_env({"SLURM_JOB_ID": "123", "SLURM_ARRAY_TASK_COUNT": "4"}) is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, (0, 4)),
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, (3, 4)),
        # --array=1-8
        ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "1"}, (0, 8)),
        (
            {
                "SLURM_ARRAY_TASK_ID": "8",
                "SLURM_ARRAY_TASK_COUNT": "8",
                "SLURM_ARRAY_TASK_MIN": "1",
                "SLURM_ARRAY_TASK_MAX": "8",
            },
            (7, 8),
        ),
        # --array=0-14:2
        (
            {
                "SLURM_ARRAY_TASK_ID": "6",
                "SLURM_ARRAY_TASK_COUNT": "8",
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_MAX": "14",
                "SLURM_ARRAY_TASK_STEP": "2",
            },
            (3, 8),
        ),
    ],
)
def test_slurm_env(env: dict[str, str], expected: tuple[int, int]) -> None:
    assert shard_from_env(env) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "4"},
            "SLURM_ARRAY_TASK_ID='x' is not an integer",
        ),
        ({"SLURM_ARRAY_TASK_ID": "2"}, "SLURM_ARRAY_TASK_COUNT is not"),
        (
            {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"},
            "shard index 4 is out of range for 4 shards",
        ),
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "0"}, "shard count must be at least 1"),
        (
            {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"},
            "shard index -1 is out of range",
        ),
        # --array=1,4,9: not an evenly spaced range
        (
            {
                "SLURM_ARRAY_TASK_ID": "4",
                "SLURM_ARRAY_TASK_COUNT": "3",
                "SLURM_ARRAY_TASK_MIN": "1",
                "SLURM_ARRAY_TASK_MAX": "9",
            },
            "does not have SLURM_ARRAY_TASK_COUNT=3 evenly spaced tasks",
        ),
        (
            {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "2"},
            "is not on the array's range",
        ),
    ],
)
def test_slurm_env_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(VidcapError) as info:
        shard_from_env(env)
    assert message in str(info.value)
