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
import signal
import threading
from collections.abc import Iterator
from multiprocessing import resource_tracker

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
