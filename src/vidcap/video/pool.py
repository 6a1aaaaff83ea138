"""An ordered process pool that survives stuck and crashing tasks (generic: knows nothing of video).

Workers are ``spawn``-ed, never forked (the main process may hold CUDA state), started once and
reused. A dispatcher thread in the parent feeds them and collects results, so they keep working
ahead while the caller is busy generating; ``imap`` pulls tasks and hands out outcomes in order.

Results come back over one Pipe per worker, pickled with protocol 5. Their large buffers (numpy
arrays of 1 MiB or more: decoded frames) travel out of band through POSIX shared memory
(``vidcap.procs.dumps_shared``): the worker writes them into a file of its own in /dev/shm and sends
only its name and the pickle's small rest; the dispatcher thread maps the file, unlinks its name at
once and unpickles the arrays as views of the mapping, so the parent never copies frames
(scripts/bench_host_ceiling.py measures both ways).

Segments are named ``vidcap-pool-<parent pid>-<pool>-<task>``. A worker that is killed or dies
mid-task may leave its task's segment: the parent unlinks that name once the worker is reaped
(timeout, crash, close). Only a parent that is SIGKILLed itself can leave segments behind (those its
workers had written and it had not yet received, at most one per worker); the next pool started on
the machine removes those whose parent process no longer exists, once ten minutes old
(``vidcap.procs.remove_orphan_segments``). Where /dev/shm is missing or full, results go through
the pipe whole, as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import math
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any, Generic, TypeVar

from vidcap.errors import one_line
from vidcap.procs import (
    SHM_DIR,
    dumps_shared,
    loads_shared,
    remove_orphan_segments,
    segment_name,
    signal_name,
    stop_signals_blocked,
    unlink_segment,
)

T = TypeVar("T")
R = TypeVar("R")

_READY = "ready"  # a worker's first message: it is imported and waiting for tasks
_MAX_START_FAILURES = 3  # workers dying before ready, in a row: fn's module cannot load; give up
_JOIN_S = 2.0  # how long close() lets workers exit before SIGKILL
_pool_numbers = itertools.count()


@dataclass(frozen=True)
class TaskOutcome(Generic[T, R]):
    """One task's result, or ``error``: a one-line reason when it failed (then ``result`` is None)."""

    task: T
    result: R | None
    error: str | None


def default_workers(cpu_count: int | None = None) -> int:
    """Workers for ``cpu_count`` usable CPUs (default: affinity and cgroup quota), one left for the engine.

    Capped at 32: beyond that, memory per worker and the engine's pace matter more than decoding.
    """
    if cpu_count is None:
        cpu_count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        with contextlib.suppress(OSError, ValueError):  # a container's CPU quota (cgroup v2): "400000 100000"
            quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
            if quota != "max":
                cpu_count = min(cpu_count, max(1, int(int(quota) / int(period))))
    return max(1, min(cpu_count - 1, 32))


def _call(fn: Callable[[Any], Any], task: Any, error_types: tuple) -> tuple[bool, Any]:
    """Run ``fn(task)``; return (True, result) or (False, one-line error)."""
    try:
        return True, fn(task)
    except Exception as exc:
        if not isinstance(exc, error_types):
            # Not an expected failure, so probably a bug: the traceback on stderr (and the type
            # name in the message).
            traceback.print_exc()
        return False, one_line(exc, expected=error_types)


def _exit_reason(code: int | None) -> str:
    """``signal 9 SIGKILL``, ``exit code 3``: how a worker ended."""
    name = signal_name(code)
    if name is None or code is None:
        return f"exit code {code}"
    return name if name == f"signal {-code}" else f"signal {-code} {name}"


def _worker_main(
    conn: Connection, fn: Callable[[Any], Any], error_types: tuple, parent_pid: int, pool: int | None
) -> None:
    # Ctrl-C and SLURM pre-emption signal every process of the job; the parent decides when to
    # stop (see vidcap.procs) and ends workers itself: idle ones by message, busy ones by SIGKILL.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # No orphans, even when the parent is SIGKILLed (OOM): Linux kills us when the thread that
    # spawned us (the pool's dispatcher) ends. Stuck workers would otherwise live on.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before that took effect
        os._exit(1)
    conn.send_bytes(ForkingPickler.dumps(_READY, protocol=5))
    while True:
        try:
            message = ForkingPickler.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the parent is gone
        if message is None:
            return
        key, task = message
        ok, payload = _call(fn, task, error_types)
        try:
            segment = None if pool is None else segment_name("pool", parent_pid, pool, key)
            data = dumps_shared((key, ok, payload), segment)
        except Exception as exc:
            data = ForkingPickler.dumps((key, False, one_line(f"result could not be pickled: {exc}")))
        try:
            conn.send_bytes(data)
        except OSError:
            return


@dataclass(eq=False)
class _Worker:
    """Parent-side state of one worker process; only the dispatcher thread touches it."""

    proc: Any  # multiprocessing.context.SpawnProcess
    conn: Connection
    ready: bool = False
    key: int | None = None  # the task it is running
    task: Any = None
    deadline: float = math.inf


class OrderedPool(Generic[T, R]):
    """Run ``fn`` over tasks in ``workers`` spawned processes; yield outcomes in submission order.

    ``fn`` must be a module-level function. A task running over ``timeout_s`` has its worker
    SIGKILLed and replaced; a worker that dies gives its task an error outcome and is replaced.
    ``workers=0`` runs ``fn`` in the calling process (no timeout). Use as a context manager,
    or call ``close()``, which terminates the workers and never hangs. Tasks of an ``imap``
    abandoned early are not interrupted: they run to the end (or timeout) and are dropped.
    Workers are daemonic, so ``fn`` cannot start processes of its own with multiprocessing.
    ``shared_memory=False`` sends results whole through the pipes (see the module's docstring).
    """

    def __init__(
        self,
        fn: Callable[[T], R],
        *,
        workers: int,
        max_pending: int,
        timeout_s: float | None = None,
        error_types: tuple[type[BaseException], ...] = (Exception,),
        shared_memory: bool = True,
    ) -> None:
        if workers < 0 or max_pending < 1 or (timeout_s is not None and timeout_s <= 0):
            raise ValueError(f"bad pool size: {workers=} {max_pending=} {timeout_s=}")
        self._fn, self._n, self._max_pending = fn, workers, max_pending
        self._timeout_s, self._error_types = timeout_s, error_types
        self._cond = threading.Condition()
        # Shared with the dispatcher thread, under self._cond:
        self._queue: deque[tuple[int, T]] = deque()
        self._done: dict[int, TaskOutcome[T, R]] = {}
        self._discard: set[int] = set()  # running tasks of abandoned imaps: drop their outcomes
        self._closed = False
        self._failure: str | None = None
        self._next_key = 0
        self._start_failures = 0  # workers in a row that died before ready (dispatcher thread only)
        self._workers: list[_Worker] = []
        self._thread: threading.Thread | None = None
        # This pool's number in its segments' names; None: no shared memory.
        self._pool: int | None = next(_pool_numbers) if shared_memory and SHM_DIR.is_dir() else None
        if workers:
            if self._pool is not None:
                remove_orphan_segments()
            ForkingPickler.dumps(fn)  # fail here, not in a worker, when fn is a lambda or closure
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            # Workers are spawned by this thread: Linux ties their PDEATHSIG to it.
            self._thread = threading.Thread(target=self._dispatch, name="vidcap-pool", daemon=True)
            self._thread.start()

    def __enter__(self) -> OrderedPool[T, R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def imap(self, tasks: Iterable[T]) -> Iterator[TaskOutcome[T, R]]:
        """Yield one outcome per task, in order, pulling tasks lazily (at most ``max_pending`` ahead)."""
        if self._closed:
            raise RuntimeError("pool is closed")
        if not self._n:
            for task in tasks:
                ok, payload = _call(self._fn, task, self._error_types)
                yield TaskOutcome(task, payload, None) if ok else TaskOutcome(task, None, payload)
            return
        window: deque[int] = deque()  # keys submitted and not yet yielded
        source, exhausted = iter(tasks), False
        try:
            while True:
                # Submit one by one, so that workers start while a slow task source is still being read.
                while not exhausted and len(window) < self._max_pending:
                    try:
                        task = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    with self._cond:
                        window.append(self._next_key)
                        self._queue.append((self._next_key, task))
                        self._next_key += 1
                    self._wake()
                if not window:
                    return
                yield self._wait_for(window.popleft())
        finally:
            with self._cond:  # abandoned early: forget the rest of this window
                pending = set(window)
                queued = {key for key, _ in self._queue if key in pending}
                self._queue = deque(item for item in self._queue if item[0] not in pending)
                for key in pending - queued:  # running, or done and not yet taken
                    if self._done.pop(key, None) is None:
                        self._discard.add(key)

    def close(self) -> None:
        """Stop all workers (idle ones exit, busy ones are killed); safe to call twice."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        if self._thread is None:
            return
        self._wake()
        self._thread.join(timeout=3 * _JOIN_S)
        if self._thread.is_alive():  # stuck (it should not be): never leave a process behind
            for worker in self._workers:
                with contextlib.suppress(Exception):
                    worker.proc.kill()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # --- caller side ---

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # a full pipe wakes the thread just as well
            os.write(self._wake_w, b"x")

    def _wait_for(self, key: int) -> TaskOutcome[T, R]:
        with self._cond:
            while key not in self._done:
                if self._failure is not None:
                    raise RuntimeError(self._failure)
                if self._closed:
                    raise RuntimeError("pool was closed while iterating")
                self._cond.wait(timeout=1.0)
            return self._done.pop(key)

    # --- dispatcher thread ---

    def _dispatch(self) -> None:
        try:
            for _ in range(self._n):
                self._workers.append(self._spawn())  # one by one: _shutdown must see all that started
            while not self._closed:
                self._assign()
                timeout = min((w.deadline for w in self._workers), default=math.inf) - time.monotonic()
                waitables: list[Any] = [self._wake_r]
                for w in self._workers:
                    waitables += [w.proc.sentinel] + ([w.conn] if w.key is not None or not w.ready else [])
                ready = set(wait(waitables, timeout=None if timeout == math.inf else max(timeout, 0.0)))
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
                for i, w in enumerate(self._workers):
                    died = w.proc.sentinel in ready
                    if (died or w.conn in ready) and w.conn.poll():  # read first: a result may precede death
                        try:
                            self._receive(w)
                        except (EOFError, OSError):
                            died = True
                    if died:
                        w.proc.join(timeout=_JOIN_S)
                        reason = _exit_reason(w.proc.exitcode)
                        self._start_failures = self._start_failures + 1 if not w.ready else 0
                        if self._start_failures >= _MAX_START_FAILURES:
                            raise RuntimeError(f"workers die on start-up ({reason})")
                        self._replace(i, f"worker died ({reason})")
                    elif w.key is not None and time.monotonic() >= w.deadline:
                        w.proc.kill()  # it may be stuck in C code: only SIGKILL is sure to work
                        self._replace(i, f"timed out after {self._timeout_s:g} s")
        except BaseException as exc:  # the caller must not wait forever on a dead thread
            with self._cond:
                self._failure = one_line(f"pool dispatcher failed: {type(exc).__name__}: {exc}")
                self._cond.notify_all()
        finally:
            self._shutdown()

    def _spawn(self) -> _Worker:
        ctx = multiprocessing.get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        args = (child_conn, self._fn, self._error_types, os.getpid(), self._pool)
        proc = ctx.Process(target=_worker_main, args=args, name="vidcap-pool-worker", daemon=True)
        # Born with the job's stop signals blocked: a worker still importing when one comes (it
        # starts while the model loads, when a stop is likely) would die before it ignores them.
        with stop_signals_blocked():
            proc.start()
        child_conn.close()
        return _Worker(proc, parent_conn)

    def _assign(self) -> None:
        for w in self._workers:
            if not w.ready or w.key is not None:
                continue
            with self._cond:
                if not self._queue:
                    return
                key, task = self._queue.popleft()
            try:
                data = ForkingPickler.dumps((key, task), protocol=5)
            except Exception as exc:
                self._finish(key, TaskOutcome(task, None, one_line(f"task could not be pickled: {exc}")))
                continue
            try:
                w.conn.send_bytes(data)
            except OSError:  # it died while idle: the main loop replaces it; the task goes to another
                with self._cond:
                    self._queue.appendleft((key, task))
                continue
            w.key, w.task = key, task
            w.deadline = time.monotonic() + self._timeout_s if self._timeout_s else math.inf

    def _receive(self, w: _Worker) -> None:
        data = w.conn.recv_bytes()  # EOFError, OSError: the worker died
        try:
            message = loads_shared(data)
        except Exception as exc:  # e.g. the result's class cannot be imported here
            message = (w.key, False, one_line(f"result could not be unpickled: {exc}"))
        if message == _READY:
            w.ready, self._start_failures = True, 0
            return
        key, ok, payload = message
        outcome = TaskOutcome(w.task, payload, None) if ok else TaskOutcome(w.task, None, payload)
        w.key, w.task, w.deadline = None, None, math.inf
        self._finish(key, outcome)

    def _finish(self, key: int, outcome: TaskOutcome[T, R]) -> None:
        with self._cond:
            if key in self._discard:
                self._discard.remove(key)
            else:
                self._done[key] = outcome
                self._cond.notify_all()

    def _replace(self, i: int, error: str) -> None:
        """Reap worker ``i`` (already dead or SIGKILLed), fail its task with ``error``, start another."""
        w = self._workers[i]
        w.proc.join(timeout=_JOIN_S)
        w.conn.close()
        self._unlink_left(w)
        if w.key is not None:
            self._finish(w.key, TaskOutcome(w.task, None, error))
        self._workers[i] = self._spawn()

    def _shutdown(self) -> None:
        for w in self._workers:
            if w.ready and w.key is None:
                with contextlib.suppress(OSError):
                    w.conn.send_bytes(ForkingPickler.dumps(None))  # idle: let it exit cleanly
            else:
                w.proc.kill()
        deadline = time.monotonic() + _JOIN_S
        for w in self._workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=_JOIN_S)
            w.conn.close()
            self._unlink_left(w)

    def _unlink_left(self, w: _Worker) -> None:
        """Unlink the segment a reaped worker may have left for its unfinished (or unreceived) task."""
        if self._pool is not None and w.key is not None and not w.proc.is_alive():
            unlink_segment(segment_name("pool", os.getpid(), self._pool, w.key))
