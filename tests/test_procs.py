"""Helper processes never see the job's stop signals; the main process still does."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

STOP = {signal.SIGINT, signal.SIGTERM}

# Run in a fresh interpreter: multiprocessing's resource tracker is not running yet there,
# and starting it is what used to undo the block.
SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing as mp, os, signal, sys, time
    from vidcap.procs import stop_signals_blocked

    def masks():
        with open(f"/proc/{os.getpid()}/status") as status:
            fields = dict(line.split(":", 1) for line in status)
        return int(fields["SigBlk"], 16)

    def child(queue):
        grandchild = mp.get_context("spawn").Process(target=report, args=(queue,))
        grandchild.start()
        grandchild.join()
        queue.put(("child", masks()))

    def report(queue):
        queue.put(("grandchild", masks()))

    if __name__ == "__main__":
        handled = []
        signal.signal(signal.SIGTERM, lambda signum, frame: handled.append(signum))
        with stop_signals_blocked():
            queue = mp.get_context("spawn").Queue()
            proc = mp.get_context("spawn").Process(target=child, args=(queue,))
            proc.start()
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + 10
            while not handled and time.monotonic() < deadline:
                time.sleep(0.01)
            handled_in_block = bool(handled)
        proc.join()
        seen = dict(queue.get(timeout=10) for _ in range(2))
        after = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        print(json.dumps({**seen, "handled_in_block": handled_in_block, "after": sorted(after)}))
    """
)


def blocked(mask: int) -> set[signal.Signals]:
    return {s for s in STOP if mask & (1 << (s - 1))}


def test_children_and_grandchildren_block_stop_signals_and_the_parent_still_gets_them(tmp_path: Path) -> None:
    script = tmp_path / "block.py"  # a file: spawned children import their target from it
    script.write_text(SCRIPT)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert blocked(report["child"]) == STOP
    assert blocked(report["grandchild"]) == STOP
    assert report["handled_in_block"], "a SIGTERM sent during the block must still reach the handler"
    assert report["after"] == [], "the block must end with the context"


def test_engine_processes_ignore_the_jobs_stop_signals(vllm_engine) -> None:
    """vLLM's engine core and workers must outlive a SIGTERM/SIGINT sent to the whole job."""
    cores = [
        psutil.Process(p.pid)
        for p in vllm_engine._llm.llm_engine.engine_core.resources.engine_manager.processes
    ]
    helpers = cores + [child for core in cores for child in core.children(recursive=True)]
    assert any("EngineCore" in p.name() for p in helpers), helpers
    for proc in helpers:
        with open(f"/proc/{proc.pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status)
        shielded = int(fields["SigBlk"], 16) | int(fields["SigIgn"], 16)
        assert blocked(shielded) == STOP, f"{proc.pid} {proc.cmdline()} can be stopped by the job's signal"
