"""Runs that cannot collide or waste the GPU, tried on real ``vidcap`` processes and the real engine.

One writer per output (a second run is refused; that a SIGKILLed run leaves no lock is tested
with the other SIGKILL in tests/test_batch_jobs.py), ``--overwrite``
that loses nothing when the model fails to load, the input never written, and what can be
known before the model loads reported then. A "broken" model is a copy of the tiny model with
its weights truncated: its config reads fine, so everything before the engine start works, and
the engine start fails; a run that finishes with it proves that the engine never started.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_ENGINE, run_vidcap, write_jsonl
from tests.test_batch_jobs import output_ids, start_vidcap, wait_for_lines
from vidcap.config import build_config
from vidcap.executors.job import run_captioning
from vidcap.io.lock import lock_path

RECORDS = 48


@pytest.fixture()
def job(tmp_path: Path, clip_dir: Path, tiny_model: Path) -> dict:
    """A dataset over real clips and a tiny-model config file (small batches: many flushes)."""
    clips = ["a.mp4", "b.mp4", "c.avi", "tall.mkv"]
    records = [{"id": f"{i:04d}", "video": str(clip_dir / clips[i % 4])} for i in range(RECORDS)]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    config = tmp_path / "tiny.toml"
    # max_in_flight bounds the work in the engine: with the default (vLLM's max_num_seqs) every
    # record would be in flight at once, and a stop, which finishes what is in flight, would
    # leave nothing undone.
    config.write_text(
        f"max_model_len = {TINY_ENGINE['max_model_len']}\n"
        f"gpu_memory_utilization = {TINY_ENGINE['gpu_memory_utilization']}\nenforce_eager = true\n"
        "max_tokens = 8\nbatch_size = 4\nmax_in_flight = 4\ndecode_workers = 1\n"
        "fps = 1.0\nmin_pixels = 12544\nmax_pixels = 50176\n"
    )
    return {"data": data, "config": config, "ids": [r["id"] for r in records], "tmp": tmp_path}


def run_args(job: dict, out: Path, model: Path) -> list[str]:
    return ["run", "-i", str(job["data"]), "-o", str(out), "-m", str(model), "-c", str(job["config"]), "-q"]


@pytest.fixture()
def broken_model(tmp_path: Path, tiny_model: Path) -> Path:
    """The tiny model with truncated weights: loads its config, fails in the engine."""
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken)
    with open(broken / "model.safetensors", "r+b") as f:
        f.truncate(1000)
    return broken


@pytest.mark.engine
def test_a_second_run_on_the_same_output_is_refused_and_the_output_has_each_record_once(
    job: dict, tiny_model: Path, clip_dir: Path
) -> None:
    # Enough records that the first run is surely still working when the second one starts.
    many = [{"id": f"{i:04d}", "video": str(clip_dir / "a.mp4")} for i in range(2000)]
    job = {**job, "data": write_jsonl(job["tmp"] / "many.jsonl", many)}
    out = job["tmp"] / "out.jsonl"
    args = run_args(job, out, tiny_model)
    first = start_vidcap(args)
    wait_for_lines(out, 4, first)

    summary = job["tmp"] / "out.jsonl.summary.json"
    log = job["tmp"] / "out.jsonl.log"
    summary_before = summary.read_bytes()  # the first run's, written before its first record
    started = time.monotonic()
    second = run_vidcap(*args)
    assert first.poll() is None, "the first run ended before the second one started: nothing tested"
    assert second.returncode == 73, second.stderr
    assert time.monotonic() - started < 60  # refused at once, not after loading a model
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, second.stderr
    assert re.fullmatch(
        rf"error: {re.escape(str(out))}: another vidcap run is writing this output "
        rf"\(pid {first.pid} on host {re.escape(socket.gethostname())}, since \S+\); nothing done",
        errors[0],
    ), errors
    # The refused run wrote nothing: not the summary, not a line into the running job's log.
    assert summary.read_bytes() == summary_before
    assert not log.exists() or log.read_bytes().count(b"--- vidcap run") == 1  # the first run's header

    os.killpg(first.pid, signal.SIGTERM)  # end the first run early: what it wrote must be clean
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 75, stderr
    written = output_ids(out)
    assert 4 <= len(written) < len(many)
    assert written == [r["id"] for r in many[: len(written)]]  # each record once, in input order
    assert not lock_path(out).exists()


@pytest.mark.engine
def test_overwrite_with_a_model_that_fails_to_load_keeps_the_old_output(
    job: dict, broken_model: Path, clip_dir: Path
) -> None:
    """Also: a missing video is reported (file:line) before the model loads, and the failed
    engine start exits 69 (a failure, not the interruption it used to be reported as)."""
    records = [{"id": "a", "video": str(clip_dir / "a.mp4")}, {"id": "b", "video": "gone.mp4"}]
    data = write_jsonl(job["tmp"] / "two.jsonl", records)
    out = job["tmp"] / "old.jsonl"
    old_output = b'{"id": "a", "caption": "kept"}\n{"id": "b", "caption": "kept too"}\n'
    out.write_bytes(old_output)
    summary = job["tmp"] / "old.jsonl.summary.json"
    summary.write_text('{"complete": true}\n')
    files = sorted(p.name for p in job["tmp"].iterdir())  # (the run's OUTPUT.log may be added)

    args = ["run", "-i", str(data), "-o", str(out), "-m", str(broken_model), "-c", str(job["config"]), "-q"]
    result = run_vidcap(*args, "--overwrite", timeout=600)
    assert result.returncode == 69, result.stderr
    assert "Traceback" not in result.stderr
    assert out.read_bytes() == old_output
    assert summary.read_text() == '{"complete": true}\n'
    left = sorted(p.name for p in job["tmp"].iterdir() if p.name != "old.jsonl.log")
    assert left == files  # no temp, journal or lock file left
    lines = result.stderr.splitlines()
    missing = next(i for i, line in enumerate(lines) if f"{data}:2: gone.mp4: no such file" in line)
    error = next(i for i, line in enumerate(lines) if line.startswith("error: cannot load model"))
    assert missing < error  # reported before the model was loaded


def test_a_finished_runs_rerun_exits_0_without_loading_the_model(
    job: dict, broken_model: Path, vllm_engine
) -> None:
    out = job["tmp"] / "out.jsonl"
    flags = {"input": str(job["data"]), "output": str(out), "model": str(broken_model), "max_tokens": 8}
    flags["decode_workers"] = 1
    first = run_captioning(build_config({}, flags), vllm_engine)  # the shared, working engine
    assert first.complete
    summary = (job["tmp"] / "out.jsonl.summary.json").read_bytes()

    started = time.monotonic()
    data = str(job["data"])
    rerun = run_vidcap("run", "-i", data, "-o", str(out), "-m", str(broken_model), "--max-tokens=8")
    assert rerun.returncode == 0, rerun.stderr  # the broken model was never loaded
    assert time.monotonic() - started < 60
    assert f"all {RECORDS} records of this shard are already done; nothing to do" in rerun.stderr
    assert output_ids(out) == job["ids"]
    assert (job["tmp"] / "out.jsonl.summary.json").read_bytes() == summary


def test_output_that_is_the_input_is_refused_with_the_input_intact(
    tmp_path: Path, broken_model: Path
) -> None:
    data = tmp_path / "data.jsonl"
    content = b'{"id": 1, "video": "a.mp4"}\n{"id": 2, "video": "b.mp4"}'  # no final newline
    data.write_bytes(content)
    (tmp_path / "same.jsonl").symlink_to(data)
    for output in (data, tmp_path / "same.jsonl"):
        result = run_vidcap("run", "-i", str(data), "-o", str(output), "-m", str(broken_model))
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"error: {output}: the output is the input file {data}; choose another --output "
            "(vidcap never writes its input)"
        ]
        assert data.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken-model", "data.jsonl", "same.jsonl"]


def test_missing_video_and_template_typo_stop_before_the_model_loads(
    tmp_path: Path, clip_dir: Path, broken_model: Path
) -> None:
    records = [{"video": str(clip_dir / "a.mp4"), "topic": "cats"}, {"video": "gone.mp4", "topic": "dogs"}]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    base = ["run", "-i", str(data), "-m", str(broken_model)]
    typo = run_vidcap(*base, "--prompt", "Describe {topc}.")
    assert typo.returncode == 2, typo.stderr  # 69 would mean the (broken) model was loaded
    assert typo.stderr.strip().splitlines()[-1] == (
        f"error: prompt template field '{{topc}}' is in none of the 2 records that use the template "
        f"(first: {data}:1); did you mean '{{topic}}'?"
    )
    missing = run_vidcap(*base, "--on-missing-video", "error")
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr.strip().splitlines()[-1] == (
        f"error: 1 video file(s) missing or unreadable (first: {data}:2: gone.mp4: no such file); "
        "nothing was captioned (--on-missing-video error)"
    )
    assert not (tmp_path / "data.captions.jsonl").exists()
