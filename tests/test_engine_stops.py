"""Engines that do not start, and runs stopped while they start, end at once and leave no process.

Real ``vidcap`` runs with two real vLLM engines (CPU build): one whose engines have no room for
their KV cache (vLLM fails part way through starting them, and used to hang there), one stopped
by SIGTERM while the model loads. Each test has its own time limit, and kills whatever the run
left alive, so that a hang fails the test instead of hanging the suite.
"""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import TINY_ENGINE, write_jsonl
from tests.test_batch_jobs import start_vidcap
from vidcap.errors import StopDuringStart
from vidcap.io.jsonio import loads
from vidcap.procs import held_stops_delivered, new_children_killed_on_error, stop_signals_blocked


@pytest.fixture()
def dp_args(tmp_path: Path, clip_dir: Path, tiny_model: Path) -> list[str]:
    """A two-engine run of a few records on the tiny model (the memory flag comes per test)."""
    records = [{"id": i, "video": str(clip_dir / "a.mp4")} for i in range(4)]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    return [
        "run", str(data), "-o", str(tmp_path / "out.jsonl"), "-m", str(tiny_model),
        "--max-model-len", str(TINY_ENGINE["max_model_len"]), "--enforce-eager", "--max-tokens", "4",
        "--data-parallel-size", "2",
    ]  # fmt: skip


class Watched:
    """A vidcap process and every process seen below it (engines, vLLM's engine cores and
    workers, orphaned or not), so that none can outlive the test unnoticed."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.seen: dict[int, psutil.Process] = {}

    def look(self) -> list[psutil.Process]:
        try:
            found = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            found = []
        for child in found:
            self.seen.setdefault(child.pid, child)
        return found

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it still runs after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.look()
            if self.proc.poll() is not None:
                return self.proc.returncode
            time.sleep(0.2)
        return None

    def survivors(self, grace: float = 5.0) -> list[str]:
        """The processes seen that are still alive ``grace`` seconds after the run ended."""
        deadline = time.monotonic() + grace
        while True:
            alive = [p for p in self.seen.values() if _alive(p)]
            if not alive or time.monotonic() > deadline:
                return [f"{p.pid} {' '.join(p.cmdline())[:80]}" for p in alive]
            time.sleep(0.2)

    def kill_all(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        for proc in self.seen.values():
            if _alive(proc):
                proc.kill()
        self.proc.wait(timeout=30)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.engine
def test_an_engine_without_room_for_its_kv_cache_fails_the_start_with_exit_69(
    tmp_path: Path, dp_args: list[str]
) -> None:
    # On vLLM's CPU build each engine reserves half of this share of RAM, which is less than its
    # process already holds: vLLM finds no room left for the KV cache and gives up mid-start.
    run = Watched(start_vidcap([*dp_args, "--gpu-memory-utilization", "0.02"]))
    try:
        code = run.wait(timeout=480)  # two engines starting on two loaded cores: minutes
        stderr = run.proc.stderr.read() if code is not None else ""
        assert code == 69, f"the run did not end with 69 (exit {code}): {stderr}"
        assert "error: engine " in stderr and " of 2 (" in stderr and ") failed to start: " in stderr, stderr
        assert run.survivors() == []
        summary = loads((tmp_path / "out.jsonl.summary.json").read_bytes())
        assert summary["failed"].startswith("engine "), summary["failed"]
    finally:
        run.kill_all()


@pytest.mark.engine
def test_sigterm_while_the_model_loads_ends_the_run_with_75_and_no_process_left(
    tmp_path: Path, dp_args: list[str]
) -> None:
    run = Watched(start_vidcap([*dp_args, "--gpu-memory-utilization", "0.1"]))
    try:
        deadline = time.monotonic() + 300
        while not any("EngineCore" in _name(p) for p in run.look()):  # vLLM is starting an engine
            assert run.proc.poll() is None, run.proc.stderr.read()
            assert time.monotonic() < deadline, "no vLLM engine core started in 300 s"
            time.sleep(0.2)
        # As SLURM pre-emption does: the signal reaches every process of the job.
        for proc in [psutil.Process(run.proc.pid), *run.look()]:
            if _alive(proc):
                proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = run.wait(timeout=60)
        took = time.monotonic() - signalled
        stderr = run.proc.stderr.read() if code is not None else ""
        assert code == 75, f"exit {code} {took:.0f} s after SIGTERM: {stderr}"
        assert took < 30, f"the run took {took:.0f} s to stop"
        assert "SIGTERM received while loading the model" in stderr, stderr
        assert run.survivors() == []
        summary = loads((tmp_path / "out.jsonl.summary.json").read_bytes())
        assert (summary["interrupted"], summary["failed"], summary["complete"]) == (True, None, False)
    finally:
        run.kill_all()


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.NoSuchProcess:
        return ""


SHIELDED = "import signal, time; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}); time.sleep(60)"


def test_a_held_back_sigterm_is_delivered_while_an_engine_starts() -> None:
    """What unhangs vLLM's failed start: its SIGTERM to a shielded helper becomes a SIGKILL."""
    helper = subprocess.Popen([sys.executable, "-c", SHIELDED])
    try:
        time.sleep(1.0)  # its mask is set
        helper.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            helper.wait(timeout=1.5)  # the shield holds the signal back
        with held_stops_delivered(interval_s=0.1):
            assert helper.wait(timeout=10) == -signal.SIGKILL
    finally:
        helper.kill()
        helper.wait()


def test_a_start_that_raises_leaves_none_of_its_processes() -> None:
    context = multiprocessing.get_context("spawn")
    with pytest.raises(StopDuringStart), new_children_killed_on_error():
        with stop_signals_blocked():
            process = context.Process(target=time.sleep, args=(60,))
            process.start()
        raise StopDuringStart()
    assert process.exitcode == -signal.SIGKILL


# Starts a shielded helper and exits: the helper is orphaned, as vLLM's worker is once vLLM's
# clean-up has killed its engine core.
ORPHANING = (
    "import subprocess, sys, time; "
    f"helper = subprocess.Popen([sys.executable, '-c', {SHIELDED!r}]); print(helper.pid, flush=True); "
    "time.sleep(1.5)"
)


def test_a_start_that_raises_leaves_no_orphan_either() -> None:
    with pytest.raises(StopDuringStart), new_children_killed_on_error(interval_s=0.1):
        parent = subprocess.Popen([sys.executable, "-c", ORPHANING], stdout=subprocess.PIPE, text=True)
        orphan = psutil.Process(int(parent.stdout.readline()))
        parent.wait(timeout=30)
        assert orphan.ppid() != parent.pid  # no longer below this process
        raise StopDuringStart()
    try:
        orphan.wait(timeout=10)
    except psutil.TimeoutExpired:
        orphan.kill()
        pytest.fail("the orphaned helper outlived the start")
