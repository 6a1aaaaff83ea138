"""One writer per output: an exclusive ``flock`` on ``OUTPUT.lock``, held for the whole run.

Why ``fcntl.flock`` on a sidecar file, and not ``filelock`` or the output itself:

* the kernel drops the lock when the last descriptor of the holder is closed, and a dead
  process's descriptors are closed by the kernel, so SIGKILL, a segfault or an OOM kill
  never leave a stale lock (no pid files to guess about);
* the output itself cannot carry the lock: ``--overwrite`` and the JSON-array writer
  replace it by rename, which would leave the lock on an unlinked inode;
* ``filelock``'s Unix lock is the same ``flock`` call, but it hides the descriptor we write
  the holder's pid and host into, and it adds a dependency for ~40 lines.

Where it holds (see the README's "Locking" section): local filesystems; NFS (Linux emulates
``flock`` with whole-file POSIX locks since 2.6.12, coherent across clients, unless mounted
with ``local_lock=flock``/``all``); Lustre mounted with ``-o flock`` (``localflock``: this node
only; ``noflock``: ``flock`` fails, and vidcap warns and runs unlocked); GPFS. A lock that the
filesystem refuses to take is a warning, not a failure: the run goes on without it.

The lock file is removed when the run ends normally; a killed run leaves it behind
(unlocked, with its old pid inside), and the next run simply takes it over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from vidcap.errors import OutputLockedError, VidcapError
from vidcap.io import files, object_lock, staging
from vidcap.io.sidecar import summary_path
from vidcap.io.writer import journal_path

log = logging.getLogger(__name__)

# flock errors that mean "this filesystem does not do locks", not "someone holds it".
_UNSUPPORTED = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}


def lock_path(output: Path) -> Path:
    """The lock file of an output: ``out.jsonl`` -> ``out.jsonl.lock``."""
    return output.with_name(output.name + ".lock")


class OutputLock:
    """An exclusive lock on one output; create it with :func:`acquire_output_lock`."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd
        self.remote: object_lock.ObjectLock | None = None  # an output URL's lock object (io/staging.py)
        if fd is not None:
            # A forked child (vLLM's default start method on GPUs) would share the lock and
            # could keep it after this process dies; children never own the output.
            os.register_at_fork(after_in_child=self._drop_in_child)

    def _drop_in_child(self) -> None:
        if self._fd is not None:  # None once released: the number may be another file's by now
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        """False when the filesystem refused to lock and the run goes on unlocked."""
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file and drop the lock; calling it again does nothing.

        The file is unlinked *while* still locked: a run that opened it just before sees,
        after it gets the lock, that its inode is no longer the one at the path, and retries.
        """
        if self.remote is not None:
            self.remote.release()
            self.remote = None
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)  # closing the last descriptor drops the flock
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    """'pid 123 on host node7, since ...' from a lock file, or a vaguer phrase if unreadable."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return f"pid {info['pid']} on host {info['host']}, since {info['started_at']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a run that has not written its pid yet"


def acquire_output_lock(output: Path) -> OutputLock:
    """Take the exclusive lock of ``output`` at once, or raise :class:`OutputLockedError`.

    Creates the output's folder if needed (VidcapError if it cannot be created or written).
    Writes this process's pid, host and start time into the lock file for the refused run's
    message. Once locked, removes the temp files that killed runs left beside the output.
    """
    path = lock_path(output)
    files.make_parent_folder(output)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise VidcapError(f"cannot write output: {output}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputLockedError(
                f"{output}: another vidcap run is writing this output ({holder}); nothing done"
            ) from None
        except OSError as e:
            os.close(fd)
            if e.errno not in _UNSUPPORTED:
                raise VidcapError(f"cannot lock output: {path}: {e.strerror or e}") from None
            log.warning(
                "cannot lock %s (%s): this filesystem does not support flock here, so a second "
                "run on this output would not be stopped",
                path,
                e.strerror or e,
            )
            return OutputLock(path, None)
        # Locked; but a releasing run may have unlinked the file between our open and flock.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with contextlib.suppress(OSError):  # only for the message of a refused run
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
    # Only a dead writer's temp files can be there now: a live one would hold the lock.
    for written in (output, journal_path(output), summary_path(output)):
        files.remove_stale_temps(written)
    lock = OutputLock(path, fd)
    remote = staging.remote_output(output)
    if remote is not None:  # the stand-in of an output URL: its lock object is the one that counts
        try:
            lock.remote = remote.lock = object_lock.acquire(remote.lock_url, remote.url)
        except BaseException:
            lock.release()
            raise
    return lock
