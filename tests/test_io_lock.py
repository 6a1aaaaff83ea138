"""The output lock (io/lock.py): one holder at a time, named when refused, gone when its process dies."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vidcap.errors import EXIT_LOCKED, OutputLockedError
from vidcap.io.lock import acquire_output_lock, lock_path


def hold_lock_in_child(output: Path) -> subprocess.Popen[str]:
    """A separate process that takes the lock, says so, and sleeps."""
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from vidcap.io.lock import acquire_output_lock
        lock = acquire_output_lock(Path({str(output)!r}))
        print("locked", flush=True)
        time.sleep(600)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    return child


def test_a_second_holder_is_refused_with_the_first_ones_pid_and_host(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    child = hold_lock_in_child(out)
    try:
        with pytest.raises(OutputLockedError) as info:
            acquire_output_lock(out)
        message = str(info.value)
        assert message.startswith(f"{out}: another vidcap run is writing this output")
        assert f"pid {child.pid} on host {socket.gethostname()}" in message
        assert "\n" not in message
        assert info.value.exit_code == EXIT_LOCKED == 73
    finally:
        child.kill()
        child.wait()


def test_sigkill_leaves_no_stale_lock(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    child = hold_lock_in_child(out)
    child.send_signal(signal.SIGKILL)
    child.wait()
    # The dead holder's file is still there, with its pid: the kernel dropped the lock anyway.
    assert json.loads(lock_path(out).read_text())["pid"] == child.pid
    lock = acquire_output_lock(out)
    assert lock.held
    assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
    lock.release()
    assert not lock_path(out).exists()  # a normal end removes the file


def test_a_forked_child_does_not_keep_the_lock_after_its_parent_dies(tmp_path: Path) -> None:
    """vLLM forks its engine on GPUs: an orphaned child must not hold the output."""
    out = tmp_path / "out.jsonl"
    code = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from vidcap.io.lock import acquire_output_lock
        lock = acquire_output_lock(Path({str(out)!r}))
        child = os.fork()
        if child == 0:
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 1)  # let the test's pipe close when the parent exits
            os.dup2(devnull, 2)
            time.sleep(60)
            os._exit(0)
        print(child, flush=True)
        os._exit(0)  # dies holding the lock, as if killed: no release
        """
    )
    parent = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    child = int(parent.stdout)
    try:
        os.kill(child, 0)  # the forked child is still alive...
        with acquire_output_lock(out):  # ...and holds no lock
            pass
    finally:
        os.kill(child, signal.SIGKILL)


def test_lock_is_exclusive_within_one_process_too(tmp_path: Path) -> None:
    """flock belongs to the open file: a second open in the same process is a second holder."""
    out = tmp_path / "sub" / "out.json"
    with acquire_output_lock(out) as lock:
        assert (tmp_path / "sub").is_dir()  # the output's folder is created for the lock
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}"):
            acquire_output_lock(out)
        lock.release()
        with acquire_output_lock(out):
            pass


def test_a_killed_writers_temp_files_are_removed_once_locked(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    stale = [
        tmp_path / ".out.json.tmp-123-abcd",
        tmp_path / ".out.json.partial.jsonl.tmp-123-ef01",
        tmp_path / ".out.json.summary.json.tmp-9-0000",
    ]
    kept = [tmp_path / ".other.json.tmp-1-aaaa", tmp_path / "out.json"]
    for path in stale + kept:
        path.write_text("x")
    with acquire_output_lock(out):
        assert [p.exists() for p in stale] == [False, False, False]
        assert all(p.exists() for p in kept)


def test_a_filesystem_without_flock_warns_and_runs_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Lustre mounted with -o noflock: flock fails with ENOSYS; the run is not refused for it."""

    def no_flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    out = tmp_path / "out.jsonl"
    with caplog.at_level(logging.WARNING, logger="vidcap"):
        lock = acquire_output_lock(out)
    assert not lock.held
    assert "cannot lock" in caplog.text and "would not be stopped" in caplog.text
    lock.release()
