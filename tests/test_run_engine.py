"""End to end on the real vLLM engine (CPU build) and the tiny random-weight model.

The captions are noise; these tests check what reaches the model and what reaches the
output: one record out per record in, fields untouched, statuses, token counts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from vidcap.config import RunConfig, RunOptions, build_config
from vidcap.engines.caption_engine import CaptionRequest, VideoInput
from vidcap.errors import VidcapError
from vidcap.executors.job import run_captioning
from vidcap.io.jsonio import loads
from vidcap.io.records import iter_records
from vidcap.video.load import load_video
from vidcap.video.types import SamplingOptions

AWKWARD = {
    "id": "007",
    "big": 123456789012345678901234567890,
    "neg": -9223372036854775809,
    "float": 1.5e-7,
    "flag": True,
    "off": False,
    "nothing": None,
    "text": "café ☕ 日本語 עברית 🎬",
    "nested": {"a": [1, {"b": None}], "z": {"y": "x"}},
    "empty": {},
}


def config_for(input_path: Path, output: Path, **values) -> RunConfig:
    base = {
        "input": str(input_path),
        "output": str(output),
        "model": "tiny",
        "decode_workers": 1,
        "batch_size": 3,
    }
    base.update(values)
    return build_config({}, base)


def read_output(path: Path) -> list[dict]:
    return [r.data for r in iter_records(path)]


def test_every_record_captioned_and_fields_untouched(vllm_engine, clip_dir: Path, tmp_path: Path) -> None:
    records = [
        {**AWKWARD, "video": [str(clip_dir / "a.mp4")], "conversation": [{"from": "human", "value": ""}]},
        {
            "id": "2",
            "video": "b.mp4",
            "conversation": [{"from": "human", "value": ""}],
            "meta": {"k": [1, 2]},
        },
        {"id": "3", "video": ["c.avi", "tall.mkv"]},  # two videos, one caption
        {"id": "4", "video": "tall.mkv", "conversation": [{"from": "human", "value": "What moves?"}]},
    ]
    data = write_jsonl(clip_dir / f"data-{tmp_path.name}.jsonl", records)  # relative paths: clip_dir
    out = tmp_path / "out.jsonl"
    result = run_captioning(config_for(data, out), vllm_engine)

    rows = read_output(out)
    assert len(rows) == len(records)
    for source, row in zip(records, rows, strict=True):
        assert row["status"] == "ok", (row["error"], row)
        assert isinstance(row["caption"], str) and row["caption"].strip()
        assert row["error"] is None
        for key, value in source.items():
            if key != "conversation":
                assert row[key] == value and type(row[key]) is type(value), key
        assert list(row)[: len(source)] == list(source)  # key order kept, new keys after
    assert rows[0]["conversation"] == [{"from": "human", "value": "Please describe the video in detail."}]
    assert rows[3]["conversation"] == [{"from": "human", "value": "What moves?"}]  # the record's own prompt
    # big integers survive byte-for-byte in the file, not only as Python values
    assert b"123456789012345678901234567890" in out.read_bytes()
    assert result.stats.ok == 4 and result.exit_code == 0
    summary = loads((tmp_path / "out.jsonl.summary.json").read_bytes())
    assert summary["status_counts"] == {"ok": 4, "error": 0, "skipped": 0}
    assert summary["complete"] is True and summary["records_in_shard"] == 4
    assert summary["prompt_tokens"] > 0 and summary["generated_tokens"] > 0


def test_prompt_tokens_match_the_plan(vllm_engine, clip_dir: Path) -> None:
    """The frames reach the engine at their planned size: its prompt length equals our estimate."""
    for name, options in [
        ("a.mp4", SamplingOptions()),
        ("b.mp4", SamplingOptions(fps=None, nframes=6)),
        ("tall.mkv", SamplingOptions(max_pixels=64 * 28 * 28, min_pixels=4 * 28 * 28)),
        ("c.avi", SamplingOptions(fps=4.0, min_pixels=300 * 28 * 28, max_pixels=400 * 28 * 28)),
    ]:
        loaded = load_video(str(clip_dir / name), options)
        video = VideoInput(loaded.frames, loaded.plan.processor_metadata(), loaded.plan.video_tokens)
        request = CaptionRequest(request_id=name, prompt="Describe.", videos=[video])
        estimate = vllm_engine.count_prompt_tokens(request)
        (output,) = vllm_engine.generate([request])
        assert output.error is None, output.error
        assert output.prompt_tokens == estimate, (name, loaded.plan)
        assert loaded.frames.shape == (
            loaded.plan.nframes,
            loaded.plan.resized_height,
            loaded.plan.resized_width,
            3,
        )


def test_bad_videos_get_error_status_and_the_rest_go_on(vllm_engine, clip_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.mp4").write_text("this is not a video")
    good = clip_dir / "a.mp4"
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[:200])
    records = [
        {"id": "ok1", "video": str(good)},
        {"id": "missing", "video": str(tmp_path / "missing.mp4")},
        {"id": "text", "video": str(tmp_path / "notes.mp4")},
        {"id": "cut", "video": str(truncated)},
        {"id": "none", "video": []},
        {"id": "tmpl", "video": str(good)},
        {"id": "ok2", "video": str(good)},
    ]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    out = tmp_path / "out.jsonl"
    # No record has 'topic': a typo, refused before the engine is used and before anything is written.
    with pytest.raises(VidcapError, match=r"template field '\{topic\}' is in none of the 6 records"):
        run_captioning(config_for(data, out), vllm_engine, template="Describe {topic} in the video.")
    assert not out.exists()

    # One record lacks it: that record fails alone.
    with_topic = [r if r["id"] == "tmpl" else {**r, "topic": "the motion"} for r in records]
    data2 = write_jsonl(tmp_path / "data2.jsonl", with_topic)
    out2 = tmp_path / "out2.jsonl"
    result = run_captioning(config_for(data2, out2), vllm_engine, template="Describe {topic} in the video.")
    assert result.exit_code == 1
    rows = {r["id"]: r for r in read_output(out2)}
    assert list(rows) == [r["id"] for r in records]
    assert [rows[k]["status"] for k in ("ok1", "tmpl", "ok2")] == ["ok", "error", "ok"]
    assert "topic" in rows["tmpl"]["error"] and rows["tmpl"]["caption"] is None
    assert rows["none"]["status"] == "skipped" and rows["none"]["caption"] is None
    assert "missing.mp4" in rows["missing"]["error"]
    assert rows["text"]["error"] and rows["cut"]["error"]
    for row in rows.values():
        assert row["error"] is None or row["caption"] is None  # an error text is never a caption


def test_prompt_longer_than_max_model_len_fails_only_that_record(
    vllm_engine, clip_dir: Path, tmp_path: Path
) -> None:
    """Big frames x many frames exceed the engine's 4096 tokens: refused before generation."""
    data = write_jsonl(
        tmp_path / "data.jsonl",
        [
            {"id": "short", "video": str(clip_dir / "a.mp4"), "video_end": 0.5},
            {"id": "long", "video": str(clip_dir / "b.mp4")},
        ],
    )
    out = tmp_path / "out.jsonl"
    config = config_for(data, out, nframes=16, min_pixels=640 * 28 * 28, max_pixels=768 * 28 * 28, fps=None)
    config = dataclasses.replace(config, sampling=dataclasses.replace(config.sampling, min_frames=2))
    run_captioning(config, vllm_engine)
    rows = {r["id"]: r for r in read_output(out)}
    assert rows["short"]["status"] == "ok", rows["short"]["error"]
    assert rows["long"]["status"] == "error"
    assert "prompt too long" in rows["long"]["error"] and "--max-model-len" in rows["long"]["error"]


def test_json_array_output_and_num_captions(vllm_engine, clip_dir: Path, tmp_path: Path) -> None:
    data = write_jsonl(
        tmp_path / "data.jsonl", [{"video": str(clip_dir / "a.mp4")}, {"video": str(clip_dir / "b.mp4")}]
    )
    out = tmp_path / "out.json"
    run_captioning(config_for(data, out), vllm_engine)
    rows = loads(out.read_bytes())
    assert isinstance(rows, list) and len(rows) == 2
    assert all(isinstance(r["caption"], str) for r in rows)


@pytest.mark.parametrize("opts_field", ["output_key", "status_key", "error_key"])
def test_field_names_are_configurable(opts_field: str, vllm_engine, clip_dir: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", [{"video": str(clip_dir / "a.mp4")}])
    out = tmp_path / "out.jsonl"
    run_captioning(config_for(data, out, **{opts_field: "custom_name"}), vllm_engine)
    (row,) = read_output(out)
    assert "custom_name" in row
    assert getattr(RunOptions(), opts_field) not in row


def test_seeded_batch_larger_than_one_engine_step(vllm_engine, clip_dir: Path, tmp_path: Path) -> None:
    """Regression: on vLLM's CPU build, seeded requests whose prefill was split killed the engine."""
    assert vllm_engine.generation.seed is not None
    clips = ["a.mp4", "b.mp4", "c.avi", "tall.mkv"]
    records = [{"id": i, "video": str(clip_dir / clips[i % 4])} for i in range(40)]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    out = tmp_path / "out.jsonl"
    result = run_captioning(config_for(data, out, batch_size=40, fps=4.0), vllm_engine)
    assert result.stats.prompt_tokens > 16384  # well past one engine step's token budget
    assert [r["status"] for r in read_output(out)] == ["ok"] * 40


def test_hung_decode_times_out_and_the_run_goes_on(vllm_engine, clip_dir: Path, tmp_path: Path) -> None:
    """A named pipe posing as a video blocks the decoder's open() forever: killed at the timeout."""
    import os

    fifo = tmp_path / "stuck.mp4"
    os.mkfifo(fifo)
    records = [
        {"id": "a", "video": str(clip_dir / "a.mp4")},
        {"id": "stuck", "video": str(fifo)},
        {"id": "b", "video": str(clip_dir / "b.mp4")},
    ]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    out = tmp_path / "out.jsonl"
    run_captioning(config_for(data, out, decode_timeout=3.0), vllm_engine)
    rows = {r["id"]: r for r in read_output(out)}
    assert rows["stuck"]["status"] == "error" and "timed out after 3 s" in rows["stuck"]["error"]
    assert rows["a"]["status"] == rows["b"]["status"] == "ok"


def test_bad_lines_skipped_are_reported(vllm_engine, clip_dir: Path, tmp_path: Path, caplog) -> None:
    data = tmp_path / "data.jsonl"
    video = clip_dir / "a.mp4"
    lines = [
        f'{{"id": "1", "video": "{video}"}}',
        '{"id": "2", "video": ',
        "[1, 2]",
        f'{{"id": "3", "video": "{video}"}}',
    ]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    with caplog.at_level("WARNING", logger="vidcap"):
        result = run_captioning(config_for(data, out, on_bad_line="skip"), vllm_engine)
    assert [r["id"] for r in read_output(out)] == ["1", "3"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"{data}:2:" in w and "skipped" in w for w in warnings), warnings
    assert any(f"{data}:3:" in w for w in warnings), warnings
    assert result.summary_data["bad_lines_skipped"] == 2


def test_system_prompt_reaches_the_model(vllm_engine, clip_dir: Path) -> None:
    loaded = load_video(str(clip_dir / "a.mp4"), SamplingOptions())
    video = VideoInput(loaded.frames, loaded.plan.processor_metadata(), loaded.plan.video_tokens)
    plain = CaptionRequest(request_id="p", prompt="Describe.", videos=[video])
    system = CaptionRequest(
        request_id="s", prompt="Describe.", videos=[video], system_prompt="You caption videos tersely."
    )
    outputs = {o.request_id: o for o in vllm_engine.generate([plain, system])}
    assert outputs["s"].prompt_tokens == vllm_engine.count_prompt_tokens(system)
    assert outputs["s"].prompt_tokens != outputs["p"].prompt_tokens  # the default system turn was replaced
