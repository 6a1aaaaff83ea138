"""Decoding as Ray tasks, in input order, a bounded number ahead: the decode side of ``--executor ray``.

``RayDecodePool`` has the ``imap`` of ``vidcap.video.pool.OrderedPool`` (outcomes in submission
order, tasks pulled lazily, at most ``max_pending`` submitted and not yet handed out), so the run
loop takes either. Each task runs vidcap's own decode step (``pipeline/decode_step.py``) in a Ray
CPU task (one CPU each) anywhere on the cluster; its frames come back through Ray's object store.
The bound is the backpressure: no more than ``max_pending`` decoded records exist at once,
however fast the cluster decodes.

A task whose node dies is run again by Ray elsewhere (a system failure; the decode step is
idempotent); a record's own failure (a RecordError: a missing or corrupt video) is that record's
error, as in the local pool; a task that runs over ``timeout_s`` (counted from when the run waits
for it) is cancelled and fails its record.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from vidcap.errors import one_line
from vidcap.executors import ray_cluster
from vidcap.video.pool import TaskOutcome

_SYSTEM_RETRIES = 3  # runs of a task lost with its node (or worker process)


def run_task(fn: Callable[[Any], Any], task: Any, error_types: tuple) -> tuple[bool, Any]:
    """Run ``fn(task)`` in a Ray task: (True, result) or (False, one-line error)."""
    try:
        return True, fn(task)
    except Exception as exc:
        if not isinstance(exc, error_types):
            traceback.print_exc()  # probably a bug: the traceback in the worker's log
        return False, one_line(exc, expected=error_types)


class RayDecodePool:
    """Run ``fn`` over tasks as Ray tasks; yield ``TaskOutcome`` objects in submission order."""

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        address: str | None,
        max_pending: int,
        workers: int | None = None,
        timeout_s: float | None = None,
        error_types: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        # ``workers`` (``OrderedPool``'s processes) has no meaning here: Ray runs as many tasks
        # at once as the cluster has CPUs for, and ``max_pending`` bounds them.
        del workers
        if max_pending < 1 or (timeout_s is not None and timeout_s <= 0):
            raise ValueError(f"bad pool size: {max_pending=} {timeout_s=}")
        self._ray = ray_cluster.connect(address)
        self._remote = self._ray.remote(num_cpus=1, max_retries=_SYSTEM_RETRIES)(run_task)
        self._fn, self._error_types = fn, error_types
        self._max_pending, self._timeout_s = max_pending, timeout_s
        self._refs: set[Any] = set()  # submitted, not yet handed out: cancelled by close
        self._closed = False

    def __enter__(self) -> RayDecodePool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def imap(self, tasks: Iterable[Any]) -> Iterator[TaskOutcome[Any, Any]]:
        """One outcome per task, in order, pulling tasks lazily (at most ``max_pending`` ahead)."""
        if self._closed:
            raise RuntimeError("pool is closed")
        window: deque[tuple[Any, Any]] = deque()  # (task, ref), in submission order
        source, exhausted = iter(tasks), False
        try:
            while True:
                while not exhausted and len(window) < self._max_pending:
                    try:
                        task = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    ref = self._remote.remote(self._fn, task, self._error_types)
                    self._refs.add(ref)
                    window.append((task, ref))
                if not window:
                    return
                task, ref = window.popleft()
                yield self._outcome(task, ref)
        finally:
            for _, ref in window:  # abandoned early: the rest is not wanted
                self._cancel(ref)

    def close(self) -> None:
        """Cancel every task not yet handed out; safe to call twice."""
        self._closed = True
        for ref in list(self._refs):
            self._cancel(ref)

    def _outcome(self, task: Any, ref: Any) -> TaskOutcome[Any, Any]:
        ray = self._ray
        deadline = None if self._timeout_s is None else time.monotonic() + self._timeout_s
        while True:
            if self._closed:
                raise RuntimeError("pool was closed while iterating")
            wait_s = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
            ready, _ = ray.wait([ref], timeout=wait_s)
            if ready:
                break
            if deadline is not None and time.monotonic() >= deadline:
                self._cancel(ref)
                return TaskOutcome(task, None, f"timed out after {self._timeout_s:g} s")
        self._refs.discard(ref)
        try:
            ok, payload = ray.get(ref)
        except Exception as exc:  # Ray gave up on it (its retries lost too)
            return TaskOutcome(task, None, f"decode task failed: {one_line(exc)}")
        return TaskOutcome(task, payload, None) if ok else TaskOutcome(task, None, payload)

    def _cancel(self, ref: Any) -> None:
        self._refs.discard(ref)
        with contextlib.suppress(Exception):
            self._ray.cancel(ref, force=True)
