"""The transformers and openai backends, end to end, on the tiny random-weight model.

The openai backend runs against a real vLLM OpenAI-compatible server (the CPU build), started
once for the session; its error paths (rate limits, refusals, concurrency) run against a small
fake server on 127.0.0.1. Captions are noise (random weights): these tests check what reaches
the model and the output (prompt lengths, record shape, statuses), never caption quality.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from tests.backend_servers import VllmServer, fake_server, free_port, launch_vllm_server
from tests.conftest import write_jsonl
from vidcap.config import EngineConfig, RunConfig, build_config
from vidcap.engines.caption_engine import CaptionEngine, CaptionRequest, GenerationOptions, VideoInput
from vidcap.engines.openai_engine import OpenAIEngine
from vidcap.engines.openai_payload import encode_jpeg
from vidcap.engines.transformers_engine import TransformersEngine
from vidcap.errors import VidcapError
from vidcap.executors.job import run_captioning
from vidcap.io.jsonio import dumps, loads
from vidcap.io.records import iter_records
from vidcap.io.sidecar import read_summary
from vidcap.video.load import load_video
from vidcap.video.synthetic import synthetic_frame
from vidcap.video.types import SamplingOptions

GENERATION = GenerationOptions(max_tokens=12, temperature=0.7, seed=0)
SCHEMA = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": ["walk", "run", "sit"]},
        "count": {"type": "integer", "minimum": 0, "maximum": 9},
    },
    "required": ["action", "count"],
    "additionalProperties": False,
}
DATAFLOW_API_MODEL = "qwen3-vl-8b-instruct"  # the model DataFlow-MM's API example names
# Plans of different frame counts, rates and sizes, as in test_run_engine.
PLANS = [
    ("a.mp4", SamplingOptions()),
    ("b.mp4", SamplingOptions(fps=None, nframes=6)),
    ("tall.mkv", SamplingOptions(max_pixels=64 * 28 * 28, min_pixels=4 * 28 * 28)),
    ("c.avi", SamplingOptions(fps=4.0, min_pixels=300 * 28 * 28, max_pixels=400 * 28 * 28)),
]


def config_for(input_path: Path, output: Path, **values: Any) -> RunConfig:
    base = {"input": str(input_path), "output": str(output), "model": "tiny", "decode_workers": 1}
    return build_config({}, {**base, "batch_size": 3, **values})


def read_output(path: Path) -> list[dict]:
    return [r.data for r in iter_records(path)]


def request_for(
    clip: Path, options: SamplingOptions, request_id: str, prompt: str = "Describe."
) -> CaptionRequest:
    loaded = load_video(str(clip), options)
    video = VideoInput(loaded.frames, loaded.plan.processor_metadata(), loaded.plan.video_tokens)
    return CaptionRequest(request_id=request_id, prompt=prompt, videos=[video])


def synthetic_video(nframes: int, width: int = 56, height: int = 56) -> VideoInput:
    """A planned video without a file: frames 0, 2, 4... of a 10 fps clip."""
    frames = np.stack([synthetic_frame(2 * i, width, height) for i in range(nframes)])
    metadata = {
        "fps": 10.0,
        "total_num_frames": 2 * nframes,
        "frames_indices": [2 * i for i in range(nframes)],
        "do_sample_frames": False,
        "duration": 2 * nframes / 10.0,
        "video_backend": "pyav",
    }
    tokens = (nframes + 1) // 2 * (height // 28) * (width // 28)
    return VideoInput(frames, metadata, tokens)


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def vllm_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """A real vLLM server on the tiny model; it boots in the background until first used."""
    server = launch_vllm_server(tiny_model, tmp_path_factory.mktemp("vllm-server") / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def plain_vllm_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """A real vLLM server started as hosted APIs run: without --trust-request-mm-kwargs. It also
    answers to the model name DataFlow-MM's API example asks for."""
    log = tmp_path_factory.mktemp("plain-vllm-server") / "server.log"
    server = launch_vllm_server(tiny_model, log, trust_mm_kwargs=False, names=("tiny", DATAFLOW_API_MODEL))
    try:
        yield server
    finally:
        server.stop()


def openai_engine(server: VllmServer, tiny_model: Path | None, **generation: Any) -> OpenAIEngine:
    options = {"processor": str(tiny_model)} if tiny_model else {}
    config = EngineConfig(model="tiny", backend="openai", api_base=server.url, engine_kwargs=options)
    engine = OpenAIEngine(config, dataclasses.replace(GENERATION, **generation))
    engine.start(max_videos_per_prompt=2)
    return engine


@pytest.fixture(scope="module")
def hf_engine(tiny_model: Path) -> Iterator[TransformersEngine]:
    engine = TransformersEngine(EngineConfig(model=str(tiny_model), backend="transformers"), GENERATION)
    engine.start(max_videos_per_prompt=2)
    yield engine
    engine.close()


# ---------------------------------------------------------------------------------------------
# both backends against the reference (vLLM in process)


def _shape(rows: list[dict]) -> list[tuple]:
    return [(list(r), r["status"], r["error"] is None, type(r["caption"]).__name__) for r in rows]


@pytest.mark.engine
def test_every_backend_writes_the_same_records(
    vllm_server, vllm_engine, hf_engine, tiny_model: Path, clip_dir: Path, tmp_path: Path
) -> None:
    """Same keys in the same order, same statuses, for vLLM, transformers and openai.

    ``vllm_server`` comes first: it boots while the in-process engine starts."""
    records = [
        {"id": "1", "video": str(clip_dir / "a.mp4"), "conversation": [{"from": "human", "value": ""}]},
        {"id": "2", "video": [str(clip_dir / "c.avi"), str(clip_dir / "tall.mkv")], "meta": {"k": [1]}},
        {"id": "3", "video": str(tmp_path / "missing.mp4")},
        {"id": "4", "video": []},
        {
            "id": "5",
            "video": str(clip_dir / "b.mp4"),
            "conversation": [{"from": "human", "value": "What moves?"}],
        },
    ]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    api = openai_engine(vllm_server, tiny_model)
    shapes = {}
    with vllm_server.explained():
        for name, engine in [("vllm", vllm_engine), ("transformers", hf_engine), ("openai", api)]:
            out = tmp_path / f"{name}.jsonl"
            result = run_captioning(config_for(data, out), engine)
            rows = read_output(out)
            shapes[name] = _shape(rows)
            assert [r["status"] for r in rows] == ["ok", "ok", "error", "skipped", "ok"], name
            assert result.stats.prompt_tokens > 0 and result.stats.generated_tokens > 0, name
            # Every record the engine answered has its info: a finish reason, tokens that add up.
            answered = [r for r in rows if r["status"] == "ok"]
            assert all(r["info"]["finish_reason"] in ("stop", "length") for r in answered), name
            assert sum(r["info"]["generated_tokens"] for r in answered) == result.stats.generated_tokens, name
    api.close()
    assert shapes["transformers"] == shapes["vllm"]
    assert shapes["openai"] == shapes["vllm"]


# ---------------------------------------------------------------------------------------------
# transformers backend


@pytest.mark.engine
def test_transformers_prompt_tokens_match_the_count(hf_engine, tiny_model: Path, clip_dir: Path) -> None:
    """The frames keep their planned size: the model's prompt length equals our count."""
    requests = [request_for(clip_dir / name, options, name) for name, options in PLANS]
    requests.append(
        CaptionRequest(
            "two", "Compare.", [synthetic_video(4), synthetic_video(6, 84, 56)], system_prompt="Brief."
        )
    )
    outputs = hf_engine.generate(requests)  # one padded batch
    for request, output in zip(requests, outputs, strict=True):
        assert output.request_id == request.request_id
        assert output.error is None, output.error
        assert output.prompt_tokens == hf_engine.count_prompt_tokens(request), request.request_id
        assert 1 <= output.generated_tokens <= GENERATION.max_tokens
        # Fewer tokens than max_tokens: a stop token ended it; "length" only at the limit.
        assert len(output.finish_reasons) == len(output.texts or [])
        expected = {"stop"} if output.generated_tokens < GENERATION.max_tokens else {"stop", "length"}
        assert set(output.finish_reasons) <= expected, request.request_id
    text_config = json.loads((tiny_model / "config.json").read_text())["text_config"]
    assert hf_engine.max_model_len == text_config["max_position_embeddings"]


@pytest.mark.engine
def test_transformers_seed_repeats_a_run(hf_engine, clip_dir: Path, tmp_path: Path) -> None:
    records = [{"video": str(clip_dir / name)} for name in ("a.mp4", "b.mp4", "c.avi", "tall.mkv")]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    runs = []
    for out in (tmp_path / "one.jsonl", tmp_path / "two.jsonl"):
        run_captioning(config_for(data, out, batch_size=2), hf_engine)
        runs.append([r["caption"] for r in read_output(out)])
    assert runs[0] == runs[1]
    assert all(isinstance(c, str) and c.strip() for c in runs[0])


@pytest.mark.engine
def test_transformers_bad_request_fails_alone(hf_engine) -> None:
    good = CaptionRequest("good", "Describe.", [synthetic_video(4)])
    empty = synthetic_video(4)
    empty.frames = empty.frames[:0]  # no frames at all: the processor cannot make a video of it
    bad = CaptionRequest("bad", "Describe.", [empty])
    other = CaptionRequest("other", "What moves?", [synthetic_video(6, 84, 56)])
    outputs = hf_engine.generate([good, bad, other])
    assert [o.request_id for o in outputs] == ["good", "bad", "other"]
    assert outputs[1].error and outputs[1].texts is None and "\n" not in outputs[1].error
    for output in (outputs[0], outputs[2]):
        assert output.error is None and output.texts and output.prompt_tokens > 0


@pytest.mark.engine
def test_transformers_greedy_copies_for_several_captions(hf_engine) -> None:
    request = CaptionRequest("g", "Describe.", [synthetic_video(4)])
    saved = hf_engine.generation
    hf_engine.generation = GenerationOptions(max_tokens=6, temperature=0.0, num_captions=2)
    try:
        (output,) = hf_engine.generate([request])
    finally:
        hf_engine.generation = saved
    assert output.texts is not None and len(output.texts) == 2 and output.texts[0] == output.texts[1]
    assert output.generated_tokens > 0 and output.generated_tokens % 2 == 0  # both copies count


# ---------------------------------------------------------------------------------------------
# openai backend against the real vLLM server


@pytest.mark.engine
def test_openai_prompt_tokens_match_the_count(vllm_server, tiny_model: Path, clip_dir: Path) -> None:
    """The server sees the planned frames (rate, indices, size): its prompt length is our count."""
    requests = [request_for(clip_dir / name, options, name) for name, options in PLANS]
    requests += [
        CaptionRequest(
            "two", "Compare.", [synthetic_video(4), synthetic_video(6, 84, 56)], system_prompt="Brief."
        ),
        CaptionRequest("40 frames", "Describe.", [synthetic_video(40)]),  # past vLLM's default 32
    ]
    with vllm_server.explained():
        engine = openai_engine(vllm_server, tiny_model, num_captions=2)
        assert engine.max_model_len == 4096  # read from the server's model card
        # Started with --trust-request-mm-kwargs: the metadata goes with the frames, nothing to note.
        form = engine.form
        assert (form.video_as, form.metadata, form.max_frames) == ("video_url", True, None)
        assert engine.request_notes(requests) == []
        outputs = engine.generate(requests)
        for request, output in zip(requests, outputs, strict=True):
            assert output.error is None, output.error
            assert output.prompt_tokens == engine.count_prompt_tokens(request), request.request_id
            assert output.texts is not None and len(output.texts) == 2
        images = OpenAIEngine(
            dataclasses.replace(
                engine.config, engine_kwargs={"processor": str(tiny_model), "video_as": "images"}
            ),
            GENERATION,
        )
        images.start(max_videos_per_prompt=2)
        for request, output in zip(requests[-2:], images.generate(requests[-2:]), strict=True):
            assert output.error is None, output.error
            assert output.prompt_tokens == images.count_prompt_tokens(request), request.request_id
        # No processor: a rough count, the visual tokens plus a text estimate.
        rough = openai_engine(vllm_server, None)
        for request in requests:
            assert request.video_tokens < rough.count_prompt_tokens(request) < request.video_tokens + 200
    for e in (engine, images, rough):
        e.close()


@pytest.mark.engine
def test_openai_structured_captions(vllm_server, tiny_model: Path, clip_dir: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", [{"video": str(clip_dir / n)} for n in ("a.mp4", "b.mp4")])
    out = tmp_path / "out.jsonl"
    config = config_for(data, out)
    config = dataclasses.replace(
        config, generation=dataclasses.replace(config.generation, json_schema=SCHEMA)
    )
    with vllm_server.explained():
        engine = openai_engine(vllm_server, tiny_model, json_schema=SCHEMA, max_tokens=48)
        run_captioning(config, engine)
        engine.close()
        rows = read_output(out)
        assert [r["status"] for r in rows] == ["ok", "ok"], rows
    for row in rows:
        assert isinstance(row["caption"], dict)
        jsonschema.validate(row["caption"], SCHEMA)


# ---------------------------------------------------------------------------------------------
# openai backend against a plain vLLM server (no --trust-request-mm-kwargs, as hosted APIs run)


@pytest.mark.engine
def test_openai_plain_server_captions_every_record(
    plain_vllm_server, tiny_model: Path, clip_dir: Path, tmp_path: Path
) -> None:
    """The default run captions every record; each record notes what the server changed."""
    records = [{"video": str(clip_dir / name)} for name, _ in PLANS]
    records.append({"video": [str(clip_dir / "a.mp4"), str(clip_dir / "tall.mkv")]})
    data = write_jsonl(tmp_path / "data.jsonl", records)
    out = tmp_path / "out.jsonl"
    with plain_vllm_server.explained():
        # Unseeded: the server enlarges small frames to its own minimum size, and vLLM's CPU build
        # fails a seeded request whose prefill is split in chunks ("CPU Generator does not use offset").
        engine = openai_engine(plain_vllm_server, tiny_model, seed=None)
        # What the real server does: refuses the metadata, drops the frames of a video past 32.
        form = engine.form
        assert (form.video_as, form.metadata, form.max_frames, form.vllm) == ("video_url", False, 32, True)
        assert "trust-request-mm-kwargs" in form.refused[0]
        run_captioning(config_for(data, out), engine)
        rows = read_output(out)
        assert [r["status"] for r in rows] == ["ok"] * len(records), rows
        for row in rows:
            assert row["info"]["prompt_tokens"] > 0
            server_notes = [n for n in row["caption_notes"] if "--trust-request-mm-kwargs" in n]
            assert len(server_notes) == (2 if isinstance(row["video"], list) else 1), row["caption_notes"]
        summary = read_summary(out)
        assert summary is not None
        assert summary["engine"]["video_metadata"] is False and summary["engine"]["max_frames"] == 32
        # A video of 40 frames goes as 32 of them, evenly spread (which ones: the fake-server test),
        # and the server takes it as the 32-frame video it is.
        forty = CaptionRequest("forty", "Describe.", [synthetic_video(40)])
        spread = engine.form.fit(forty)
        assert len(spread.videos[0].frames) == 32
        first_32 = CaptionRequest("first", "Describe.", [synthetic_video(32)])
        sent, kept, first = engine.generate([forty, spread, first_32])
        assert sent.error is None and sent.prompt_tokens == kept.prompt_tokens == first.prompt_tokens
        assert engine.request_notes([forty])[0].startswith("the server keeps at most 32 frames a video")
    engine.close()


DATAFLOW_API_SCRIPT = """\
import os

# 设置 API Key 环境变量
os.environ["DF_API_KEY"] = "your api key"

from vidcap import VideoToCaptionGenerator
from vidcap import APIVLMServing_openai
from vidcap import FileStorage

class VideoCaptionGenerator():
    def __init__(self):
        self.storage = FileStorage(
            first_entry_file_name="./dataflow/example/video_caption/sample_data.json",
            cache_path="./cache",
            file_name_prefix="video_caption_api",
            cache_type="json",
        )

        self.vlm_serving = APIVLMServing_openai(
            api_url="{api_url}",
            key_name_of_api_key="DF_API_KEY",
            model_name="qwen3-vl-8b-instruct",
            image_io=None,
            send_request_stream=False,
            max_workers=10,
            timeout=1800
        )

        self.video_to_caption_generator = VideoToCaptionGenerator(
            vlm_serving = self.vlm_serving,
        )

    def forward(self):
        self.video_to_caption_generator.run(
            storage = self.storage.step(),
            input_image_key="image",
            input_video_key="video",
            input_conversation_key="conversation",
            output_key="caption",
        )

if __name__ == "__main__":
    # This is the entry point for the pipeline
    model = VideoCaptionGenerator()
    model.forward()
"""


@pytest.mark.engine
def test_dataflow_api_script_against_a_plain_server(
    plain_vllm_server, clip_dir: Path, tmp_path: Path
) -> None:
    """DataFlow-MM's ``test/test_video_caption_api.py`` (at a5d48e0), its three dataflow imports
    changed to vidcap and its URL to a plain vLLM server's, in a fresh process: every record
    is captioned."""
    script = DATAFLOW_API_SCRIPT.replace("{api_url}", plain_vllm_server.url)
    assert script.count("from vidcap import") == 3 and "dataflow." not in script
    (tmp_path / "test").mkdir()
    for name in ("a.mp4", "c.avi", "tall.mkv"):
        shutil.copy(clip_dir / name, tmp_path / "test" / name)
    sample = [
        {"video": ["./test/a.mp4"], "conversation": [{"from": "human", "value": ""}]},
        {"id": "2", "video": ["./test/c.avi"], "conversation": [{"from": "human", "value": ""}]},
        {
            "id": "3",
            "video": ["./test/tall.mkv"],
            "conversation": [{"from": "human", "value": "What moves?"}],
        },
    ]
    data = tmp_path / "dataflow" / "example" / "video_caption" / "sample_data.json"
    data.parent.mkdir(parents=True)
    data.write_bytes(dumps(sample))
    (tmp_path / "test_video_caption_api.py").write_text(script)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with plain_vllm_server.explained():
        result = subprocess.run(
            [sys.executable, "test_video_caption_api.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    rows = loads((tmp_path / "cache" / "video_caption_api_step1.json").read_bytes())
    assert [r.get("id") for r in rows] == [None, "2", "3"]
    for row in rows:
        assert row["status"] == "ok", row
        assert any("--trust-request-mm-kwargs" in note for note in row["caption_notes"]), row
    summary = read_summary(tmp_path / "cache" / "video_caption_api_step1.json")
    assert summary is not None and summary["engine"]["video_metadata"] is False


@pytest.mark.engine
def test_dataflow_prompted_vqa_api_pipeline_against_a_plain_server(
    plain_vllm_server, clip_dir: Path, tmp_path: Path
) -> None:
    """DataFlow-MM's ``dataflow/statics/pipelines/api_pipelines/video_caption_api_pipeline.py`` (at
    a5d48e0, verbatim in tests/dataflow_mm/), its dataflow imports changed to vidcap and its URL to
    the plain server's, in a fresh process: every record captioned with the template's prompt."""
    from tests.test_dataflow_video_ops import dataflow_script

    script = dataflow_script("video_caption_api_pipeline.py.txt").replace(
        "https://dashscope.aliyuncs.com/compatible-mode/v1", plain_vllm_server.url
    )
    (tmp_path / "test").mkdir()
    shutil.copy(clip_dir / "a.mp4", tmp_path / "test" / "a.mp4")
    sample = [
        {"video": ["./test/a.mp4"], "conversation": [{"from": "human", "value": "What moves?"}]},
        {"id": "2", "video": ["./test/a.mp4"], "conversation": [{"from": "human", "value": ""}]},
    ]
    data = tmp_path / "dataflow" / "example" / "video_caption" / "sample_data.json"
    data.parent.mkdir(parents=True)
    data.write_bytes(dumps(sample))
    (tmp_path / "pipeline.py").write_text(script)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("DF_API_KEY", None)  # a missing key is EMPTY, what a local server expects
    with plain_vllm_server.explained():
        result = subprocess.run(
            [sys.executable, "pipeline.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    rows = loads((tmp_path / "cache" / "video_caption_api_step1.json").read_bytes())
    assert [r.get("id") for r in rows] == [None, "2"]
    for row in rows:
        assert row["status"] == "ok", row
        assert row["conversation"] == [{"from": "human", "value": "Please describe the video in detail."}]


# ---------------------------------------------------------------------------------------------
# error paths against a fake OpenAI-compatible server


def fake_engine(url: str, **config: Any) -> CaptionEngine:
    generation = config.pop("generation", GENERATION)
    engine = OpenAIEngine(EngineConfig(model="fake", backend="openai", api_base=url, **config), generation)
    engine.start(max_videos_per_prompt=1)
    return engine


def test_rate_limits_are_retried_with_backoff() -> None:
    with fake_server() as server:
        engine = fake_engine(server.url, max_retries=5, concurrency=4)
        assert engine.max_model_len == 1234
        requests = [CaptionRequest(p, p, [synthetic_video(4)]) for p in ("flaky-1", "flaky-2", "ok")]
        outputs = engine.generate(requests)
        assert [o.texts for o in outputs] == [
            ["caption 0 of flaky-1"],
            ["caption 0 of flaky-2"],
            ["caption 0 of ok"],
        ]
        assert outputs[0].prompt_tokens == 11 + 4 and outputs[0].generated_tokens == 3  # 4 frames
        for prompt in ("flaky-1", "flaky-2"):
            arrivals = server.arrivals[prompt]
            assert len(arrivals) == 3  # 429, 429, ok
            first, second = arrivals[1] - arrivals[0], arrivals[2] - arrivals[1]
            # the client's backoff: 0.5 s then 1 s, each less up to 25% jitter, plus our 0.05 s delay
            assert 0.375 <= first < 2.0 and 0.75 <= second < 3.0, (first, second)
        assert len(server.arrivals["ok"]) == 1

        # Out of retries: that record alone fails, with the status in its error.
        engine = fake_engine(server.url, max_retries=1)
        busy, ok = engine.generate([CaptionRequest("b", "busy", []), CaptionRequest("o", "ok-2", [])])
        assert busy.texts is None and "429" in busy.error and "rate limited" in busy.error
        assert ok.texts == ["caption 0 of ok-2"]
        assert len(server.arrivals["busy"]) == 2
        engine.close()


def test_concurrency_limit_and_request_body() -> None:
    with fake_server(delay=0.3) as server:
        generation = GenerationOptions(max_tokens=7, num_captions=2, seed=3, json_schema=SCHEMA)
        engine = fake_engine(server.url, concurrency=3, generation=generation)
        requests = [CaptionRequest(f"r{i}", f"ok-{i}", [synthetic_video(4, 84, 56)]) for i in range(9)]
        outputs = engine.generate(requests)
        engine.close()
    assert [o.request_id for o in outputs] == [r.request_id for r in requests]
    assert all(o.texts and len(o.texts) == 2 for o in outputs)
    assert server.max_in_flight == 3 and len(server.captions) == 9
    body = server.captions[0]
    assert (body["n"], body["seed"], body["max_tokens"]) == (2, 3, 7)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "caption", "schema": SCHEMA},
    }
    assert body["media_io_kwargs"] == {
        "video": {
            "num_frames": 4,
            "do_sample_frames": False,
            "fps": 10.0,
            "frames_indices": [0, 2, 4, 6],
            "total_num_frames": 8,
            "duration": 0.8,
        }
    }
    # One frame's area below, the video's (T + 1) x H x W above (chat.fixed_size_kwargs: both families).
    assert body["mm_processor_kwargs"] == {"size": {"shortest_edge": 84 * 56, "longest_edge": 5 * 84 * 56}}
    video, text = body["messages"][-1]["content"]
    assert text == {"type": "text", "text": body["messages"][-1]["content"][-1]["text"]}
    url = video["video_url"]["url"]
    assert video["type"] == "video_url" and url.startswith("data:video/jpeg;base64,")
    assert _jpeg_sizes(url.removeprefix("data:video/jpeg;base64,").split(",")) == [(84, 56)] * 4


def _jpeg_sizes(frames_b64: list[str]) -> list[tuple[int, int]]:
    import base64

    import av

    sizes = []
    for b64 in frames_b64:
        decoder = av.CodecContext.create("mjpeg", "r")
        (frame,) = decoder.decode(av.Packet(base64.b64decode(b64)))
        sizes.append((frame.width, frame.height))
    return sizes


def test_refusals_of_the_server() -> None:
    """Video metadata refused after the server took it stops the run with the fix; a bad record
    fails alone."""
    with fake_server() as server:
        engine = fake_engine(server.url)
        assert engine.send_metadata  # this server took it when asked at start
        with pytest.raises(VidcapError, match="--trust-request-mm-kwargs") as caught:
            engine.generate(
                [CaptionRequest("a", "ok", [synthetic_video(4)]), CaptionRequest("b", "refuse", [])]
            )
        assert "\n" not in str(caught.value) and "leave send_video_metadata unset" in str(caught.value)
        bad, ok = engine.generate([CaptionRequest("a", "bad", []), CaptionRequest("b", "ok", [])])
        assert bad.error == "server refused the request (400): This model's maximum context length is 1234"
        assert ok.error is None
        images = fake_engine(server.url, engine_kwargs={"video_as": "images", "send_video_metadata": True})
        images.generate([CaptionRequest("a", "ok-images", [synthetic_video(3)])])
        body = server.bodies[-1]
        assert "media_io_kwargs" not in body  # no video is sent, so no video kwargs
        kinds = [part["type"] for part in body["messages"][-1]["content"]]
        assert kinds == ["image_url"] * 3 + ["text"]


def _video_parts(body: dict) -> list[dict]:
    return [part for part in body["messages"][-1]["content"] if part["type"] != "text"]


def test_the_richest_form_a_server_takes_is_found_once() -> None:
    """One probe per form until the server takes one; the run then sends that form, and each
    record's notes say what such a server may change (nothing, where it took the metadata)."""
    sixteen = CaptionRequest("r", "ok-16", [synthetic_video(16)])  # 5 fps: every 2nd frame of 10
    servers = [
        ({}, ("video_url", True, None), 1, "video_url", []),
        (
            {"takes": ("video", "image_url")},
            ("frame_list", False, None),
            3,
            "video",
            ["as a frame list with fps 5;"],
        ),
        (
            {"takes": ("image_url",)},
            ("images", False, None),
            4,
            "image_url",
            ["the 16 frames went as separate images"],
        ),
    ]
    probed = {}
    for takes, form, probes, part, notes in servers:
        with fake_server(**takes) as server:
            engine = fake_engine(server.url)
            assert (engine.form.video_as, engine.form.metadata, engine.form.max_frames) == form, takes
            assert len(server.bodies) == probes, takes  # the start-up probes, one per form tried
            probed[form[0]] = server.bodies[-1]
            (output,) = engine.generate([sixteen])
            engine.close()
            body = server.captions[-1]
            assert output.error is None
            assert {p["type"] for p in _video_parts(body)} == {part}
            assert ("media_io_kwargs" in body) is (form[1] is True)
            found = engine.request_notes([sixteen])
            assert len(found) == len(notes) and all(n in f for n, f in zip(notes, found, strict=True))
    # DashScope's frame list says how far apart the frames are.
    (video,) = _video_parts(probed["frame_list"])  # the probe: 2 frames at 2 fps
    assert video["fps"] == 2.0 and all(u.startswith("data:image/jpeg;base64,") for u in video["video"])


def test_a_plain_vllm_server_gets_frames_without_metadata_spread_to_its_limit() -> None:
    """vLLM without --trust-request-mm-kwargs refuses the metadata (400) and keeps 32 frames of a
    video: the run sends the frames without it, at most 32 evenly spread, and notes both."""
    with fake_server(plain=True) as server:
        engine = fake_engine(server.url)
        form = engine.form
        assert (form.video_as, form.metadata, form.max_frames, form.vllm) == ("video_url", False, 32, True)
        # refused metadata, plain frames, then 32 and 33 frames: the 33rd cost nothing (dropped)
        urls = [b["messages"][-1]["content"][0]["video_url"]["url"] for b in server.bodies]
        assert [url.count(",") for url in urls] == [2, 2, 32, 33]  # a comma before each frame
        forty = CaptionRequest("r", "ok-40", [synthetic_video(40)])
        (output,) = engine.generate([forty])
        body = server.captions[-1]
        assert "media_io_kwargs" not in body and "mm_processor_kwargs" not in body
        (video,) = _video_parts(body)
        frames = video["video_url"]["url"].removeprefix("data:video/jpeg;base64,").split(",")
        assert len(frames) == 32 and output.prompt_tokens == 11 + 32  # nothing dropped by the server
        sent = [base64.b64encode(encode_jpeg(forty.videos[0].frames[i])).decode() for i in (0, 39)]
        assert [frames[0], frames[-1]] == sent  # from the first frame to the last, not the first 32
        assert engine.request_notes([forty]) == [
            "the server keeps at most 32 frames a video: sent 32 of the 40 planned frames, evenly spread",
            "the server (no --trust-request-mm-kwargs) assumes 1 fps where the frames were sampled at 4 fps, "
            "and may resize them with its own pixel bounds",
        ]
        # Counted as sent: 32 frames, not 40.
        thirty_two = CaptionRequest("r", "ok-40", [synthetic_video(32)])
        assert engine.count_prompt_tokens(forty) == engine.count_prompt_tokens(thirty_two)
        engine.close()
    # Told not to send the metadata: the frame limit is still found out.
    with fake_server(plain=True) as server:
        engine = fake_engine(server.url, engine_kwargs={"send_video_metadata": False})
        assert (engine.form.metadata, engine.form.max_frames, len(server.bodies)) == (False, 32, 3)
        engine.close()
    # Started with --media-io-kwargs '{"video": {"num_frames": -1}}': it keeps them all, so do we.
    with fake_server(plain=True, num_frames=None) as server:
        engine = fake_engine(server.url)
        assert (engine.form.metadata, engine.form.max_frames) == (False, None)
        engine.close()
    # Asked for the metadata outright: refused at start, with the fix, in one line.
    with fake_server(plain=True) as server, pytest.raises(VidcapError) as caught:
        fake_engine(server.url, engine_kwargs={"send_video_metadata": True})
    message = str(caught.value)
    assert "takes no video in any form" in message and "--trust-request-mm-kwargs" in message
    assert "\n" not in message
    with fake_server(takes=()) as server, pytest.raises(VidcapError, match=r"video_url: 400 .* images: 400"):
        fake_engine(server.url)


def test_a_plain_server_run_notes_what_the_server_changes(clip_dir: Path, tmp_path: Path) -> None:
    """Through the feed: every record captioned, each with the server's note (whole videos and
    windows)."""
    records = [{"video": str(clip_dir / n)} for n in ("a.mp4", "b.mp4")]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    with fake_server(plain=True) as server:
        engine = fake_engine(server.url)
        for name, values in [("whole", {}), ("windows", {"window": 1.0})]:
            out = tmp_path / f"{name}.jsonl"
            run_captioning(config_for(data, out, **values), engine)
            rows = read_output(out)
            assert [r["status"] for r in rows] == ["ok", "ok"], rows
            # The default plan samples whole clips at 2 fps; a short window gets its minimum of
            # frames, at a higher rate per window (a range over the record's windows).
            rate = r"2 fps" if name == "whole" else r"[\d.]+( to [\d.]+)? fps"
            for row in rows:
                notes = [n for n in row["caption_notes"] if "server" in n]  # one for all windows
                assert len(notes) == 1, notes
                assert re.fullmatch(
                    r"the server \(no --trust-request-mm-kwargs\) assumes 1 fps where the frames were "
                    rf"sampled at {rate}, and may resize them with its own pixel bounds",
                    notes[0],
                ), notes
        engine.close()


def test_unreachable_server_or_unknown_model_is_one_line() -> None:
    port = free_port()  # nothing listens there
    start = time.monotonic()
    with pytest.raises(VidcapError, match=f"cannot reach the server at http://127.0.0.1:{port}/v1"):
        fake_engine(f"http://127.0.0.1:{port}/v1", max_retries=1)
    assert time.monotonic() - start < 10
    with fake_server() as server:
        config = EngineConfig(model="other", backend="openai", api_base=server.url)
        with pytest.raises(VidcapError) as caught:
            OpenAIEngine(config, GENERATION).start(max_videos_per_prompt=1)
        assert str(caught.value) == f"model 'other' is not served at {server.url}; served: fake"
        with pytest.raises(VidcapError, match="end in /v1"):
            fake_engine(server.url.removesuffix("/v1"))
    with pytest.raises(VidcapError, match="unknown engine_kwargs for --backend openai: video"):
        OpenAIEngine(
            EngineConfig(model="m", backend="openai", api_base="x", engine_kwargs={"video": 1}), GENERATION
        )
    for error in (caught.value,):
        assert "\n" not in str(error)
