"""Per-caption info on the real vLLM engine (tiny random model): finish reasons, token counts, flags,
and the HTML report's reading of them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.conftest import write_jsonl
from tests.test_api import generation
from vidcap.config import build_config
from vidcap.executors.job import run_captioning
from vidcap.io.records import iter_records
from vidcap.report.recorded import resolve_fields
from vidcap.report.source import iter_views, open_output


def _run(engine, tmp_path: Path, records: list[dict], **options) -> tuple[list[dict], dict]:
    data = write_jsonl(tmp_path / "data.jsonl", records)
    out = tmp_path / "out.jsonl"
    values = {"input": str(data), "output": str(out), "model": "tiny", "decode_workers": 0, **options}
    config = dataclasses.replace(build_config({}, values), generation=engine.generation)
    result = run_captioning(config, engine)
    return [r.data for r in iter_records(out)], result.summary_data


def test_max_tokens_4_flags_every_caption_truncated_with_matching_token_counts(
    vllm_engine, clip_dir: Path, tmp_path: Path
) -> None:
    clips = ["a.mp4", "b.mp4", "c.avi", "tall.mkv"]
    records = [{"id": i, "video": str(clip_dir / name)} for i, name in enumerate(clips)]
    with generation(vllm_engine, max_tokens=4, temperature=0.7, seed=3):
        rows, summary = _run(vllm_engine, tmp_path, records, info_key="caption_info")
    assert [r["id"] for r in rows] == list(range(len(clips)))
    for row in rows:
        # Random weights may write blank text (an error record): it still has its info.
        assert row["status"] in ("ok", "error")
        info = row["caption_info"]
        assert info["finish_reason"] == "length"
        assert "truncated" in info["flags"]
        assert info["generated_tokens"] == 4
        assert info["prompt_tokens"] > 0
    assert summary["prompt_tokens"] == sum(r["caption_info"]["prompt_tokens"] for r in rows)
    assert summary["generated_tokens"] == sum(r["caption_info"]["generated_tokens"] for r in rows) == 16
    assert summary["flag_counts"]["truncated"] == len(rows)

    # The report reads the renamed info field (from the run's summary) and its flags.
    output = open_output(tmp_path / "out.jsonl", None)
    fields = resolve_fields({}, [output])
    assert fields.info == "caption_info"
    views = list(iter_views([output], fields))
    assert [v.flags[0] for v in views] == ["truncated"] * len(rows)
    assert all(v.info["finish_reason"] == "length" and not v.problems for v in views)


def test_the_same_video_twice_seeded_is_a_duplicate(vllm_engine, clip_dir: Path, tmp_path: Path) -> None:
    # The same frames, prompt and seed give the same text: the second is a duplicate. (Sampled at
    # temperature 1 from the whole vocabulary: greedy decoding of random weights may pick blank tokens.)
    records = [{"video": str(clip_dir / name)} for name in ("a.mp4", "b.mp4", "a.mp4")]
    with generation(vllm_engine, max_tokens=6, temperature=1.0, seed=0):
        rows, summary = _run(vllm_engine, tmp_path, records)
    texts = [r["caption"] for r in rows]
    assert texts[0] == texts[2]
    assert "duplicate" not in rows[0]["info"]["flags"]
    assert "duplicate" in rows[2]["info"]["flags"]
    assert rows[2]["status"] == rows[0]["status"]  # a flag never changes the status
    assert summary["flag_counts"].get("duplicate", 0) == sum("duplicate" in r["info"]["flags"] for r in rows)
