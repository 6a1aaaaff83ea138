"""Progress on stderr: a Rich bar on a terminal, plain timestamped lines in logs.

stdout stays free for results; cron and SLURM logs get lines like
``2026-11-25 10:04:11 vidcap: 120/500 records (24%), 1.9 videos/s, ETA 0:03:20, 2 errors``
every ``interval_s`` seconds instead of terminal control codes. A slow step before the records
(loading the model: seconds to minutes) shows that the run is alive: its elapsed time on a
terminal, ``loading the model: 20 s`` every ``interval_s`` seconds in logs.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol, TextIO


class Progress(Protocol):
    """What the runner reports to."""

    def start(self, total: int, *, done: int = 0, description: str = "") -> None:
        """Begin; ``done`` records are already finished (resumed)."""

    def advance(self, records: int, *, videos: int, errors: int, windows: int = 0) -> None:
        """``records`` more records are written, holding ``videos`` videos (and ``windows``
        timed windows, with ``--window``); ``errors`` so far."""

    def stop(self) -> None:
        """End the display (idempotent)."""

    def waiting(self, message: str) -> None:
        """A slow step began (``message``, e.g. "loading the model"): show it is alive until
        ``done_waiting``."""

    def done_waiting(self) -> None:
        """The slow step ended (idempotent)."""


def make_progress(
    stream: TextIO | None = None, *, enabled: bool = True, interval_s: float = 10.0
) -> Progress:
    """A Rich bar when ``stream`` is a terminal, plain lines otherwise, nothing if not enabled."""
    stream = stream or sys.stderr
    if not enabled:
        return NullProgress()
    if stream.isatty():
        return RichProgress(stream)
    return LineProgress(stream, interval_s=interval_s)


class NullProgress:
    """Shows nothing (``--quiet``, library use)."""

    def start(self, total: int, *, done: int = 0, description: str = "") -> None:
        """Nothing to show."""

    def advance(self, records: int, *, videos: int, errors: int, windows: int = 0) -> None:
        """Nothing to show."""

    def stop(self) -> None:
        """Nothing to stop."""

    def waiting(self, message: str) -> None:
        """Nothing to show."""

    def done_waiting(self) -> None:
        """Nothing to stop."""


class _Heartbeat:
    """Calls ``beat(seconds elapsed)`` every ``interval_s`` seconds, in a thread, until stopped."""

    def __init__(self, beat: Callable[[float], None], interval_s: float) -> None:
        self._done = threading.Event()
        started = time.monotonic()

        def run() -> None:
            while not self._done.wait(interval_s):
                beat(time.monotonic() - started)

        self._thread = threading.Thread(target=run, name="vidcap-progress-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


class _Rate:
    """Records and videos per second since start, and the ETA."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.total = self.done = self.videos = self.errors = self.windows = 0
        self.done_at_start = 0

    def eta(self) -> str:
        elapsed = time.monotonic() - self.started
        new = self.done - self.done_at_start
        if new <= 0 or elapsed <= 0:
            return "?"
        return str(timedelta(seconds=round((self.total - self.done) * elapsed / new)))

    def videos_per_s(self) -> float:
        return self.videos / max(time.monotonic() - self.started, 1e-9)

    def add(self, records: int, videos: int, errors: int, windows: int) -> None:
        self.done, self.videos, self.errors = self.done + records, self.videos + videos, errors
        self.windows += windows

    def windows_text(self) -> str:
        """``, 57 windows`` once windowed records (``--window``) are written, else nothing."""
        return f", {self.windows} windows" if self.windows else ""


class LineProgress:
    """Plain, timestamped lines at most every ``interval_s`` seconds, and one at the end."""

    def __init__(self, stream: TextIO, *, interval_s: float = 10.0) -> None:
        self.stream = stream
        self.interval_s = interval_s
        self.rate = _Rate()
        self._last = 0.0
        self._stopped = False
        self._printed: str | None = None  # the counts of the last status line, not to print it twice
        self._heartbeat: _Heartbeat | None = None

    def waiting(self, message: str) -> None:
        """Print ``message: N s`` every ``interval_s`` seconds until ``done_waiting``."""
        self.done_waiting()
        self._heartbeat = _Heartbeat(lambda s: self._print(f"{message}: {s:.0f} s"), self.interval_s)

    def done_waiting(self) -> None:
        """Stop the ``waiting`` lines."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None

    def start(self, total: int, *, done: int = 0, description: str = "") -> None:
        """Print the starting line."""
        self.rate = _Rate()
        self.rate.total, self.rate.done, self.rate.done_at_start = total, done, done
        self._last = time.monotonic()
        resumed = f", {done} already done" if done else ""
        self._print(f"{description or 'captioning'}: {total} records{resumed}")

    def advance(self, records: int, *, videos: int, errors: int, windows: int = 0) -> None:
        """Count and print a line if the interval has passed."""
        self.rate.add(records, videos, errors, windows)
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._print_status()

    def stop(self) -> None:
        """Print the final status line once (not when the last ``advance`` printed it)."""
        self.done_waiting()
        if not self._stopped:
            self._stopped = True
            self._print_status(final=True)

    def _print_status(self, *, final: bool = False) -> None:
        r = self.rate
        counts = f"{r.done}/{r.total} records ({100 * r.done // max(r.total, 1)}%){r.windows_text()}"
        if final and self._printed == counts:
            return
        self._printed = counts
        self._print(f"{counts}, {r.videos_per_s():.2f} videos/s, ETA {r.eta()}, {r.errors} errors")

    def _print(self, message: str) -> None:
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} vidcap: {message}", file=self.stream, flush=True)


class RichProgress:
    """A Rich progress bar: records done/total, videos/s, errors, ETA."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichBar

        self.rate = _Rate()
        self._bar = RichBar(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[windows]}{task.fields[speed]} videos/s"),  # "57 windows, " with --window
            TextColumn("[red]{task.fields[errors]} errors"),
            TimeRemainingColumn(),
            console=Console(file=stream),
            transient=False,
        )
        self._task = None
        self._stopped = False
        self._stream = stream
        self._wait: Any = None

    def waiting(self, message: str) -> None:
        """A spinner, ``message`` and the time elapsed, on one line erased by ``done_waiting``."""
        from rich.console import Console
        from rich.progress import Progress as RichBar
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self.done_waiting()
        self._wait = RichBar(
            SpinnerColumn(),
            TextColumn("vidcap: {task.description}"),
            TimeElapsedColumn(),
            console=Console(file=self._stream),
            transient=True,
            # What libraries print while the model loads stays where it goes (the log): Rich
            # would otherwise take over sys.stdout/sys.stderr and show it above the line.
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._wait.start()
        self._wait.add_task(message, total=None)

    def done_waiting(self) -> None:
        """Erase the ``waiting`` line."""
        if self._wait is not None:
            self._wait.stop()
            self._wait = None

    def start(self, total: int, *, done: int = 0, description: str = "") -> None:
        """Show the bar."""
        self.rate = _Rate()
        self.rate.total, self.rate.done, self.rate.done_at_start = total, done, done
        self._bar.start()
        self._task = self._bar.add_task(
            description or "captioning", total=total, completed=done, speed="0.00", errors=0, windows=""
        )

    def advance(self, records: int, *, videos: int, errors: int, windows: int = 0) -> None:
        """Move the bar."""
        r = self.rate
        r.add(records, videos, errors, windows)
        if self._task is not None:
            speed = f"{r.videos_per_s():.2f}"
            windows_text = f"{r.windows} windows, " if r.windows else ""
            self._bar.update(self._task, advance=records, speed=speed, errors=errors, windows=windows_text)

    def stop(self) -> None:
        """Leave the final bar on screen."""
        self.done_waiting()
        if not self._stopped:
            self._stopped = True
            self._bar.stop()
