"""The executor seam: the registry picks an executor per run, and a job computes its output, checks
it and holds its lock in one place (unit tests: no engine starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidcap.config import build_config
from vidcap.errors import OutputLockedError, VidcapError
from vidcap.executors import EXECUTORS, executor_class, executor_for
from vidcap.executors.base import Executor
from vidcap.executors.data_parallel import DataParallelEngine, DataParallelExecutor
from vidcap.executors.job import Job
from vidcap.executors.local import LocalExecutor
from vidcap.io.lock import acquire_output_lock, lock_path


def _config(data: Path, **extra):
    return build_config({}, {"input": str(data), "model": "m", **extra})


def test_each_registered_executor_is_an_executor_of_its_name() -> None:
    for name in EXECUTORS:
        cls = executor_class(name)
        assert issubclass(cls, Executor) and cls.name == name
    assert list(EXECUTORS)[-1] == "local"  # it takes every run: asked last


def test_the_registry_picks_the_executor_for_a_run(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    one = executor_for(_config(data))
    assert type(one) is LocalExecutor
    two = executor_for(_config(data, data_parallel_size=2))
    assert type(two) is DataParallelExecutor
    assert isinstance(two.engine(), DataParallelEngine)  # built, not started


def test_a_job_plans_its_output_without_reading_the_input(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    data = tmp_path / "data.jsonl"  # not there: planning reads no file
    assert Job.plan(_config(data)).output_path == tmp_path / "data.captions.jsonl"
    shard = Job.plan(_config(data, shard_index=1, num_shards=2))
    assert shard.output_path == tmp_path / "data.captions.shard-1-of-2.jsonl"
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    assert Job.plan(_config(data)).output_path == tmp_path / "data.captions.shard-3-of-4.jsonl"
    with pytest.raises(VidcapError, match="output"):
        Job.plan(_config(data, output=str(data)))


def test_a_job_holds_its_lock_once(tmp_path: Path) -> None:
    data, out = tmp_path / "data.jsonl", tmp_path / "out.jsonl"
    job = Job.plan(_config(data, output=str(out)))
    with job.locked() as lock:
        assert job.lock is lock and lock.path == lock_path(out)
        with job.locked() as again:  # held already: the same lock, not a second (refused) one
            assert again is lock
        with pytest.raises(OutputLockedError):  # another run of the same output is refused
            acquire_output_lock(out)
    assert job.lock is None
    with (
        acquire_output_lock(tmp_path / "other.jsonl") as other,
        pytest.raises(ValueError, match="not the lock"),
        job.locked(other),
    ):
        pass
