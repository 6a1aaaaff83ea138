"""Helper processes that a job's stop signal does not reach.

SLURM pre-emption signals every process of a job, and Ctrl-C signals the terminal's whole
process group, so vidcap's helper processes (vLLM's engine core and its workers, the decode
workers) get SIGTERM or SIGINT at the same moment as the main process. vLLM's workers then exit
mid-step and the engine dies with a traceback, or its engine core aborts the batch in flight and
the offline ``LLM`` waits for it forever; decode workers would die and fail their records. Only
the main process should decide: it finishes the batch in hand, writes it, then stops its helpers.

This module is also what vidcap's helper processes share besides the shield: how one says why a
process ended (``signal_name``), and how large buffers (decoded frames) travel between processes
through POSIX shared memory (``dumps_shared``/``loads_shared``), with the sweep of the segments a
killed process left. The decode pool (``video/pool.py``) and the data-parallel engines
(``executors/data_parallel.py``) both use them.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Block SIGINT and SIGTERM in this thread while the body starts child processes.

    A child inherits the blocked set (``fork`` and ``exec`` both keep it) and installing a
    handler does not unblock a signal, so the children and their own children never receive
    the job's stop signals; SIGKILL still ends them. This process goes on receiving them: an
    idle thread, started before the block, takes them meanwhile, and Python runs the handlers
    in the main thread as soon as that runs Python code again.
    """
    # Starting multiprocessing's resource tracker unblocks SIGINT and SIGTERM in the calling
    # thread afterwards (bpo-33613), which would end the block at the first child. Once it
    # runs, later starts only check that it is alive.
    resource_tracker.ensure_running()
    done = threading.Event()
    receiver = threading.Thread(target=done.wait, name="vidcap-stop-signals", daemon=True)
    receiver.start()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        done.set()


# -- ending what the shield keeps alive ---------------------------------------------------------
# The shield has a cost: vLLM stops its own helpers with SIGTERM too. When an engine fails while
# starting (e.g. no room for its KV cache), vLLM's engine core sends its worker SIGTERM and waits
# for it to exit; the worker never sees the signal (it stays pending), so the engine core, and
# the engine start waiting for it, hang forever. The functions below end such processes with
# SIGKILL, which no mask holds back. They read /proc (Linux, where vLLM runs); elsewhere they
# find nothing.
_PROC = Path("/proc")
_SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def descendants(pid: int) -> list[int]:
    """The process ids of ``pid``'s children, their children, and so on (not ``pid`` itself)."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.glob("[0-9]*/stat"):
        try:
            text = entry.read_text()
        except OSError:  # it ended meanwhile
            continue
        # "pid (name) state ppid ...": the name may hold spaces and parentheses.
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_masks(pid: int) -> tuple[int, int]:
    """``pid``'s blocked and pending signals, as bit masks ((0, 0) if it is gone)."""
    try:
        with open(_PROC / str(pid) / "status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        return int(fields["SigBlk"], 16), int(fields["ShdPnd"], 16) | int(fields["SigPnd"], 16)
    except (OSError, KeyError, ValueError):
        return 0, 0


def blocks_stop_signal(pid: int) -> bool:
    """Whether ``pid`` holds SIGTERM back: one of vidcap's shielded helpers."""
    return bool(_signal_masks(pid)[0] & _SIGTERM_BIT)


def holds_stop_signal(pid: int) -> bool:
    """Whether ``pid`` blocks SIGTERM and one is pending: someone asked it to stop and the
    shield held the request back."""
    blocked, pending = _signal_masks(pid)
    return bool(blocked & pending & _SIGTERM_BIT)


def kill_processes(pids: Iterable[int]) -> None:
    """SIGKILL each of ``pids`` that still exists."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def kill_process_group(pgid: int) -> None:
    """SIGKILL every process of the group ``pgid`` (nothing if the group is gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@contextlib.contextmanager
def held_stops_delivered(interval_s: float = 0.5) -> Iterator[None]:
    """While the body starts an engine, SIGKILL any process below this one that holds a SIGTERM
    back (see above): what its sender meant, delivered. vLLM then sees its helper gone and its
    start fails with its own error instead of hanging.

    Only while starting: in a run, a pending SIGTERM may be the job's stop signal, which the
    helpers must outlive until the records in flight are written. At start there is nothing
    to finish, and the main process ends the start on a stop signal anyway.
    """
    done = threading.Event()

    def watch() -> None:
        while not done.wait(interval_s):
            kill_processes(pid for pid in descendants(os.getpid()) if holds_stop_signal(pid))

    watcher = threading.Thread(target=watch, name="vidcap-held-stops", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


@contextlib.contextmanager
def new_children_killed_on_error(interval_s: float = 0.5) -> Iterator[None]:
    """If the body raises (a failure, or a stop signal while an engine starts), SIGKILL every
    process that appeared below this one while it ran, orphaned ones included.

    Without this, an engine that never finished starting keeps its processes, and they
    (shielded, see above) outlive the run. They are noted as they appear (every
    ``interval_s``), because vLLM's own clean-up on the way out kills its engine core first,
    and the engine core's workers, orphaned, are no longer found below this process.
    """
    me = os.getpid()
    before = set(descendants(me))
    seen: dict[int, str] = {}  # pid -> its start time: a pid used again is not the same process
    done = threading.Event()

    def note() -> None:
        for pid in descendants(me):
            if pid not in before and pid not in seen:
                seen[pid] = _start_time(pid)

    def watch() -> None:
        while not done.wait(interval_s):
            note()

    watcher = threading.Thread(target=watch, name="vidcap-start-processes", daemon=True)
    watcher.start()
    try:
        yield
    except BaseException:
        done.set()
        watcher.join()
        note()
        kill_processes(pid for pid, started in seen.items() if started and _start_time(pid) == started)
        for process in multiprocessing.active_children():  # reap ours: no zombie is left
            if process.pid in seen:
                process.join(5)
        raise
    finally:
        done.set()


def _start_time(pid: int) -> str:
    """When ``pid`` started (clock ticks since boot, from /proc), or "" if it is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return ""
    return text[text.rindex(")") + 2 :].split()[19]


def signal_name(exitcode: int | None) -> str | None:
    """The name of the signal that ended a process (``multiprocessing``'s negative exit code),
    ``"signal N"`` for one without a name, or None when it exited by itself (or runs still)."""
    if exitcode is None or exitcode >= 0:
        return None
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process
        return True
    return True


# -- handing large buffers over through shared memory --------------------------------------------
# A message is pickled with protocol 5; its large buffers (numpy arrays of 1 MiB or more: decoded
# frames) travel out of band through a file of its own in /dev/shm, and the pipe carries only the
# file's name and the pickle's small rest. The receiver maps the file, unlinks its name at once and
# unpickles the arrays as views of the mapping: no copy. The pages live as long as an array refers
# to them and are freed with the last one. Where /dev/shm is missing or full, the message goes
# through the pipe whole. Segments are named ``vidcap-<kind>-<owner pid>-...`` (``segment_name``),
# so that a killed owner's segments can be found and removed (``remove_orphan_segments``).
SHM_DIR = Path("/dev/shm")  # POSIX shared memory on Linux: what shm_open itself opens
_SHM_PREFIX = "vidcap-"
_SHM_MIN_BYTES = 1 << 20  # smaller buffers stay in the pipe: a segment costs more than a copy
_SHM_ALIGN = 64  # each buffer starts on a cache line (and is aligned for any dtype)
ORPHAN_AGE_S = 600.0  # a segment of a dead owner this old is an orphan (see remove_orphan_segments)


@dataclass(frozen=True)
class _Shared:
    """A message whose large buffers wait in the shared-memory segment ``name``, at ``spans``
    (offset, length); ``data`` is the pickle of the rest."""

    name: str
    spans: tuple[tuple[int, int], ...]
    data: bytes


def segment_name(kind: str, owner_pid: int, *keys: int) -> str:
    """``vidcap-<kind>-<owner_pid>-<key>-...``: a segment the owner can find again (to unlink it
    when the process that should have taken it died), and that a sweep can tell is an orphan."""
    return "-".join([f"{_SHM_PREFIX}{kind}", str(owner_pid), *map(str, keys)])


def unlink_segment(name: str) -> None:
    """Remove segment ``name`` (nothing if it is gone: taken, or never written)."""
    with contextlib.suppress(OSError):
        os.unlink(SHM_DIR / name)


def dumps_shared(message: Any, segment: str | None) -> bytes:
    """Pickle ``message`` for a pipe (``Connection.send_bytes``); its buffers of 1 MiB or more go
    into the shared memory file ``segment`` (None: everything in the pipe). Falls back to the pipe
    when /dev/shm fails. The receiver reads it with ``loads_shared``."""
    if segment is None:
        return ForkingPickler.dumps(message, protocol=5)
    buffers: list[pickle.PickleBuffer] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        if buffer.raw().nbytes < _SHM_MIN_BYTES:
            return True  # in band
        buffers.append(buffer)
        return False

    stream = io.BytesIO()
    ForkingPickler(stream, 5, True, out_of_band).dump(message)  # positional: it takes no keywords
    if not buffers:
        return stream.getvalue()
    spans, offset = [], 0
    for buffer in buffers:
        spans.append((offset, buffer.raw().nbytes))
        offset += -(-buffer.raw().nbytes // _SHM_ALIGN) * _SHM_ALIGN
    try:
        # Written with pwrite, not through a mapping: a full /dev/shm is then an error (ENOSPC)
        # instead of a SIGBUS.
        fd = os.open(SHM_DIR / segment, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, offset)
            for buffer, (start, _) in zip(buffers, spans, strict=True):
                view = buffer.raw()
                while view.nbytes:
                    written = os.pwrite(fd, view, start)
                    view, start = view[written:], start + written
        finally:
            os.close(fd)
    except OSError:
        unlink_segment(segment)
        return ForkingPickler.dumps(message, protocol=5)
    return ForkingPickler.dumps(_Shared(segment, tuple(spans), stream.getvalue()), protocol=5)


def loads_shared(data: bytes) -> Any:
    """The message ``dumps_shared`` pickled (or any pickle ``Connection.send`` made). A message in
    shared memory is mapped, its segment's name unlinked (the mapping stays valid), and its
    arrays unpickled as views of the mapping: no copy."""
    message = ForkingPickler.loads(data)
    if not isinstance(message, _Shared):
        return message
    path = SHM_DIR / message.name
    try:
        fd = os.open(path, os.O_RDWR)
        try:
            mapping = mmap.mmap(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
    finally:
        unlink_segment(message.name)
    view = memoryview(mapping)
    return pickle.loads(message.data, buffers=[view[start : start + size] for start, size in message.spans])


def remove_orphan_segments(folder: Path = SHM_DIR, min_age_s: float = ORPHAN_AGE_S) -> None:
    """Unlink the segments (``segment_name``) of owners that were killed (SIGKILL to the whole job
    kills what would have unlinked them): those whose owner process no longer exists.

    Only those over ``min_age_s`` old: a live segment is taken within moments, and a process
    of another PID namespace sharing /dev/shm (containers of one pod) would look dead.
    """
    with contextlib.suppress(OSError):
        for path in folder.glob(f"{_SHM_PREFIX}*-*"):
            fields = path.name[len(_SHM_PREFIX) :].split("-")
            if len(fields) < 2 or not fields[1].isdigit():
                continue
            with contextlib.suppress(OSError):
                old = time.time() - path.stat().st_mtime > min_age_s
                if old and not alive(int(fields[1])):
                    path.unlink()
