"""The two kinds of failure vidcap tells apart.

``VidcapError`` is a mistake the user can fix (a bad flag, a malformed input line, an
unwritable output folder): the run stops before doing more work, the CLI prints one line
and exits with ``EXIT_USAGE``. ``RecordError`` is a problem with one record (a missing or
corrupt video, a prompt too long for the model): that record gets ``status: error`` with
the message, and the run goes on. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RECORDS_FAILED = 1
EXIT_USAGE = 2
EXIT_ENGINE_FAILED = 69  # EX_UNAVAILABLE: the engine (model) could not be started; nothing captioned
EXIT_INTERNAL = 70
EXIT_LOCKED = 73  # EX_CANTCREAT: another run holds the output's lock; this one did nothing
EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: stopped by SIGTERM/SIGINT; rerun the same command to resume


class VidcapError(Exception):
    """A user-fixable error: the message is one line that names the file or record and what is wrong.

    ``exit_code`` is what the CLI exits with (subclasses tell the other stops apart).
    """

    exit_code = EXIT_USAGE


class OutputLockedError(VidcapError):
    """Another run holds the output: a cron wrapper may treat this exit code as "already running"."""

    exit_code = EXIT_LOCKED


class EngineStartError(VidcapError):
    """The engine could not load the model or start: a failure, not an interruption."""

    exit_code = EXIT_ENGINE_FAILED


class EngineDiedError(VidcapError):
    """The run's engine died mid-run (with data parallelism: every engine, as a dead engine's
    requests fail and the run goes on while one is left): a failure; the records done are kept
    and a rerun resumes."""

    exit_code = EXIT_INTERNAL


class FailedWhileStoppingError(VidcapError):
    """The run failed while it was stopping for a signal: the failure, not the stop, is reported."""

    exit_code = EXIT_INTERNAL


class StopDuringStart(BaseException):
    """A stop signal came while the engine was starting: the start is abandoned at once (a model
    can take minutes to load) and the run ends interrupted (exit 75), nothing captioned.

    A BaseException, as KeyboardInterrupt: the engine start's error handling (vLLM's, and
    vidcap's one-line load errors) must not take it for a failure to load."""

    exit_code = EXIT_INTERRUPTED


class RecordError(Exception):
    """A failure confined to one record; the message becomes that record's ``error`` field."""


def one_line(
    error: BaseException | str,
    *,
    expected: tuple[type[BaseException], ...] = (RecordError, VidcapError),
) -> str:
    """``error`` as one line for a record's error field or a log line.

    A text has its lines joined by single spaces. An exception gives its message so joined,
    after its type name unless it is one of the ``expected`` types (ours by default): a foreign
    exception type says where it came from.
    """
    if isinstance(error, str):
        return " ".join(line.strip() for line in error.splitlines() if line.strip())
    message = one_line(str(error))
    if isinstance(error, expected):
        return message or type(error).__name__
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


# An engine's message is cut here: a record's error is one short line, not a dump.
ENGINE_ERROR_CHARS = 300
# Where an array's repr starts in a message (numpy's ``array([...`` or a bare ``[[[``): what
# follows is data, not a reason.
_DATA_MARKERS = ("array(", "tensor(", "[[[", "[[ ")


def engine_error(error: BaseException | str) -> str:
    """``one_line(error)`` for a record's error field when an engine raised it: any repr of an
    array (a frame, a tensor) it quotes is left out, and the line is cut to ``ENGINE_ERROR_CHARS``."""
    text = one_line(error)
    cuts = [text.find(marker) for marker in _DATA_MARKERS if marker in text]
    if cuts:
        text = text[: min(cuts)].rstrip(" :=,([") + " ... (data left out)"
    if len(text) > ENGINE_ERROR_CHARS:
        text = text[: ENGINE_ERROR_CHARS - 4].rstrip() + " ..."
    return text
