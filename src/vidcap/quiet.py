"""Keep the terminal for vidcap's own lines: other libraries' output goes to a log file.

vLLM, torch, transformers and Triton print notices and warnings while a model loads, and
many come from vLLM's engine processes (spawned children writing straight to file
descriptors 1 and 2), so filtering Python's logging in this process is not enough. While a
``capture_output(log_path)`` block runs, descriptors 1 and 2 of this process point at the
log file, so everything written to them, by this process, its libraries and every child
process it starts, lands there. vidcap's own lines go through ``terminal_out()`` and
``terminal_err()``, which during a capture are copies of the original descriptors.

Outside a capture both functions return ``sys.stdout``/``sys.stderr``, so code that prints
through them behaves the same in library use and in tests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from vidcap.errors import VidcapError

# Defaults for the libraries' own verbosity while captured: warnings are worth keeping in the
# log, vLLM's INFO lines (one per engine step and setting) would only bury them.
_QUIET_ENV = {"VLLM_LOGGING_LEVEL": "WARNING", "TRANSFORMERS_VERBOSITY": "warning"}


@dataclass
class _Terminal:
    """The streams that reach the user's terminal while descriptors 1 and 2 are captured."""

    out: TextIO
    err: TextIO


_terminal: _Terminal | None = None


def terminal_out() -> TextIO:
    """Where vidcap's results go: the real stdout, even while other output is captured."""
    return _terminal.out if _terminal is not None else sys.stdout


def terminal_err() -> TextIO:
    """Where vidcap's messages go: the real stderr, even while other output is captured."""
    return _terminal.err if _terminal is not None else sys.stderr


def log_path_for(output: Path) -> Path:
    """The capture log beside an output file: ``captions.jsonl`` -> ``captions.jsonl.log``."""
    return output.with_name(output.name + ".log")


@dataclass
class Capture:
    """What a capture block wrote: the log file and how many bytes this run added to it."""

    path: Path
    captured_bytes: int = 0

    def note(self) -> str | None:
        """The one line that names the log, or None when nothing was captured."""
        if not self.captured_bytes:
            return None
        return f"vidcap: other libraries' messages are in {self.path} (--verbose shows them here)"


@contextlib.contextmanager
def capture_output(log_path: Path, *, enabled: bool = True, release: bool = True) -> Iterator[Capture]:
    """Send descriptors 1 and 2 (this process and its children) to ``log_path`` for the block.

    The log is appended to, after a header line naming the run's start, so that a resumed
    run keeps the earlier runs' messages; a new log that caught nothing is removed. With
    ``enabled`` False nothing is redirected (the ``--verbose`` mode) and the Capture stays empty.

    With ``release`` False the descriptors stay on the log after the block (and
    ``terminal_out``/``terminal_err`` on the terminal), for a command that ends soon after:
    what libraries print while the process winds down (vLLM's engine monitor thread noticing
    its stopped engine, exit handlers) then lands in the log too, not among vidcap's lines.
    """
    global _terminal
    capture = Capture(log_path)
    if not enabled or _terminal is not None:  # nested: the outer capture already holds the fds
        yield capture
        return
    for name, value in _QUIET_ENV.items():
        os.environ.setdefault(name, value)
    existed = log_path.exists()
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise VidcapError(f"cannot write the log file {log_path}: {exc.strerror}") from None
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    os.write(log_fd, f"--- vidcap {' '.join(sys.argv[1:])} ({stamp})\n".encode())
    start = os.fstat(log_fd).st_size
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}  # not inherited: children only see the log
    out = open(saved[1], "w", encoding="utf-8", errors="backslashreplace", buffering=1)  # noqa: SIM115
    err = open(saved[2], "w", encoding="utf-8", errors="backslashreplace", buffering=1)  # noqa: SIM115
    # A terminal stays a terminal for the progress bar: isatty() asks the saved descriptor.
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    _terminal = _Terminal(out=out, err=err)
    try:
        yield capture
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        out.flush()
        err.flush()
        if release:
            _terminal = None
            os.dup2(saved[1], 1)
            os.dup2(saved[2], 2)
            out.close()  # closes saved[1]
            err.close()
        capture.captured_bytes = max(os.fstat(log_fd).st_size - start, 0)
        os.close(log_fd)
        if not capture.captured_bytes and not existed:  # a log of nothing but its header
            log_path.unlink(missing_ok=True)


class TerminalHandler(logging.Handler):
    """Logs vidcap's own messages as ``vidcap: ...`` (``vidcap: warning: ...``) on the terminal.

    It looks up the stream at each message, so a message logged during a capture still
    reaches the user.
    """

    def emit(self, record: logging.LogRecord) -> None:
        """Write one formatted line to the terminal's stderr."""
        try:
            level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
            stream = terminal_err()
            stream.write(f"vidcap: {level}{record.getMessage()}\n")
            stream.flush()
        except Exception:  # a logging failure must not end the run
            self.handleError(record)
