"""The Parquet outputs of one run's shards have one schema, so dataset tools read them together.

vidcap's own columns (caption, status, error, info, windows, caption_notes, caption_raw) have a
fixed type whatever a shard's records hold: a shard with no failure, one whose records all
failed before the engine (no info, no windows), one with both. Before, ``error`` was a null
column where nothing failed and a string column elsewhere, and ``pyarrow.dataset`` /
``datasets.load_dataset`` refused the shard files together.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tests.conftest import write_jsonl
from vidcap.config import build_config
from vidcap.executors.job import run_captioning
from vidcap.io.columns import output_columns
from vidcap.io.formats.parquet import records_table
from vidcap.io.merge_outputs import merge_outputs

# Six records in three shards of two: [ok, ok] (no error), [missing, missing] (no record reached
# the engine: no info, no windows), [ok, missing].
VIDEOS = ["a.mp4", "b.mp4", "gone-1.mp4", "gone-2.mp4", "c.avi", "gone-3.mp4"]


def _shard_outputs(tmp_path: Path, clip_dir: Path, engine, **values) -> list[Path]:
    data = write_jsonl(
        tmp_path / "data.jsonl",
        [{"id": i, "video": str(clip_dir / v)} for i, v in enumerate(VIDEOS)],
    )
    outputs = []
    for index in range(3):
        out = tmp_path / f"out.shard-{index}.parquet"
        config = build_config(
            {},
            {
                "input": str(data),
                "output": str(out),
                "model": "tiny",
                "decode_workers": 1,
                "batch_size": 2,
                "shard_index": index,
                "num_shards": 3,
                **values,
            },
        )
        run_captioning(config, engine)
        outputs.append(out)
    return outputs


def _check_read_together(outputs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pa.Schema:
    schemas = [pq.read_schema(p) for p in outputs]
    assert all(s == schemas[0] for s in schemas), [str(s) for s in schemas]
    table = ds.dataset([str(p) for p in outputs], format="parquet").to_table()
    assert table.column("id").to_pylist() == list(range(len(VIDEOS)))
    statuses = table.column("status").to_pylist()
    assert [s == "error" for s in statuses[2:4]] == [True, True] and statuses[5] == "error"
    assert table.schema.field("error").type == pa.string()
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    loaded = datasets.load_dataset(
        "parquet", data_files=[str(p) for p in outputs], split="train", cache_dir=str(tmp_path / "hf")
    )
    assert loaded["id"] == list(range(len(VIDEOS)))
    merged = tmp_path / "merged.parquet"
    merge_outputs(outputs, merged)
    assert pq.read_schema(merged) == schemas[0]
    return schemas[0]


@pytest.mark.engine
def test_shard_outputs_with_and_without_errors_read_together(
    tmp_path: Path, clip_dir: Path, vllm_engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = _shard_outputs(tmp_path, clip_dir, vllm_engine)
    schema = _check_read_together(outputs, tmp_path, monkeypatch)
    assert schema.field("caption").type == pa.string()
    assert schema.field("info").type.field("prompt_tokens").type == pa.int64()
    assert schema.field("caption_notes").type == pa.list_(pa.string())


@pytest.mark.engine
def test_windowed_shard_outputs_read_together(
    tmp_path: Path, clip_dir: Path, vllm_engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = _shard_outputs(tmp_path, clip_dir, vllm_engine, window=1.0)
    schema = _check_read_together(outputs, tmp_path, monkeypatch)
    window = schema.field("windows").type.value_type
    assert window.field("start").type == pa.float64()
    assert window.field("error").type == pa.string()
    rows = pq.read_table(outputs[1]).to_pylist()  # every video missing: no windows, no info
    assert [r["windows"] for r in rows] == [None, None] and [r["info"] for r in rows] == [None, None]


def test_own_columns_keep_their_type_whatever_the_records_hold() -> None:
    options = {"output_key": "caption", "status_key": "status", "error_key": "error", "info_key": "info"}
    columns = output_columns({**options, "generation": {"num_captions": 2}, "retries": 1})
    ok = {"id": 1, "caption": ["a", "b"], "status": "ok", "error": None}
    failed = {"id": 2, "caption": None, "status": "error", "error": "missing video"}
    tables = [records_table(batch, None, "out.parquet", columns) for batch in ([ok], [failed])]
    assert tables[0].schema == tables[1].schema
    assert tables[0].schema.names == ["id", *columns]
    assert tables[0].schema.field("caption").type == pa.list_(pa.string())
    info = tables[1].schema.field("info").type
    assert info.field("finish_reason").type == pa.list_(pa.string())
    assert info.field("retries").type == pa.int64()
    assert tables[1].column("caption_notes").to_pylist() == [None]
