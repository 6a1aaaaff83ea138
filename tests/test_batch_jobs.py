"""Batch jobs you can trust: kill at any moment, rerun, every record exactly once.

The interrupted runs are real ``vidcap`` processes (the real engine) killed with SIGKILL or
SIGTERM mid-run; reruns are the same command (the SIGTERM one's in-process on the shared engine,
``run_vidcap_in_process``). Other shards run in-process on the shared engine to keep the suite fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import (
    TINY_ENGINE,
    assert_only_noise_errors,
    run_vidcap,
    run_vidcap_in_process,
    write_jsonl,
)
from vidcap.cli.merge import merge_command
from vidcap.config import build_config
from vidcap.errors import VidcapError
from vidcap.executors.job import run_captioning
from vidcap.io.jsonio import loads
from vidcap.io.lock import acquire_output_lock, lock_path
from vidcap.io.records import iter_records

REPO = Path(__file__).resolve().parents[1]
RECORDS = 96


@pytest.fixture()
def job(tmp_path: Path, clip_dir: Path, tiny_model: Path) -> dict:
    """A dataset of RECORDS records over a few real clips, and a tiny-model config file."""
    return make_job(tmp_path, clip_dir, tiny_model)


def make_job(tmp_path: Path, clip_dir: Path, tiny_model: Path) -> dict:
    """The ``job`` fixture's dataset and config, in ``tmp_path``."""
    clips = ["a.mp4", "b.mp4", "c.avi", "tall.mkv"]
    records = [
        {"id": f"{i:04d}", "video": str(clip_dir / clips[i % len(clips)]), "n": i} for i in range(RECORDS)
    ]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    config = tmp_path / "tiny.toml"
    # max_in_flight bounds the work in the engine: with the default (vLLM's max_num_seqs) every
    # record would be in flight at once, and a stop, which finishes what is in flight, would
    # leave nothing undone.
    config.write_text(
        f'model = "{tiny_model}"\nmax_model_len = {TINY_ENGINE["max_model_len"]}\n'
        f"gpu_memory_utilization = {TINY_ENGINE['gpu_memory_utilization']}\nenforce_eager = true\n"
        "max_tokens = 8\nbatch_size = 4\nmax_in_flight = 4\ndecode_workers = 1\n"
        "fps = 1.0\nmin_pixels = 12544\nmax_pixels = 50176\n"
    )
    return {"data": data, "config": config, "ids": [r["id"] for r in records], "tmp": tmp_path}


def output_ids(path: Path) -> list[str]:
    return [r.data["id"] for r in iter_records(path)]


def wait_for_lines(path: Path, lines: int, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= lines:
            return
        if proc.poll() is not None:
            pytest.fail(f"vidcap ended before writing {lines} lines: {proc.returncode}\n{proc.stderr.read()}")
        time.sleep(0.05)
    pytest.fail(f"no {lines} lines in {path} after {timeout} s")


def start_vidcap(args: list[str], **kwargs) -> subprocess.Popen:
    """A vidcap process in its own process group (like a job step), stderr captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "vidcap", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        **kwargs,
    )


def other_output(out: Path) -> str:
    """What vidcap captured beside ``out`` from other libraries and its child processes."""
    log = out.with_name(out.name + ".log")
    return log.read_text(errors="replace") if log.exists() else ""


@pytest.fixture(scope="module")
def sigkilled(tmp_path_factory: pytest.TempPathFactory, clip_dir: Path, tiny_model: Path) -> dict:
    """A run SIGKILLed mid-run, what it left behind, then the same command again.

    Two real engine starts (about a minute), so the tests of the kill share them: each test
    below checks its own part of what happened."""
    job = make_job(tmp_path_factory.mktemp("sigkilled"), clip_dir, tiny_model)
    out = job["tmp"] / "out.jsonl"
    args = ["run", "-i", str(job["data"]), "-o", str(out), "-c", str(job["config"]), "--quiet"]
    proc = start_vidcap(args)
    wait_for_lines(out, 8, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: main process, engine, decode workers
    proc.wait(timeout=60)
    written = output_ids(out)
    lock_left = lock_path(out).exists()
    try:
        with acquire_output_lock(out):  # raises if the dead run still held it
            lock_error = None
    except VidcapError as error:
        lock_error = error
    rerun = run_vidcap(*args, timeout=600)
    return {
        **job,
        "out": out,
        "written": written,
        "lock_left": lock_left,
        "lock_error": lock_error,
        "rerun": rerun,
    }


@pytest.mark.engine
def test_sigkill_mid_run_then_rerun_gives_every_record_once(sigkilled: dict) -> None:
    job, out, written, rerun = sigkilled, sigkilled["out"], sigkilled["written"], sigkilled["rerun"]
    assert 8 <= len(written) < RECORDS, "the kill came too late to test anything"
    assert written == job["ids"][: len(written)]

    assert_only_noise_errors(rerun.returncode, out, rerun.stderr)
    # The engine's processes were stopped cleanly (their messages are in the log beside the output).
    assert "leaked" not in rerun.stderr + other_output(out)
    assert output_ids(out) == job["ids"]
    summary = loads((job["tmp"] / "out.jsonl.summary.json").read_bytes())
    assert summary["complete"] is True
    assert summary["resumed"] >= len(written) - 1  # a torn last line, if any, was redone
    assert summary["resumed"] + sum(summary["status_counts"].values()) == RECORDS


@pytest.mark.engine
def test_a_sigkilled_runs_lock_is_gone_and_the_rerun_resumes(sigkilled: dict) -> None:
    out, written, rerun = sigkilled["out"], sigkilled["written"], sigkilled["rerun"]
    assert 8 <= len(written) < RECORDS, "the kill came too late to test anything"
    assert sigkilled["lock_left"]  # the dead run's file is left behind...
    assert sigkilled["lock_error"] is None  # ...but holds no lock

    assert_only_noise_errors(rerun.returncode, out, rerun.stderr)
    assert output_ids(out) == sigkilled["ids"]
    summary = loads((sigkilled["tmp"] / "out.jsonl.summary.json").read_bytes())
    assert summary["complete"] is True and summary["resumed"] >= len(written) - 1


@pytest.mark.engine
def test_sigterm_writes_what_is_done_exits_75_and_resumes(job: dict, vllm_engine) -> None:
    out = job["tmp"] / "out.json"  # JSON array output: journaled, written atomically
    args = ["run", "-i", str(job["data"]), "-o", str(out), "-c", str(job["config"]), "--id-key", "id", "-q"]
    proc = start_vidcap(args)
    journal = out.with_name(out.name + ".partial.jsonl")
    wait_for_lines(journal, 8, proc)
    os.killpg(proc.pid, signal.SIGTERM)  # as SLURM pre-emption does: every process of the step
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 75, stderr
    # The engine's processes got the signal too and must neither crash nor be killed untidily.
    seen = stderr + other_output(out)
    assert "Traceback" not in seen and "leaked" not in seen, seen
    done = loads(out.read_bytes())
    assert isinstance(done, list) and 0 < len(done) < RECORDS
    assert [r["id"] for r in done] == job["ids"][: len(done)]
    summary = loads((job["tmp"] / "out.json.summary.json").read_bytes())
    assert summary["complete"] is False and summary["interrupted"] is True

    # The same command resumes it (in this process, on the shared engine: a resume is the runner's).
    rerun = run_vidcap_in_process(vllm_engine, *args)
    assert_only_noise_errors(rerun.returncode, out, rerun.stderr)
    assert [r["id"] for r in loads(out.read_bytes())] == job["ids"]
    assert not journal.exists()


@pytest.mark.engine
def test_sharded_run_killed_resumed_and_merged(job: dict, vllm_engine) -> None:
    """Shard 1 of 3 runs through the SLURM script and is pre-empted (SIGTERM), then requeued;
    shards 0 and 2 run in-process; merge gives every record exactly once, in input order.
    No run names an output: each shard writes its default file beside the input."""
    data = job["data"]
    env = {
        **os.environ,
        "SLURM_ARRAY_TASK_ID": "1",
        "SLURM_ARRAY_TASK_COUNT": "3",
        "INPUT": str(data),
        "CONFIG": str(job["config"]),
        "VIDCAP": str(Path(sys.executable).with_name("vidcap")),
    }
    script = [str(REPO / "scripts" / "slurm_array.sbatch"), "--quiet"]
    proc = subprocess.Popen(["bash", *script], env=env, cwd=job["tmp"], text=True, stderr=subprocess.PIPE)
    shard1 = job["tmp"] / "data.captions.shard-1-of-3.jsonl"
    wait_for_lines(shard1, 4, proc)
    proc.send_signal(signal.SIGTERM)  # SLURM signals the batch shell; the script forwards it
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 75, stderr
    assert 0 < len(output_ids(shard1)) < 32

    for index in (0, 2):
        config = build_config(
            {},
            {
                "input": str(data),
                "model": "tiny",
                "shard_index": index,
                "num_shards": 3,
                "batch_size": 8,
                "decode_workers": 1,
            },
        )
        result = run_captioning(config, vllm_engine)
        assert_only_noise_errors(result.exit_code, result.output)

    merged = job["tmp"] / "data.captions.jsonl"
    with pytest.raises(Exception, match="incomplete"):  # shard 1 is not finished: merge refuses
        merge_command([str(data)], None)
    assert not merged.exists()

    requeued = subprocess.run(
        ["bash", *script], env=env, cwd=job["tmp"], capture_output=True, text=True, timeout=600
    )
    assert_only_noise_errors(requeued.returncode, shard1, requeued.stderr)
    merge_command([str(data)], None)  # finds data.captions.shard-*-of-3.jsonl, writes data.captions.jsonl
    assert output_ids(merged) == job["ids"]
    assert [r.data["n"] for r in iter_records(merged)] == list(range(RECORDS))
    summary = loads((job["tmp"] / "data.captions.jsonl.summary.json").read_bytes())
    counts = summary["status_counts"]  # over all runs, not the last
    assert counts["ok"] + counts["error"] == RECORDS and counts["skipped"] == 0
    assert counts["error"] == sum(r.data["status"] == "error" for r in iter_records(merged))
    assert summary["records_per_shard"] == [32, 32, 32]
    assert summary["shards_last_runs"]["prompt_tokens"] > 0
