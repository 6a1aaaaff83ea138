"""A real Ray cluster of two nodes on this machine, started with ``ray start`` as a user would.

The head and the worker node are each ``--num-cpus 1`` with a small object store (the machine is
small and shared). Every process of the cluster (its daemons, the workers they start and what
those start: vLLM's engine processes) is found from the cluster's own temp folder and killed
when the cluster stops, so nothing is left behind; ``kill_worker_node`` SIGKILLs the worker node's
whole process tree at once, as a node that is lost.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from vidcap.procs import descendants

_OBJECT_STORE_BYTES = 80 * 1024 * 1024
# Ray turns token authentication on by itself for local clusters once a token file exists; the
# test cluster runs without it, and so do the runs that connect to it (same variable).
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _pids_with(text: str) -> list[int]:
    """Processes whose command line holds ``text``."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in entry.read_bytes():
                pids.append(int(entry.parent.name))
        except (OSError, ValueError):
            continue
    return pids


def _pids_holding(folder: Path) -> list[int]:
    """Processes with a file open under ``folder``."""
    prefix = str(folder) + "/"
    pids = []
    for fds in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd).startswith(prefix) for fd in fds.iterdir()):
                pids.append(int(fds.parent.name))
        except (OSError, ValueError):  # ended meanwhile, or not ours to read
            continue
    return pids


def _kill_tree(roots: list[int]) -> None:
    pids = set(roots)
    for root in roots:
        pids.update(descendants(root))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class LocalRay:
    """A started two-node cluster: ``address`` for ``--ray-address``; ``env`` for its clients."""

    temp_dir: Path
    address: str
    worker_port: int
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls) -> LocalRay:
        """``ray start --head``, then ``ray start --address`` for a worker node; both 1 CPU."""
        # Short: Ray's unix sockets live under it, and socket paths are limited to 107 bytes.
        temp_dir = Path(tempfile.mkdtemp(prefix="vr", dir="/tmp"))
        port, worker_port = _free_port(), _free_port()
        env = {**os.environ, **ENV}
        cluster = cls(temp_dir, f"127.0.0.1:{port}", worker_port, env)
        common = [
            "--num-cpus=1",
            f"--object-store-memory={_OBJECT_STORE_BYTES}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ]
        try:
            head = [_ray_cli(), "start", "--head", f"--port={port}", "--include-dashboard=false", *common]
            subprocess.run(head, env=env, check=True, capture_output=True, timeout=300)
            worker = [
                _ray_cli(),
                "start",
                f"--address={cluster.address}",
                f"--node-manager-port={worker_port}",
                *common,
            ]
            subprocess.run(worker, env=env, check=True, capture_output=True, timeout=300)
            cluster.wait_nodes(2)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def wait_nodes(self, count: int, timeout: float = 120) -> None:
        """Wait until the cluster counts ``count`` alive nodes."""
        script = "import ray; ray.init(address='auto'); print(sum(n['Alive'] for n in ray.nodes()))"
        deadline = time.monotonic() + timeout
        while True:
            done = subprocess.run(
                [sys.executable, "-c", script],
                env={**self.env, "RAY_ADDRESS": self.address},
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(count)]:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Ray cluster has not {count} nodes: {done.stdout} {done.stderr}")
            time.sleep(2)

    def worker_node_pids(self) -> list[int]:
        """The worker node's raylet (its workers and agents are its descendants)."""
        ours = set(self._cluster_pids())
        return [pid for pid in _pids_with(f"--node_manager_port={self.worker_port}") if pid in ours]

    def kill_worker_node(self) -> None:
        """SIGKILL the worker node's raylet and everything below it at once: a lost node."""
        roots = self.worker_node_pids()
        if not roots:
            raise RuntimeError("no worker node raylet found")
        _kill_tree(roots)

    def _cluster_pids(self) -> list[int]:
        # Ray's agents rename themselves ("ray::DashboardAgent"), so their command line no longer
        # names the temp folder: they are found by the log files they hold open in it.
        return sorted(set(_pids_with(str(self.temp_dir))) | set(_pids_holding(self.temp_dir)))

    def stop(self) -> None:
        """Kill every process of the cluster and remove its temp folder."""
        for _ in range(3):  # a raylet may start a worker while we kill: go round again
            pids = self._cluster_pids()
            if not pids:
                break
            _kill_tree(pids)
            time.sleep(0.5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
