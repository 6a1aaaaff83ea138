"""Parquet through the real engine: the same seeded run to .jsonl and .parquet gives the same
records (and the input's column types), and a Parquet output survives SIGKILL + rerun."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import TINY_ENGINE, assert_only_noise_errors, run_vidcap_in_process
from tests.test_batch_jobs import start_vidcap
from vidcap.config import build_config
from vidcap.executors.job import run_captioning
from vidcap.io.formats.parquet import parts_dir
from vidcap.io.records import iter_records
from vidcap.io.resume import load_done

pytestmark = pytest.mark.engine


def parquet_input(path: Path, clip_dir: Path, rows: int) -> pa.Table:
    """An input with int, string, list and struct columns (narrow types included)."""
    clips = ["a.mp4", "b.mp4", "c.avi", "tall.mkv"]
    table = pa.table(
        {
            "id": pa.array(range(rows), pa.int32()),
            "video": [str(clip_dir / clips[i % len(clips)]) for i in range(rows)],
            "tags": pa.array([[f"t{i}"] * (i % 3) for i in range(rows)], pa.list_(pa.string())),
            "meta": pa.array(
                [{"w": i, "src": f"s{i}"} for i in range(rows)],
                pa.struct([("w", pa.int16()), ("src", pa.string())]),
            ),
        }
    )
    pq.write_table(table, path, row_group_size=5)
    return table


def without_nulls(value: object) -> object:
    """A record with null fields left out: Parquet gives every row every column (null where absent)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def test_the_same_seeded_run_to_jsonl_and_parquet_gives_the_same_records(
    tmp_path: Path, clip_dir: Path, vllm_engine
) -> None:
    data = tmp_path / "data.parquet"
    table = parquet_input(data, clip_dir, rows=12)
    outputs = {}
    for ext in ("jsonl", "parquet"):
        out = tmp_path / f"out.{ext}"
        config = build_config(
            {},
            {"input": str(data), "output": str(out), "model": "tiny", "batch_size": 4, "decode_workers": 1},
        )
        result = run_captioning(config, vllm_engine)
        assert_only_noise_errors(result.exit_code, out)
        outputs[ext] = [r.data for r in iter_records(out)]
    assert [without_nulls(r) for r in outputs["parquet"]] == [without_nulls(r) for r in outputs["jsonl"]]
    assert [r["id"] for r in outputs["parquet"]] == list(range(12))
    schema = pq.read_schema(tmp_path / "out.parquet")
    assert all(schema.field(f.name).type == f.type for f in table.schema)
    assert schema.field("caption").type == pa.string()
    assert pa.types.is_struct(schema.field("info").type)


def test_a_parquet_output_survives_sigkill_and_rerun(
    tmp_path: Path, clip_dir: Path, tiny_model: Path, vllm_engine
) -> None:
    rows = 48
    data = tmp_path / "data.parquet"
    table = parquet_input(data, clip_dir, rows=rows)
    config = tmp_path / "tiny.toml"
    config.write_text(
        f'model = "{tiny_model}"\nmax_model_len = {TINY_ENGINE["max_model_len"]}\n'
        f"gpu_memory_utilization = {TINY_ENGINE['gpu_memory_utilization']}\nenforce_eager = true\n"
        "max_tokens = 8\nbatch_size = 4\nmax_in_flight = 2\ndecode_workers = 1\n"
        "fps = 1.0\nmin_pixels = 12544\nmax_pixels = 50176\n"
    )
    out = tmp_path / "out.parquet"
    args = ["run", "-i", str(data), "-o", str(out), "-c", str(config), "--id-key", "id", "--quiet"]
    proc = start_vidcap(args)
    deadline = time.monotonic() + 300
    while len(list(parts_dir(out).glob("part-*.parquet"))) < 2:  # two batches durable
        if proc.poll() is not None:
            pytest.fail(f"vidcap ended before writing two batches: {proc.returncode}\n{proc.stderr.read()}")
        assert time.monotonic() < deadline, "no two batches written in time"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: main process, engine, decode workers
    proc.wait(timeout=60)
    assert not out.exists()  # only the parts: joined at the end of a run
    done = load_done(out, id_key="id")
    assert 8 <= done.count < rows, "the kill came too late to test anything"
    assert done.ids == {str(i) for i in range(done.count)}

    # The same command resumes it (in this process, on the shared engine: a resume is the runner's).
    rerun = run_vidcap_in_process(vllm_engine, *args)
    assert_only_noise_errors(rerun.returncode, out, rerun.stderr)
    records = [r.data for r in iter_records(out)]
    assert [r["id"] for r in records] == list(range(rows))  # every record once, in input order
    assert [{k: r[k] for k in table.column_names} for r in records] == table.to_pylist()
    assert not parts_dir(out).exists()
    schema = pq.read_schema(out)
    assert all(schema.field(f.name).type == f.type for f in table.schema)
