"""--executor ray on a real two-node Ray cluster (``ray start`` here), with the real vLLM engine.

The cluster (``tests/local_ray.py``) has a head and a worker node of one CPU each; the Ray
executor puts an engine actor on each (no GPUs: one per node) and decodes in Ray tasks. Seeded
captions do not depend on the engine or batch a request ran in (vLLM seeds each request), so a
Ray run must give exactly the records of a local run, also when the worker node is killed
mid-run and the command is run again.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_ENGINE, assert_only_noise_errors, run_vidcap, write_jsonl
from tests.local_ray import LocalRay
from tests.test_batch_jobs import output_ids, start_vidcap, wait_for_lines
from vidcap.config import build_config, load_config_file
from vidcap.errors import RecordError, VidcapError
from vidcap.executors.job import run_captioning
from vidcap.io.jsonio import loads
from vidcap.io.records import iter_records

pytest.importorskip("ray")

CLIPS = ["a.mp4", "b.mp4", "c.avi", "tall.mkv"]


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node, started with ``ray start``; every process killed at the end."""
    started = LocalRay.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, clip_dir: Path, tiny_model: Path, vllm_engine) -> dict:
    """24 records, a config with the shared engine's sampling (seed 0), and a local run's output
    with that engine: the reference each Ray run must equal."""
    tmp = tmp_path_factory.mktemp("ray")
    records = [{"id": f"{i:03d}", "video": str(clip_dir / CLIPS[i % len(CLIPS)])} for i in range(24)]
    data = write_jsonl(tmp / "data.jsonl", records)
    config = tmp / "tiny.toml"
    config.write_text(
        f'model = "{tiny_model}"\nmax_model_len = {TINY_ENGINE["max_model_len"]}\n'
        # Two engines share this machine's RAM: 0.05 of it each for the KV cache.
        "gpu_memory_utilization = 0.05\nenforce_eager = true\n"
        "max_tokens = 12\ntemperature = 0.7\nseed = 0\nbatch_size = 4\n"
        "max_in_flight = 2\n"  # work left when the node is killed
        "fps = 1.0\nmin_pixels = 12544\nmax_pixels = 50176\n"
    )
    local = tmp / "local.jsonl"
    single = build_config(load_config_file(config), {"input": str(data), "output": str(local)})
    assert_only_noise_errors(run_captioning(single, vllm_engine).exit_code, local)
    return {"tmp": tmp, "data": data, "config": config, "local": local, "ids": [r["id"] for r in records]}


def _records(path: Path) -> list[dict]:
    return [r.data for r in iter_records(path)]


@pytest.mark.engine
def test_a_ray_run_gives_the_records_of_a_local_run(cluster: LocalRay, job: dict) -> None:
    out = job["tmp"] / "ray.jsonl"
    args = ["run", str(job["data"]), "-o", str(out), "-c", str(job["config"]), "-q"]
    ray_args = ["--executor", "ray", "--ray-address", cluster.address]
    done = run_vidcap(*args, *ray_args, env=cluster.env, timeout=900)
    assert_only_noise_errors(done.returncode, out, done.stderr)
    assert _records(out) == _records(job["local"])
    summary = loads(out.with_name("ray.jsonl.summary.json").read_bytes())
    engines = summary["engine"]["engines"]
    assert summary["engine"]["executor"] == "ray" and len(engines) == 2, summary["engine"]
    assert all(e["requests"] > 0 and e["alive"] for e in engines), engines
    # Each named with where it ran (this machine's address: both nodes are here).
    assert all(re.fullmatch(r"Ray node [\d.]+, CPUs", e["devices"]) for e in engines), engines
    # The fingerprint leaves the executor out: a local run may resume a Ray run's output.
    again = run_vidcap(*args, env=cluster.env, timeout=120)
    assert again.returncode == 0 and "already done" in again.stderr, again.stderr


@pytest.mark.engine
def test_a_lost_worker_node_loses_only_its_requests_in_flight(cluster: LocalRay, job: dict) -> None:
    """Kill the worker node (its engine, its decode tasks) mid-run; the run, then the same
    command again, leave every record exactly once, in order, as a local run wrote it."""
    out = job["tmp"] / "lost.jsonl"
    args = ["run", str(job["data"]), "-o", str(out), "-c", str(job["config"]), "-q"]
    args += ["--executor", "ray", "--ray-address", cluster.address]
    proc = start_vidcap(args, env=cluster.env)
    try:
        wait_for_lines(out, 4, proc, timeout=900)
        cluster.kill_worker_node()
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stderr = proc.stderr.read()
    assert proc.returncode in (0, 1, 70), stderr
    written = output_ids(out)
    assert written == job["ids"][: len(written)]  # in order, none twice, whatever the run got to
    summary = loads(out.with_name("lost.jsonl.summary.json").read_bytes())
    if proc.returncode != 70:  # the head's engine took over the lost node's requests
        lost = [e for e in summary["engine"]["engines"] if not e["alive"]]
        assert len(lost) == 1 and "died" in lost[0]["error"], summary["engine"]

    rerun = run_vidcap(*args, env=cluster.env, timeout=900)
    assert_only_noise_errors(rerun.returncode, out, rerun.stderr)
    assert output_ids(out) == job["ids"]
    # The `duplicate` flag compares with the captions of the run that wrote a record (README: a
    # resumed run compares with the records it captions itself), so it may differ across the kill.
    assert [_without_duplicate(r) for r in _records(out)] == [
        _without_duplicate(r) for r in _records(job["local"])
    ]


def _without_duplicate(row: dict) -> dict:
    info = dict(row.get("info") or {})
    info["flags"] = [f for f in info.get("flags", []) if f != "duplicate"]
    return {**row, "info": info}


@pytest.mark.engine
def test_input_videos_and_output_in_s3_on_the_cluster(
    cluster: LocalRay, job: dict, clip_dir: Path, tmp_path: Path
) -> None:
    """Input, videos and output in a real S3 server (moto's, on localhost), the run on the
    two-node cluster: the same records as the local run. The cluster's nodes were started
    without the store's endpoint and keys: those of the command's environment are all it takes
    (the Ray executor hands them to its tasks and actors)."""
    import s3fs

    from tests.s3_server import s3_env, s3_server
    from vidcap.io.jsonio import dumps

    with s3_server(tmp_path / "moto.log") as endpoint:
        store = s3_env(endpoint)
        fs = s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": endpoint})
        fs.mkdir("ray-bucket")
        for name in CLIPS:
            fs.put_file(str(clip_dir / name), f"ray-bucket/clips/{name}")
        local_rows = _records(job["local"])
        # Video paths relative to the input's folder in the bucket.
        rows = [{"id": r["id"], "video": f"clips/{Path(r['video']).name}"} for r in local_rows]
        fs.pipe_file("ray-bucket/in.jsonl", b"".join(dumps(r) + b"\n" for r in rows))
        args = ["run", "s3://ray-bucket/in.jsonl", "-o", "s3://ray-bucket/out.jsonl", "-q"]
        args += ["-c", str(job["config"]), "--executor", "ray", "--ray-address", cluster.address]
        done = run_vidcap(*args, env={**cluster.env, **store}, timeout=900)
        assert done.returncode in (0, 1), done.stderr
        out = tmp_path / "out.jsonl"
        fs.get_file("ray-bucket/out.jsonl", str(out))
        fs.get_file("ray-bucket/out.jsonl.summary.json", str(tmp_path / "out.jsonl.summary.json"))
    assert_only_noise_errors(done.returncode, out, done.stderr)
    got = _records(out)
    assert [r["video"] for r in got] == [r["video"] for r in rows]  # each record as it was given

    def kept(row: dict) -> dict:  # the error of an empty caption is the same text; paths differ
        return {k: v for k, v in row.items() if k != "video"}

    assert [kept(r) for r in got] == [kept(r) for r in local_rows]


def test_decode_tasks_come_back_in_order_with_their_errors(cluster: LocalRay, monkeypatch) -> None:
    """RayDecodePool: outcomes in submission order, a record's error is its own, and no more
    than ``max_pending`` tasks are submitted ahead of the one handed out."""
    from vidcap.executors import ray_cluster
    from vidcap.executors.ray_decode import RayDecodePool

    for name, value in cluster.env.items():
        if name in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED"):
            monkeypatch.setenv(name, value)
    # The task function below is this module's: the workers import it from the repository root.
    root = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), root])))
    pulled: list[int] = []

    def tasks():
        for n in range(7):
            pulled.append(n)
            yield n

    try:
        with RayDecodePool(
            _square_or_fail, address=cluster.address, max_pending=2, error_types=(RecordError,)
        ) as pool:
            outcomes = []
            for outcome in pool.imap(tasks()):
                assert len(pulled) <= len(outcomes) + 2  # the bound: backpressure on the source
                outcomes.append(outcome)
    finally:
        ray_cluster.disconnect()
    assert [o.task for o in outcomes] == list(range(7))
    assert [o.result for o in outcomes] == [0, 1, 4, None, 16, 25, None]
    assert [o.error for o in outcomes].count("no video for 3") == 1
    assert outcomes[6].error is not None and "ZeroDivisionError" in outcomes[6].error


def _square_or_fail(n: int) -> int:
    if n == 3:
        raise RecordError("no video for 3")
    if n == 6:
        return 1 // 0  # a bug: its type name stays in the message
    return n * n


def test_the_openai_backend_is_refused_with_the_ray_executor(tmp_path: Path) -> None:
    with pytest.raises(VidcapError, match="--executor ray"):
        build_config({"backend": "openai", "executor": "ray", "input": "x.jsonl", "model": "m"}, {})


def test_ray_is_imported_only_by_the_ray_executor() -> None:
    """Ray is an optional extra: a local run's modules (the CLI, the job, the executors'
    registry) do not import it."""
    script = (
        "import sys, vidcap.cli.app, vidcap.executors, vidcap.executors.job;"
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_registry_gives_ray_runs_to_the_ray_executor() -> None:
    """``executor = "ray"`` is the Ray executor's, with or without ``--data-parallel-size``."""
    from vidcap.executors import executor_for
    from vidcap.executors.ray_executor import RayExecutor

    for size in (1, 2):
        config = build_config({"executor": "ray", "data_parallel_size": size, "input": "x", "model": "m"}, {})
        assert type(executor_for(config)) is RayExecutor
    local = build_config({"input": "x", "model": "m"}, {})
    assert not isinstance(executor_for(local), RayExecutor)
