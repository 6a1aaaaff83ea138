"""Helper processes that a job's stop signal does not reach.

SLURM pre-emption signals every process of a job, and Ctrl-C signals the terminal's whole
process group, so vidcap's helper processes (vLLM's engine core and its workers, the decode
workers) get SIGTERM or SIGINT at the same moment as the main process. vLLM's workers then exit
mid-step and the engine dies with a traceback, or its engine core aborts the batch in flight and
the offline ``LLM`` waits for it forever; decode workers would die and fail their records. Only
the main process should decide: it finishes the batch in hand, writes it, then stops its helpers.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from multiprocessing import resource_tracker
from pathlib import Path

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
