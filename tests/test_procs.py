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


def test_segments_of_killed_owners_are_swept_once_old(tmp_path: Path) -> None:
    """The data-parallel engines' frame segments and the decode pool's are swept alike: those of
    a dead owner, once old (a young one may be another PID namespace's); live owners' and other
    files stay."""
    import os
    import time

    from vidcap.procs import remove_orphan_segments, segment_name

    dead = subprocess.Popen(["true"])
    dead.wait()
    old = [segment_name("frames", dead.pid, 3), segment_name("pool", dead.pid, 0, 5)]
    young, live = segment_name("frames", dead.pid, 4), segment_name("frames", os.getpid(), 0)
    kept = [young, live, "psm_other", "vidcap-x"]
    for name in old + kept:
        (tmp_path / name).write_bytes(b"x")
    an_hour_ago = time.time() - 3600
    for name in [*old, live, "psm_other", "vidcap-x"]:
        os.utime(tmp_path / name, (an_hour_ago, an_hour_ago))
    remove_orphan_segments(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_a_message_in_shared_memory_comes_back_whole_and_leaves_no_segment(tmp_path: Path) -> None:
    import os

    import numpy as np

    from vidcap.procs import SHM_DIR, dumps_shared, loads_shared, segment_name

    big = np.arange(1 << 19, dtype=np.int32)  # 2 MiB: out of band
    small = np.arange(10)
    name = segment_name("test", os.getpid(), 0)
    data = dumps_shared(("submit", [big, small]), name)
    assert (SHM_DIR / name).exists() and len(data) < 1 << 16  # the pipe carries only the rest
    kind, (got_big, got_small) = loads_shared(data)
    assert kind == "submit" and np.array_equal(got_big, big) and np.array_equal(got_small, small)
    assert not (SHM_DIR / name).exists()  # unlinked on receipt; the arrays keep the pages
