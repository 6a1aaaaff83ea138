"""Sharded jobs and resumes that check what they continue.

The array test runs three real ``vidcap`` processes at once, each with its own real engine,
as a SLURM array would start them; the resume refusals run the real command too, and are
refused before the model loads. Captions are noise (random weights): only plumbing is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EMPTY_CAPTION, TINY_ENGINE, run_vidcap, write_jsonl
from vidcap.config import build_config
from vidcap.executors.job import run_captioning
from vidcap.io.jsonio import loads
from vidcap.io.records import iter_records

RECORDS = 13


@pytest.fixture()
def job(tmp_path: Path, clip_dir: Path, tiny_model: Path) -> dict:
    """A dataset of RECORDS records (and a blank line) over real clips, and a tiny-model config."""
    clips = ["a.mp4", "b.mp4", "c.avi", "tall.mkv"]
    records = [{"id": f"r{i:02d}", "video": str(clip_dir / clips[i % 4]), "n": i} for i in range(RECORDS)]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    data.write_bytes(data.read_bytes().replace(b"\n", b"\n\n", 1))  # blank lines are lines too
    config = tmp_path / "tiny.toml"
    config.write_text(
        f'model = "{tiny_model}"\nmax_model_len = {TINY_ENGINE["max_model_len"]}\n'
        "gpu_memory_utilization = 0.05\nenforce_eager = true\n"
        "max_tokens = 8\nbatch_size = 2\ndecode_workers = 0\n"
        "fps = 1.0\nmin_pixels = 12544\nmax_pixels = 50176\n"
    )
    return {"data": data, "config": config, "tmp": tmp_path, "records": records, "model": str(tiny_model)}


@pytest.mark.engine
def test_three_task_array_without_output_then_merge_by_input(job: dict) -> None:
    """--array=1-3: task ids start at 1; all three tasks run at once, none names an output."""
    procs = []
    for task in (1, 2, 3):
        env = {
            **os.environ,
            "SLURM_ARRAY_JOB_ID": "77",
            "SLURM_ARRAY_TASK_ID": str(task),
            "SLURM_ARRAY_TASK_COUNT": "3",
            "SLURM_ARRAY_TASK_MIN": "1",
            "SLURM_ARRAY_TASK_MAX": "3",
            "SLURM_ARRAY_TASK_STEP": "1",
        }
        args = ["run", "-i", str(job["data"]), "-c", str(job["config"]), "--quiet"]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "vidcap", *args], env=env, stderr=subprocess.PIPE, text=True
            )
        )
    codes = []
    for proc in procs:
        _, stderr = proc.communicate(timeout=900)
        assert proc.returncode in (0, 1), stderr
        codes.append(proc.returncode)

    outputs = [job["tmp"] / f"data.captions.shard-{i}-of-3.jsonl" for i in range(3)]
    assert not (job["tmp"] / "data.captions.jsonl").exists()
    counts = [len(list(iter_records(out))) for out in outputs]
    assert sum(counts) == RECORDS and all(counts)
    for index, out in enumerate(outputs):
        summary = loads(out.with_name(out.name + ".summary.json").read_bytes())
        assert summary["shard"] == {"index": index, "count": 3}
        assert summary["complete"] is True and summary["records_in_shard"] == counts[index]
        assert codes[index] == (1 if summary["status_counts"]["error"] else 0)

    merged = run_vidcap("merge", str(job["data"]))
    assert merged.returncode == 0, merged.stderr
    result = [r.data for r in iter_records(job["tmp"] / "data.captions.jsonl")]
    assert [r["id"] for r in result] == [r["id"] for r in job["records"]]  # every record once, in order
    assert all(r["status"] == "ok" or r["error"] == EMPTY_CAPTION for r in result), result
    assert [{k: r[k] for k in ("id", "video", "n")} for r in result] == job["records"]


def _config(job: dict, **flags) -> object:
    base = {
        "input": str(job["data"]),
        "output": str(job["tmp"] / "out.jsonl"),
        "model": job["model"],
        "batch_size": 2,
        "decode_workers": 0,
        "max_tokens": 8,
        "fps": 1.0,
        "min_pixels": 12544,
        "max_pixels": 50176,
    }
    return build_config({}, {**base, **flags})


def _stop_once_written(out: Path, records: int):
    """A stop request once ``out`` holds ``records`` lines (the feed asks often, not per record)."""

    def should_stop() -> bool:
        return out.exists() and out.read_bytes().count(b"\n") >= records

    return should_stop


@pytest.fixture()
def interrupted(job: dict, vllm_engine) -> dict:
    """An output the runner left after an interruption: 4 to 6 records of 13 (a stop finishes
    the one request in flight and writes what is done), with its summary."""
    out = job["tmp"] / "out.jsonl"
    stop = _stop_once_written(out, 4)
    result = run_captioning(_config(job, max_in_flight=1), vllm_engine, should_stop=stop)
    assert result.interrupted and result.exit_code == 75
    done = len(list(iter_records(out)))
    assert 4 <= done <= 6
    summary = job["tmp"] / "out.jsonl.summary.json"
    return {**job, "out": out, "bytes": out.read_bytes(), "summary": summary, "done": done}


def _cli(job: dict, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_vidcap(
        "run", "-i", str(job["data"]), "-o", str(job["out"]), "-m", job["model"],
        "--batch-size", "2", "--decode-workers", "0", "--max-tokens", "8", "--fps", "1.0",
        "--min-pixels", "12544", "--max-pixels", "50176", "--quiet", *extra,
    )  # fmt: skip


def _assert_refused(result: subprocess.CompletedProcess[str], job: dict, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1, result.stderr
    assert f"cannot resume {job['out']}" in error[0], error[0]
    assert "--overwrite" in error[0]
    for needle in needles:
        assert needle in error[0], error[0]
    assert job["out"].read_bytes() == job["bytes"]  # nothing written, nothing lost


def test_fingerprint_is_on_disk_before_the_first_record(job: dict, vllm_engine) -> None:
    """What a SIGKILL right after the first batch would leave: records with a fingerprint beside them."""
    out = job["tmp"] / "out.jsonl"
    seen: list[dict] = []

    def should_stop() -> bool:
        if not seen:  # the first check comes before the first batch is written
            assert not out.exists() or out.read_bytes() == b""
            seen.append(loads((job["tmp"] / "out.jsonl.summary.json").read_bytes()))
        return False

    run_captioning(_config(job), vllm_engine, should_stop=should_stop)
    assert seen[0]["complete"] is False
    fingerprint = seen[0]["fingerprint"]
    assert fingerprint["input"]["path"] == str(job["data"].resolve())
    assert fingerprint["input"]["units"] == RECORDS + 1  # the blank line
    assert fingerprint["span"]["start"] == 0 and fingerprint["span"]["stop"] == RECORDS + 1
    assert fingerprint["options"]["model"] == job["model"]
    final = loads((job["tmp"] / "out.jsonl.summary.json").read_bytes())
    assert final["fingerprint"] == fingerprint and final["complete"] is True


def test_resume_onto_changed_options_is_refused(interrupted: dict) -> None:
    job = interrupted
    _assert_refused(_cli(job, "--temperature", "0.2"), job, "generation.temperature None -> 0.2")
    _assert_refused(_cli(job, "--prompt", "Say hi."), job, "prompt 'Please describe")
    _assert_refused(_cli(job, "--system-prompt", "Be brief."), job, "system-prompt None -> 'Be brief.'")
    _assert_refused(_cli(job, "--fps", "2.0"), job, "sampling.fps 1.0 -> 2.0")
    _assert_refused(_cli(job, "--max-model-len", "2048"), job, "max-model-len None -> 2048")
    _assert_refused(_cli(job, "--num-shards", "2", "--shard-index", "0"), job, "shard's end line 14 -> 7")


def test_resume_onto_a_changed_input_is_refused(interrupted: dict) -> None:
    data: Path = interrupted["data"]
    original = data.read_bytes()
    data.write_bytes(original.replace(b'"n":3', b'"n":33'))  # same size class, other content
    _assert_refused(_cli(interrupted), interrupted, "content of the shard's input lines")
    data.write_bytes(original + b'{"id": "new", "video": "x.mp4"}\n')  # a record appended
    _assert_refused(_cli(interrupted), interrupted, f"input size (bytes) {len(original)} -> ")


def test_output_without_a_summary_is_not_resumed(interrupted: dict) -> None:
    """Records with no summary beside them (another tool, a copy, a pre-fingerprint vidcap)."""
    interrupted["summary"].unlink()
    _assert_refused(_cli(interrupted), interrupted, f"holds {interrupted['done']} records but no summary")
    interrupted["summary"].write_text(json.dumps({"vidcap_version": "0.1.0", "complete": False}))
    _assert_refused(_cli(interrupted), interrupted, "vidcap 0.1.0) has no run fingerprint")


def test_same_run_resumes_and_overwrite_is_the_way_out(interrupted: dict, vllm_engine) -> None:
    job = interrupted
    resumed = run_captioning(_config(job), vllm_engine)
    done = job["done"]
    assert resumed.complete and resumed.stats.resumed == done and resumed.stats.processed == RECORDS - done
    assert [r.data["id"] for r in iter_records(job["out"])] == [r["id"] for r in job["records"]]
    changed = run_captioning(_config(job, temperature=0.2, overwrite=True), vllm_engine)
    assert changed.complete and changed.stats.resumed == 0 and changed.stats.processed == RECORDS
    summary = loads(job["summary"].read_bytes())
    assert summary["fingerprint"]["options"]["generation"]["temperature"] == 0.2
