"""Text-only runs (``vidcap run --no-video``): a text model's second pass over caption records.

The prompt is filled from each record's fields; the pass's own fields are named after its output
key. End to end on the real vLLM engine: a tiny random-weight Qwen2 text model refines a caption
output the tiny Qwen2.5-VL wrote, and a SIGKILLed refinement resumes (answers are noise). The
killed run is a real ``vidcap`` process; the runs after it share one engine, in-process.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import TINY_ENGINE, run_vidcap, run_vidcap_in_process, write_jsonl
from vidcap.config import build_config, needs_video_model
from vidcap.errors import RecordError, VidcapError
from vidcap.io.jsonio import loads
from vidcap.io.records import iter_records
from vidcap.pipeline.text_pass import text_prompt
from vidcap.prompts import DiyVideoPrompt


def test_prompt_renders_caption_windows_and_json_fields() -> None:
    windows = [
        {"start": 0.0, "end": 12.0, "caption": "A dog  runs.\n", "status": "ok"},
        {"start": 12.0, "end": 20.25, "caption": None, "status": "error"},
    ]
    record = {"caption": "Two dogs.", "windows": windows}
    assert text_prompt(record, DiyVideoPrompt("Fix: {caption}")) == "Fix: Two dogs."
    assert text_prompt(record, DiyVideoPrompt("{windows}")) == (
        "From 0.0 s to 12.0 s: A dog runs.\nFrom 12.0 s to 20.2 s: (no caption)"
    )
    structured = {"caption": {"subject": "a cat", "action": "sleeps"}, "id": 1}
    assert text_prompt(structured, DiyVideoPrompt("{subject} / {action}")) == "a cat / sleeps"
    assert text_prompt(structured, DiyVideoPrompt("{caption}")) == '{"subject":"a cat","action":"sleeps"}'
    # A JSON caption kept as text (e.g. from a CSV output) gives its fields too.
    assert text_prompt({"caption": '{"subject": "a fox"}'}, DiyVideoPrompt("{subject}")) == "a fox"


def test_a_missing_field_is_the_records_one_line_error() -> None:
    with pytest.raises(RecordError, match="needs field 'summary'"):
        text_prompt({"caption": "x"}, DiyVideoPrompt("{summary}"))
    with pytest.raises(RecordError, match="'windows' item 1 is not a window"):
        text_prompt({"windows": ["x"]}, DiyVideoPrompt("{windows}"))


def test_keys_follow_the_output_key_unless_given() -> None:
    run = build_config({}, {"no_video": True, "output_key": "caption_refined", "prompt": "{caption}"}).run
    assert (run.status_key, run.error_key, run.info_key) == (
        "caption_refined_status",
        "caption_refined_error",
        "caption_refined_info",
    )
    run = build_config(
        {}, {"no_video": True, "output_key": "refined", "status_key": "st", "prompt": "{caption}"}
    ).run
    assert (run.status_key, run.error_key, run.info_key) == ("st", "refined_error", "refined_info")
    assert build_config({}, {"output_key": "refined"}).run.status_key == "status"  # a video run: unchanged


def test_only_video_runs_need_a_video_model() -> None:
    """The branch point of a model-family check: a text pass runs any text model."""
    assert needs_video_model(build_config({}, {}))
    assert not needs_video_model(build_config({}, {"no_video": True, "prompt": "{caption}"}))


def test_no_video_needs_a_prompt_and_no_window() -> None:
    with pytest.raises(VidcapError, match="--no-video needs --prompt"):
        build_config({}, {"no_video": True})
    with pytest.raises(VidcapError, match="cannot take --window"):
        build_config({}, {"no_video": True, "prompt": "{caption}", "window": 5.0})


@pytest.fixture(scope="module")
def tiny_text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen2 text model (Qwen2ForCausalLM), built offline."""
    from vidcap.tiny_model import build_tiny_text_model

    return build_tiny_text_model(tmp_path_factory.mktemp("model") / "tiny-qwen2")


@pytest.fixture(scope="module")
def text_engine(tiny_text_model: Path):
    """A started vLLM engine on the tiny text model, as ``vidcap run --no-video ...
    _engine_flags(tiny_text_model)`` starts it, shared by this file's in-process runs."""
    from vidcap.engines.vllm_engine import VllmEngine

    flags = {"model": str(tiny_text_model), "max_tokens": 8, **TINY_ENGINE}
    config = build_config({}, {"no_video": True, "prompt": "{caption}", **flags})
    engine = VllmEngine(config.engine, config.generation)
    engine.start(max_videos_per_prompt=0)  # a text pass's: no room for videos
    yield engine
    engine.close()


def _engine_flags(model: Path) -> list[str]:
    return [
        "--model",
        str(model),
        "--max-model-len",
        str(TINY_ENGINE["max_model_len"]),
        "--gpu-memory-utilization",
        str(TINY_ENGINE["gpu_memory_utilization"]),
        "--enforce-eager",
        "--max-tokens",
        "8",
    ]


RECORDS = 48


@pytest.mark.engine
def test_refine_a_caption_output_and_resume_after_sigkill(
    tmp_path: Path, clip_dir: Path, vllm_engine, tiny_text_model: Path, text_engine
) -> None:
    from tests.test_batch_jobs import start_vidcap, wait_for_lines
    from vidcap.executors.job import run_captioning

    # Step 1: captions from the (tiny) VLM, on the shared engine.
    clips = ["a.mp4", "b.mp4"]
    records = [{"id": f"{i:03d}", "video": str(clip_dir / clips[i % 2])} for i in range(RECORDS)]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    captions = tmp_path / "captions.jsonl"
    first = build_config(
        {},
        {
            "input": str(data),
            "output": str(captions),
            "model": vllm_engine.config.model,
            "max_tokens": 8,
            "fps": 1.0,
            "min_pixels": 12544,
            "max_pixels": 50176,
            "decode_workers": 1,
            **TINY_ENGINE,
        },
    )
    run_captioning(first, vllm_engine)
    # Step 2: a text model refines them; killed mid-run, then the same command again.
    refine = tmp_path / "refine.txt"
    refine.write_text("Rewrite this video caption in one clear sentence: {caption}\n")
    out = tmp_path / "refined.jsonl"
    args = [
        "run",
        str(captions),
        "-o",
        str(out),
        "--no-video",
        "--prompt-file",
        str(refine),
        "--output-key",
        "caption_refined",
        "--batch-size",
        "2",
        "--max-in-flight",
        "2",
        "-q",
        *_engine_flags(tiny_text_model),
    ]
    proc = start_vidcap(args)
    wait_for_lines(out, 4, proc, timeout=480)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: main process and engine
    proc.wait(timeout=60)
    written = [r.data["id"] for r in iter_records(out)]
    assert 4 <= len(written) < RECORDS, "the kill came too late to test anything"

    # The same command resumes it (in this process, on the shared engine: a resume is the runner's).
    rerun = run_vidcap_in_process(text_engine, *args)
    assert rerun.returncode in (0, 1), rerun.stderr
    first_pass = list(iter_records(captions))
    refined = list(iter_records(out))
    assert [r.data["id"] for r in refined] == [r["id"] for r in records]  # every record once, in order
    for before, after in zip(first_pass, refined, strict=True):
        # The first pass's fields are kept as they were; the second pass's sit beside them.
        assert {k: after.data[k] for k in before.data} == before.data
        status = after.data["caption_refined_status"]
        if before.data["status"] == "ok":
            assert status in ("ok", "error")
            assert after.data["caption_refined_info"]["prompt_tokens"] > 0 or status == "error"
        if status == "error":  # random weights may answer nothing: that is the one error allowed
            assert after.data["caption_refined_error"] == "the model returned an empty caption"
    summary = loads(out.with_name(out.name + ".summary.json").read_bytes())
    assert summary["complete"] is True and summary["resumed"] >= len(written) - 1
    assert summary["status_key"] == "caption_refined_status" and summary["videos_per_s"] == 0


@pytest.mark.engine
def test_a_record_without_the_prompts_field_fails_alone(
    tmp_path: Path, tiny_text_model: Path, text_engine
) -> None:
    data = write_jsonl(tmp_path / "c.jsonl", [{"caption": "a dog"}, {"other": 1}, {"caption": "a cat"}])
    out = tmp_path / "o.jsonl"
    result = run_vidcap_in_process(
        text_engine, "run", str(data), "-o", str(out), "--no-video", "--prompt", "Better: {caption}",
        "--output-key", "better", "-q", *_engine_flags(tiny_text_model),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    rows = [r.data for r in iter_records(out)]
    assert rows[1]["better_status"] == "error"
    assert rows[1]["better_error"] == "prompt template needs field 'caption', which the record does not have"
    assert [r["better_status"] for r in (rows[0], rows[2])] != ["error", "error"] or all(
        r["better_error"] == "the model returned an empty caption" for r in (rows[0], rows[2])
    )


@pytest.mark.engine
def test_the_transformers_backend_runs_a_text_model(tmp_path: Path, tiny_text_model: Path) -> None:
    windows = [{"start": 0.0, "end": 5.0, "caption": "a dog", "status": "ok"}]
    data = write_jsonl(tmp_path / "c.jsonl", [{"caption": "a dog"}, {"caption": "x", "windows": windows}])
    out = tmp_path / "o.jsonl"
    result = run_vidcap(
        "run", str(data), "-o", str(out), "--no-video", "--prompt", "Better: {windows}", "--backend",
        "transformers", "--device", "cpu", "--model", str(tiny_text_model), "--max-tokens", "4", "-q",
        "--output-key", "better", timeout=600,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # the first record has no windows
    rows = [r.data for r in iter_records(out)]
    assert rows[0]["better_error"] == "prompt template needs field 'windows', which the record does not have"
    assert rows[1]["better_info"]["prompt_tokens"] > 0


def test_a_text_pass_starts_no_decode_workers_and_keeps_the_conversation(
    tmp_path: Path, tiny_model: Path
) -> None:
    """Through the runner with a fake engine: prompts from the fields, no decode processes, the
    first pass's conversation as it was."""
    from tests.test_runner_errors import FakeEngine
    from vidcap.executors.job import Job, RunHooks
    from vidcap.video.pool import OrderedPool

    pools: list[int] = []

    def pool(*args, **kwargs):  # the run's decode pool (RunHooks.decode_pool), noting its workers
        pools.append(kwargs["workers"])
        return OrderedPool(*args, **kwargs)

    conversation = [{"from": "human", "value": "Describe the video."}]
    records = [{"caption": f"dog {i}", "conversation": conversation} for i in range(3)]
    data = write_jsonl(tmp_path / "c.jsonl", records)
    out = tmp_path / "o.jsonl"
    values = {"input": str(data), "output": str(out), "model": "fake", "no_video": True}
    config = build_config({}, {**values, "prompt": "Fix: {caption}", "output_key": "fixed"})
    Job.plan(config).run(FakeEngine(tiny_model), RunHooks(decode_pool=pool))
    assert pools == [0]
    rows = [r.data for r in iter_records(out)]
    assert [r["fixed"] for r in rows] == ["caption for 0", "caption for 1", "caption for 2"]
    assert all(r["conversation"] == conversation and r["fixed_status"] == "ok" for r in rows)
