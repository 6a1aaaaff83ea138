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
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: stopped by SIGTERM/SIGINT; rerun the same command to resume


class VidcapError(Exception):
    """A user-fixable error: the message is one line that names the file or record and what is wrong."""


class RecordError(Exception):
    """A failure confined to one record; the message becomes that record's ``error`` field."""


def one_line(exc: BaseException) -> str:
    """``exc`` as one line for a record's error field: its first message line, with its type
    name when the type is not one of ours (a foreign exception type says where it came from)."""
    lines = str(exc).strip().splitlines()
    message = lines[0].strip() if lines else ""
    if isinstance(exc, RecordError | VidcapError):
        return message or type(exc).__name__
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
