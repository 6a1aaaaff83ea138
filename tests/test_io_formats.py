"""Every record format through the one interface: round trips, Parquet types, part-file crash
safety, Parquet shards and merge, values Parquet cannot hold, and FileStorage's csv/parquet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_vidcap, write_jsonl
from vidcap import FileStorage
from vidcap.errors import VidcapError
from vidcap.io.formats import FORMATS, find_span, format_for
from vidcap.io.formats.parquet import SchemaCheck, parts_dir
from vidcap.io.merge_outputs import merge_outputs
from vidcap.io.records import SpanReader, iter_records
from vidcap.io.resume import load_done
from vidcap.io.shards import shard_range
from vidcap.io.sidecar import summary_path
from vidcap.io.writer import open_writer

RECORDS = [
    {"id": 1, "video": "a.mp4", "tags": ["x", "y"], "meta": {"w": 160, "src": "cam"}, "score": 0.5},
    {"id": 2, "video": "b.mp4", "tags": [], "meta": {"w": 176, "src": "web"}, "score": 1.25},
    {"id": 3, "video": "c.mp4 ☃", "tags": ["z"], "meta": {"w": 128, "src": 'a,"b"\nc'}, "score": -2.0},
]


def vidcap_fields(record: dict, n: int) -> dict:
    """An output record as the runner assembles it: the input, then caption, status, error, info."""
    ok = n % 2 == 0
    info = {
        "finish_reason": "stop",
        "prompt_tokens": 10 + n,
        "generated_tokens": 3,
        "flags": [] if ok else ["x"],
    }
    return {
        **record,
        "caption": f"caption {n}" if ok else None,
        "status": "ok" if ok else "error",
        "error": None if ok else "boom",
        "info": info,
    }


@pytest.mark.parametrize("ext", [".jsonl", ".json", ".parquet"])
def test_typed_formats_round_trip_through_the_writer_and_reader(tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"out{ext}"
    writer = open_writer(out, resume=False)
    writer.write_batch(RECORDS[:2])
    writer.write_batch(RECORDS[2:])
    writer.close(complete=True)
    assert [r.data for r in iter_records(out)] == RECORDS
    assert [r for _, r in format_for(out, "output").read_output(out, "output")] == RECORDS
    assert load_done(out, id_key="id").count == 3
    assert not any(p.exists() for p in format_for(out, "output").side_files(out))


def test_csv_round_trip_is_lossy_for_types_only(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    writer = open_writer(out, resume=False)
    writer.write_batch(RECORDS)
    writer.close(complete=True)
    back = [r.data for r in iter_records(out)]
    # Strings (commas, quotes and newlines included) come back as they were; everything else
    # as its JSON text: the documented loss.
    assert [r["video"] for r in back] == [r["video"] for r in RECORDS]
    assert [r["id"] for r in back] == ["1", "2", "3"]
    assert [json.loads(r["meta"]) for r in back] == [r["meta"] for r in RECORDS]
    assert [json.loads(r["tags"]) for r in back] == [r["tags"] for r in RECORDS]
    assert list(back[0]) == list(RECORDS[0])


def test_every_format_is_registered_once_by_extension() -> None:
    exts = [e for f in FORMATS for e in f.extensions]
    assert len(exts) == len(set(exts)) and {".jsonl", ".ndjson", ".json", ".parquet", ".csv"} <= set(exts)
    with pytest.raises(VidcapError, match=r"unsupported input file extension '\.txt'; use .*\.parquet"):
        format_for(Path("x.txt"), "input")


def typed_input(path: Path, rows: int = 7, group: int = 3) -> pa.Table:
    table = pa.table(
        {
            "id": pa.array(range(rows), pa.int32()),
            "video": [f"v{i}.mp4" for i in range(rows)],
            "tags": pa.array([[f"t{i}"] * (i % 3) for i in range(rows)], pa.list_(pa.string())),
            "meta": pa.array(
                [{"w": i, "src": f"s{i}"} for i in range(rows)],
                pa.struct([("w", pa.int16()), ("src", pa.string())]),
            ),
        }
    )
    pq.write_table(table, path, row_group_size=group)
    return table


def test_parquet_input_columns_keep_their_types_and_vidcaps_fields_are_typed(tmp_path: Path) -> None:
    data = tmp_path / "in.parquet"
    table = typed_input(data)
    records = [r.data for r in iter_records(data)]
    assert records == table.to_pylist()
    out = tmp_path / "out.parquet"
    writer = open_writer(out, resume=False, like=data)
    for batch in (records[i : i + 3] for i in range(0, len(records), 3)):
        writer.write_batch([vidcap_fields(r, r["id"]) for r in batch])
    writer.close(complete=True)
    schema = pq.read_schema(out)
    for field in table.schema:
        assert schema.field(field.name).type == field.type
    assert schema.field("caption").type == pa.string() and schema.field("error").type == pa.string()
    assert schema.field("info").type.field("flags").type == pa.list_(pa.string())
    assert schema.field("info").type.field("prompt_tokens").type == pa.int64()
    assert [r.data for r in iter_records(out)] == [vidcap_fields(r, r["id"]) for r in records]
    assert pq.ParquetFile(out).metadata.num_row_groups == 3  # one per flushed batch


def test_parquet_shards_are_row_ranges_that_tile_the_rows(tmp_path: Path) -> None:
    data = tmp_path / "in.parquet"
    table = typed_input(data, rows=10, group=3)
    for n in (1, 3, 4, 11):
        spans = [find_span(data, i, n) for i in range(n)]
        assert [(s.start, s.stop) for s in spans] == [
            (r.start, r.stop) for r in (shard_range(10, i, n) for i in range(n))
        ]
        assert {s.unit for s in spans} == {"row"}
        read = [r for s in spans for r in SpanReader(s)]
        assert [r.data for r in read] == table.to_pylist()
        assert [r.line for r in read] == list(range(1, 11))


def test_a_killed_parquet_writer_resumes_from_its_durable_parts_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    records = [{"id": f"{i:03d}", "caption": f"c{i}", "n": i} for i in range(10)]
    writer = open_writer(out, resume=False)
    writer.write_batch(records[:4])
    writer.write_batch(records[4:6])
    # A kill now: no close; and one more part was being written (a temp file, half of it).
    (parts_dir(out) / ".part-000002.parquet.tmp-123-abcd").write_bytes(b"PAR1 half a row group")
    del writer
    assert not out.exists()
    done = load_done(out, id_key="id")
    assert (done.count, done.source) == (6, parts_dir(out))
    assert done.ids == {r["id"] for r in records[:6]}
    resumed = open_writer(out, resume=True)
    resumed.write_batch(records[6:])
    resumed.close(complete=True)
    assert [r.data for r in iter_records(out)] == records
    assert not parts_dir(out).exists()
    # Resuming a finished output continues it (it becomes the first part).
    again = open_writer(out, resume=True)
    again.write_batch([{"id": "010", "caption": "c10", "n": 10}])
    again.close(complete=False)
    assert [r.data["n"] for r in iter_records(out)] == list(range(11))


def test_a_sigkilled_parquet_writer_process_resumes_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    child = (
        "import sys, time\n"
        "from vidcap.io.writer import open_writer\n"
        "w = open_writer(sys.argv[1], resume=False)\n"
        "for b in range(1000):\n"
        "    w.write_batch([{'id': b * 5 + i, 'caption': 'x' * 50} for i in range(5)])\n"
        "    print(b, flush=True)\n"
        "    time.sleep(0.01)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for _ in range(5):
        proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = load_done(out, id_key=None).count
    assert done >= 25 and done % 5 == 0
    writer = open_writer(out, resume=True)
    writer.write_batch([{"id": i, "caption": "x" * 50} for i in range(done, done + 5)])
    writer.close(complete=True)
    assert [r.data["id"] for r in iter_records(out)] == list(range(done + 5))


def test_overwrite_keeps_the_old_parquet_output_until_the_first_batch(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    format_for(out, "output").write_file(out, RECORDS)
    fresh = open_writer(out, resume=False)
    assert not fresh.touched_output
    fresh.close(complete=False)  # failed before any batch: the old output stays
    assert [r.data for r in iter_records(out)] == RECORDS
    fresh = open_writer(out, resume=False)
    fresh.write_batch([{"id": 9}])
    assert fresh.touched_output and load_done(out, id_key=None).count == 1
    fresh.close(complete=True)
    assert [r.data for r in iter_records(out)] == [{"id": 9}]


def test_values_parquet_cannot_hold_are_named(tmp_path: Path) -> None:
    check = SchemaCheck().check
    assert check({"n": 1, "m": None, "l": [1], "s": {"a": 1}}) is None
    assert check({"n": 2, "m": "x", "l": [], "s": {"b": "y"}}) is None  # null fits; object fields merge
    assert "field 'n' holds a string here but an integer in an earlier record" in (check({"n": "3"}) or "")
    assert "field 'n' holds a float" in (check({"n": 2.5}) or "")
    assert "field 's.a' holds a string" in (check({"s": {"a": "z"}}) or "")
    assert "beyond Parquet's 64-bit integers" in (SchemaCheck().check({"big": 2**64}) or "")
    assert "empty object" in (SchemaCheck().check({"e": {}}) or "")
    with pytest.raises(VidcapError, match=r"out\.parquet: cannot be written as Parquet: field 'x'"):
        open_writer(tmp_path / "out.parquet", resume=False).write_batch([{"x": 1}, {"x": "1"}])


def test_a_run_refuses_a_parquet_output_of_mixed_types_before_any_work(
    tmp_path: Path, tiny_model: Path
) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", [{"video": "a.mp4", "n": 1}, {"video": "b.mp4", "n": "two"}])
    out = tmp_path / "out.parquet"
    result = run_vidcap("run", "--input", str(data), "--output", str(out), "--model", str(tiny_model))
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert f"{data}:2: cannot be written as Parquet: field 'n' holds a string" in message, result.stderr
    assert not out.exists() and not parts_dir(out).exists()


def parquet_shard(folder: Path, data: Path, index: int, n: int) -> Path:
    """A shard output as the runner leaves it: the records of its row range, then its summary."""
    span = find_span(data, index, n)
    out = folder / f"out.{index}.parquet"
    writer = open_writer(out, resume=False, like=data)
    writer.write_batch([vidcap_fields(r.data, r.index) for r in SpanReader(span)])
    writer.close(complete=True)
    summary = {
        "shard": {"index": index, "count": n},
        "records_in_shard": span.stop - span.start,
        "complete": True,
        "id_key": "id",
        "fingerprint": {
            "version": 1,
            "input": {
                "path": str(data.resolve()),
                "size": span.size,
                "format": "parquet",
                "units": span.units,
            },
            "span": {"start": span.start, "stop": span.stop, "digest": "blake2b-128:00"},
        },
    }
    summary_path(out).write_text(json.dumps(summary))
    return out


@pytest.mark.parametrize("ext", [".parquet", ".jsonl"])
def test_parquet_shards_merge_in_input_order_keeping_types(tmp_path: Path, ext: str) -> None:
    data = tmp_path / "in.parquet"
    table = typed_input(data, rows=8, group=3)
    shards = [parquet_shard(tmp_path, data, i, 3) for i in (2, 0, 1)]
    merged = tmp_path / f"merged{ext}"
    report = merge_outputs(shards, merged)
    assert report.records_per_shard == (3, 3, 2)
    rows = [r.data for r in iter_records(merged)]
    assert [r["id"] for r in rows] == list(range(8))
    assert [{k: r[k] for k in table.column_names} for r in rows] == table.to_pylist()
    if ext == ".parquet":
        schema = pq.read_schema(merged)
        assert all(schema.field(f.name).type == f.type for f in table.schema)


def test_file_storage_reads_and_writes_csv_and_parquet_steps(tmp_path: Path) -> None:
    data = tmp_path / "in.parquet"
    table = typed_input(data, rows=4)
    storage = FileStorage(
        str(data), cache_path=str(tmp_path / "cache"), file_name_prefix="s", cache_type="parquet"
    )
    step = storage.step()
    assert step.read("dict") == table.to_pylist()
    written = Path(step.write([dict(r, caption="c") for r in step.read("dict")]))
    assert written == tmp_path / "cache" / "s_step1.parquet"
    assert pq.read_schema(written).field("id").type == pa.int32()  # the step's input types kept
    assert storage.step().read("dict") == [dict(r, caption="c") for r in table.to_pylist()]

    csv_in = tmp_path / "in.csv"
    csv_in.write_text('id,video,meta\n007,a.mp4,"{""w"": 1}"\n8,,\n')
    storage = FileStorage(
        str(csv_in), cache_path=str(tmp_path / "cache"), file_name_prefix="c", cache_type="csv"
    )
    step = storage.step()
    assert step.read("dict") == [
        {"id": "007", "video": "a.mp4", "meta": '{"w": 1}'},
        {"id": "8", "video": None, "meta": None},
    ]
    path = Path(step.write([{"id": "007", "n": 3, "tags": ["a", "b"], "none": None}]))
    assert path.read_text() == 'id,n,tags,none\n007,3,"[""a"",""b""]",\n'
    assert storage.step().read("dict") == [{"id": "007", "n": "3", "tags": '["a","b"]', "none": None}]
