"""Tests for the ordered process pool: ordering, look-ahead, timeouts, crashes, errors, clean shutdown.

Worker functions are module-level so that spawned workers can import them. No timing
assertions beyond generous limits: the machine is shared and noisy.
"""

from __future__ import annotations

import mmap
import os
import random
import signal
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from vidcap.video.pool import OrderedPool, TaskOutcome, default_workers

FRAMES_SHAPE = (10, 720, 1280, 3)  # ~28 MB of uint8, the size of a decoded clip


SHM = "/dev/shm"


def segments(pid: int | None = None) -> list[str]:
    """The pool's shared-memory segments in /dev/shm (of parent ``pid``, default this process)."""
    return sorted(p.name for p in Path(SHM).glob(f"vidcap-pool-{pid or os.getpid()}-*"))


class ExpectedError(Exception):
    """Stands in for an expected per-task failure (like vidcap's RecordError)."""


def frames_for(i: int) -> np.ndarray:
    """A large array whose content depends on ``i``, to check that results arrive intact."""
    return (
        ((np.arange(np.prod(FRAMES_SHAPE), dtype=np.uint32) * 7 + i) % 251)
        .astype(np.uint8)
        .reshape(FRAMES_SHAPE)
    )


def act(task: tuple[str, Any]) -> Any:
    """Worker function: do what the task says."""
    kind, arg = task
    if kind == "value":  # (delay_s, value)
        time.sleep(arg[0])
        return arg[1], os.getpid()
    if kind == "pid":
        return os.getpid()
    if kind == "expected":
        raise ExpectedError(arg)
    if kind == "bug":
        raise ValueError(arg)
    if kind == "exit":
        os._exit(arg)
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "hang":
        while True:
            time.sleep(1)
    if kind == "frames":
        return frames_for(arg)
    if kind == "segment":  # (pool, key, then): leave the task's shared-memory segment, then hang or die
        pool, key, then = arg
        Path(SHM, f"vidcap-pool-{os.getppid()}-{pool}-{key}").write_bytes(b"x" * 4096)
        return act((then, None))
    if kind == "unpicklable":
        return lambda: None
    if kind == "touch":  # (folder, i): leave a trace that the task ran
        Path(arg[0], str(arg[1])).touch()
        return arg[1]
    raise AssertionError(kind)


def results(outcomes: Iterator[TaskOutcome]) -> list[Any]:
    return [o.result if o.error is None else f"error: {o.error}" for o in outcomes]


def leftover_children(before: set[int]) -> list[psutil.Process]:
    """Children (zombies included) not there before, other than multiprocessing's resource tracker."""
    left = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.pid in before or "resource_tracker" in " ".join(proc.cmdline()):
                continue
        except psutil.ZombieProcess:
            pass
        except psutil.NoSuchProcess:
            continue
        left.append(proc)
    return left


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(scope="module")
def pool() -> Iterator[OrderedPool]:
    with OrderedPool(act, workers=2, max_pending=4, error_types=(ExpectedError,)) as p:
        yield p


def test_order_kept_with_random_durations_and_workers_reused(pool: OrderedPool) -> None:
    rng = random.Random(7)
    tasks = [("value", (rng.uniform(0, 0.03), i)) for i in range(40)]
    outcomes = list(pool.imap(tasks))
    assert [o.task for o in outcomes] == tasks
    assert [o.error for o in outcomes] == [None] * 40
    assert [o.result[0] for o in outcomes] == list(range(40))
    pids = {o.result[1] for o in outcomes}
    assert os.getpid() not in pids and len(pids) <= 2  # started once, reused
    assert list(pool.imap([])) == []


@pytest.mark.parametrize("workers", [0, 1])
def test_exceptions_become_one_line_errors(workers: int) -> None:
    tasks = [
        ("expected", "corrupt video"),
        ("expected", ""),
        ("expected", "line one\n  line two\n"),
        ("bug", "oops"),
        ("bug", ""),
        ("value", (0, "fine")),
    ]
    with OrderedPool(act, workers=workers, max_pending=3, error_types=(ExpectedError,)) as p:
        outcomes = list(p.imap(tasks))
    assert [o.error for o in outcomes] == [
        "corrupt video",
        "ExpectedError",
        "line one line two",
        "ValueError: oops",
        "ValueError",
        None,
    ]
    assert all(o.result is None for o in outcomes[:-1])
    assert outcomes[-1].result[0] == "fine"


def test_unpicklable_task_or_result_is_an_error(pool: OrderedPool) -> None:
    outcomes = list(pool.imap([("unpicklable", None), ("value", lambda: None), ("value", (0, 1))]))
    assert outcomes[0].error is not None and outcomes[0].error.startswith("result could not be pickled")
    assert outcomes[1].error is not None and outcomes[1].error.startswith("task could not be pickled")
    assert outcomes[2].result[0] == 1


def test_workers_0_runs_inline_and_lazily() -> None:
    pulled = 0

    def tasks() -> Iterator[tuple[str, Any]]:
        nonlocal pulled
        for i in range(5):
            pulled += 1
            yield ("value", (0, i))

    p = OrderedPool(act, workers=0, max_pending=4)
    outcomes = p.imap(tasks())
    first = next(outcomes)
    assert pulled == 1 and first.result == (0, os.getpid())
    assert [o.result[0] for o in outcomes] == [1, 2, 3, 4]
    p.close()


def test_look_ahead_is_bounded_and_workers_run_ahead_of_the_consumer(tmp_path: Path) -> None:
    max_pending, workers, total = 4, 2, 10
    pulled = 0

    def tasks() -> Iterator[tuple[str, Any]]:
        nonlocal pulled
        for i in range(total):
            pulled += 1
            yield ("touch", (str(tmp_path), i))

    with OrderedPool(act, workers=workers, max_pending=max_pending) as p:
        outcomes = p.imap(tasks())
        assert next(outcomes).result == 0
        assert pulled <= max_pending
        # While the consumer is busy, the workers finish the rest of the window...
        deadline = time.monotonic() + 60
        while len(list(tmp_path.iterdir())) < max_pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(int(f.name) for f in tmp_path.iterdir()) == list(range(max_pending))
        # ...and nothing beyond it was pulled.
        assert pulled == max_pending
        taken = 1
        for outcome in outcomes:
            assert outcome.result == taken
            taken += 1
            assert pulled - taken <= max_pending
        assert taken == total


def test_timeout_kills_the_task_and_the_next_ones_run() -> None:
    tasks = [("pid", None), ("hang", None), ("pid", None), ("pid", None)]
    with OrderedPool(act, workers=1, max_pending=4, timeout_s=1.5) as p:
        outcomes = list(p.imap(tasks))
    assert [o.error for o in outcomes] == [None, "timed out after 1.5 s", None, None]
    assert outcomes[0].result != outcomes[2].result == outcomes[3].result  # replaced once, then reused


def test_dead_workers_give_error_outcomes_and_are_replaced() -> None:
    tasks = [("pid", None), ("exit", 3), ("pid", None), ("kill", None), ("pid", None)]
    with OrderedPool(act, workers=1, max_pending=2) as p:
        outcomes = list(p.imap(tasks))
    assert [o.error for o in outcomes] == [
        None,
        "worker died (exit code 3)",
        None,
        "worker died (signal 9 SIGKILL)",
        None,
    ]
    assert len({outcomes[0].result, outcomes[2].result, outcomes[4].result}) == 3


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_workers_ignore_the_jobs_stop_signals(pool: OrderedPool, stop_signal: signal.Signals) -> None:
    """Ctrl-C and SLURM pre-emption reach every process; the parent decides when workers stop."""
    [first] = pool.imap([("pid", None)])
    os.kill(first.result, stop_signal)
    time.sleep(0.2)
    assert [o.result for o in pool.imap([("pid", None)] * 4)].count(first.result) >= 1
    assert psutil.Process(first.result).is_running()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_while_workers_start_kills_none(stop_signal: signal.Signals) -> None:
    """Workers start while the model loads, when a stop is likely: one that comes while a worker
    is still importing (before it ignores the signal) must not kill it either."""
    import multiprocessing

    before = set(multiprocessing.active_children())  # other pools' workers
    with OrderedPool(act, workers=1, max_pending=2) as pool:
        deadline = time.monotonic() + 30
        while not (started := list(set(multiprocessing.active_children()) - before)):
            assert time.monotonic() < deadline
            time.sleep(0.001)
        os.kill(started[0].pid, stop_signal)  # at once: the worker is still starting
        [outcome] = pool.imap([("pid", None)])
        assert outcome.result == started[0].pid  # the same worker did the task: none was replaced


def test_large_arrays_arrive_intact(pool: OrderedPool) -> None:
    for outcome in pool.imap([("frames", i) for i in range(3)]):
        assert outcome.error is None
        assert outcome.result.shape == FRAMES_SHAPE and outcome.result.dtype == np.uint8
        assert np.array_equal(outcome.result, frames_for(outcome.task[1]))


def mapping_of(array: np.ndarray) -> object:
    """What ``array``'s memory belongs to, at the end of its chain of bases."""
    base: object = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


@pytest.mark.parametrize("shared_memory", [True, False])
def test_large_arrays_come_as_views_of_shared_memory_or_through_the_pipe(shared_memory: bool) -> None:
    with OrderedPool(act, workers=1, max_pending=2, shared_memory=shared_memory) as p:
        outcomes = list(p.imap([("frames", i) for i in range(2)] + [("value", (0, np.zeros(4)))]))
    for outcome in outcomes[:2]:
        frames = outcome.result
        assert np.array_equal(frames, frames_for(outcome.task[1]))
        assert isinstance(mapping_of(frames), mmap.mmap) == shared_memory
        frames[0, 0, 0] = 1  # writable, as a pickled array is
    assert np.array_equal(outcomes[2].result[0], np.zeros(4))  # small arrays stay in the pipe
    assert not isinstance(mapping_of(outcomes[2].result[0]), mmap.mmap)
    assert segments() == []  # names are unlinked on receipt: the mappings alone keep the pages


def test_no_segment_left_after_errors_timeouts_deaths_and_close() -> None:
    # A timeout well above a loaded machine's worst case for the quick tasks (only "hang" reaches it).
    with OrderedPool(act, workers=2, max_pending=4, timeout_s=10.0, error_types=(ExpectedError,)) as p:
        pool = p._pool
        tasks = [
            ("frames", 0),
            ("segment", (pool, 1, "hang")),  # a worker killed on timeout with its segment written
            ("expected", "corrupt video"),
            ("segment", (pool, 3, "kill")),  # a worker that dies with its segment written
            ("frames", 4),
            ("bug", "oops"),
            ("frames", 6),
        ]
        outcomes = list(p.imap(tasks))
        assert [o.error for o in outcomes] == [
            None,
            "timed out after 10 s",
            "corrupt video",
            "worker died (signal 9 SIGKILL)",
            None,
            "ValueError: oops",
            None,
        ]
        assert np.array_equal(outcomes[6].result, frames_for(6))
        # An abandoned imap: results received and dropped, a hanging task killed by close().
        abandoned = p.imap([("frames", 10), ("frames", 11), ("segment", (pool, 9, "hang")), ("frames", 12)])
        next(abandoned)
        abandoned.close()
        time.sleep(0.5)
    assert segments() == []
    assert np.array_equal(outcomes[4].result, frames_for(4))  # still mapped after close and unlink


def test_segments_of_a_killed_parent_are_removed_by_the_next_pool() -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(dead.stdout)
    left = Path(SHM, f"vidcap-pool-{dead_pid}-0-5")
    left.write_bytes(b"x")
    young = Path(SHM, f"vidcap-pool-{dead_pid}-0-6")  # maybe another PID namespace's: kept for now
    young.write_bytes(b"x")
    alive = Path(SHM, f"vidcap-pool-{os.getpid()}-999999-0")  # a live process's: kept
    alive.write_bytes(b"x")
    an_hour_ago = time.time() - 3600
    for path in (left, alive):
        os.utime(path, (an_hour_ago, an_hour_ago))
    try:
        with OrderedPool(act, workers=1, max_pending=1) as p:
            [outcome] = p.imap([("value", (0, 1))])
            assert outcome.result[0] == 1
        assert not left.exists() and young.exists() and alive.exists()
    finally:
        for path in (left, young, alive):
            path.unlink(missing_ok=True)


def test_abandoned_imap_does_not_disturb_the_next(pool: OrderedPool) -> None:
    first = pool.imap([("value", (0.2, i)) for i in range(6)])
    assert next(first).result[0] == 0
    first.close()
    second = results(pool.imap([("value", (0, i)) for i in range(10, 16)]))
    assert [r[0] for r in second] == list(range(10, 16))
    time.sleep(0.5)  # let the abandoned tasks finish: their outcomes must be dropped, not kept
    [last] = pool.imap([("value", (0, 99))])
    assert last.result[0] == 99
    assert not pool._done and not pool._discard


@pytest.mark.parametrize("how", ["generator_closed", "keyboard_interrupt", "close_while_starting"])
def test_close_leaves_no_child_processes(how: str) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    tasks = [("pid", None)] + [("hang", None)] * 5  # workers are stuck when the pool closes
    started = time.monotonic()
    if how == "generator_closed":
        with OrderedPool(act, workers=2, max_pending=4) as p:
            outcomes = p.imap(tasks)
            assert next(outcomes).error is None
            outcomes.close()
    elif how == "keyboard_interrupt":
        with pytest.raises(KeyboardInterrupt), OrderedPool(act, workers=2, max_pending=4) as p:
            for _ in p.imap(tasks):
                raise KeyboardInterrupt
    else:
        OrderedPool(act, workers=2, max_pending=4).close()
    assert time.monotonic() - started < 30
    assert leftover_children(before) == []


ORPHAN_SCRIPT = """
import sys, time
sys.path.insert(0, sys.argv[1])
from test_pool import act
from vidcap.video.pool import OrderedPool
if __name__ == "__main__":
    pool = OrderedPool(act, workers=1, max_pending=2)
    outcomes = pool.imap([("pid", None), ("hang", None)])
    print(next(outcomes).result, flush=True)
    next(outcomes)
"""


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(ORPHAN_SCRIPT)
    command = [sys.executable, str(script), str(Path(__file__).parent)]
    parent = subprocess.Popen(command, stdout=subprocess.PIPE)
    worker = None
    try:
        worker = psutil.Process(int(parent.stdout.readline()))
        time.sleep(0.3)  # let the worker pick up the hanging task
        parent.kill()  # like the OOM killer: no cleanup runs in the parent
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while not gone(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(worker)
    finally:
        parent.kill()
        parent.stdout.close()
        if worker is not None and not gone(worker):  # the test failed: do not leave it behind
            worker.kill()


def test_workers_that_cannot_start_raise_instead_of_hanging() -> None:
    # A function from a module that workers cannot import: each worker dies on start-up.
    module = types.ModuleType("vidcap_test_module_workers_cannot_import")
    exec("def identity(x):\n    return x\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        with (
            OrderedPool(module.identity, workers=1, max_pending=2) as p,
            pytest.raises(RuntimeError, match="start"),
        ):
            list(p.imap([1, 2]))
    finally:
        del sys.modules[module.__name__]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        OrderedPool(act, workers=1, max_pending=0)
    with pytest.raises(ValueError):
        OrderedPool(act, workers=-1, max_pending=1)
    with pytest.raises(Exception, match=r"lambda|pickle|attribute"):
        OrderedPool(lambda x: x, workers=1, max_pending=1)
    p = OrderedPool(act, workers=0, max_pending=1)
    p.close()
    with pytest.raises(RuntimeError):
        next(p.imap([("pid", None)]))


def test_default_workers() -> None:
    assert default_workers(8) == 7
    assert default_workers(1) == 1
    assert default_workers(256) == 32
    assert 1 <= default_workers() <= 32
