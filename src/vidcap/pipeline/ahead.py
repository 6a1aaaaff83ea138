"""Decoded records, in input order, from a thread that keeps the decode pool going.

The feed must not block on the next decode while the engine has finished captions to hand
back: this thread iterates the pool (``OrderedPool.imap`` blocks until the next record in
order is decoded) and hands each decoded record over through a small queue, which the feed
polls with a timeout. Memory: the pool's look-ahead plus ``size`` records in the queue.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any

_PUT_POLL_S = 0.2  # how often a thread blocked on a full queue checks whether the feed is gone


class End:
    """The marker after the last record."""


END = End()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class DecodeAhead:
    """Iterate ``items`` in a daemon thread; ``get`` the next item, ``END``, or None (timeout).

    An exception raised by ``items`` (an input line that is not a record, a pool that failed)
    is raised by the ``get`` that reaches it. Use as a context manager: leaving it stops the
    thread at its next item; a thread waiting inside the pool ends when the pool is closed.
    """

    def __init__(self, items: Iterator[Any], *, size: int = 2) -> None:
        self._items = items
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, size))
        self._closed = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="vidcap-decode-ahead", daemon=True)
        self._thread.start()

    def __enter__(self) -> DecodeAhead:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get(self, timeout: float) -> Any:
        """The next decoded item, ``END`` after the last, or None if none came within ``timeout`` s."""
        if self._done:
            return END
        try:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if isinstance(item, _Failure):
            self._done = True
            raise item.exc
        if item is END:
            self._done = True
        return item

    def close(self) -> None:
        """Stop taking items; what the thread holds is dropped."""
        self._closed.set()
        while True:  # unblock a put, and free the frames held in the queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(END)
        except BaseException as exc:  # handed to the feed, which raises it in the main thread
            if not self._closed.is_set():
                self._put(_Failure(exc))
        finally:
            close = getattr(self._items, "close", None)
            if callable(close):  # a generator left early: its cleanup (the pool's window) runs now
                with contextlib.suppress(Exception):
                    close()

    def _put(self, item: Any) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=_PUT_POLL_S)
                return True
            except queue.Full:
                continue
        return False
