"""Sampling as the model's authors set it: the user's values, else generation_config.json, else vLLM's.

The engines are real (vLLM and transformers on the tiny random-weight model); the openai request
body is checked against the small fake server. Captions are noise: the tests compare captions
with each other (greedy or not), never judge them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from tests.backend_servers import fake_server
from tests.conftest import run_vidcap, write_jsonl
from vidcap.config import EngineConfig, build_config, load_config_file
from vidcap.engines.caption_engine import CaptionRequest, VideoInput
from vidcap.engines.openai_engine import OpenAIEngine
from vidcap.errors import VidcapError
from vidcap.executors.job import run_captioning
from vidcap.generation import DEFAULT_MAX_TOKENS, GenerationOptions, resolve_sampling
from vidcap.io.jsonio import loads
from vidcap.model.processor import model_sampling_defaults
from vidcap.video.load import load_video
from vidcap.video.types import SamplingOptions

# What a model's authors might ship: values vLLM applies, and some it ignores (do_sample, typical_p).
AUTHORS = {
    "temperature": 0.3,
    "top_p": 0.5,
    "top_k": 1,
    "repetition_penalty": 1.05,
    "max_new_tokens": 9,
    "do_sample": False,
    "typical_p": 0.9,
}
# ... as vLLM reads them (ModelConfig.get_diff_sampling_param)
AUTHORS_VLLM = {"temperature": 0.3, "top_p": 0.5, "top_k": 1, "repetition_penalty": 1.05, "max_tokens": 9}


@pytest.fixture(scope="module")
def tuned_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with sampling values in its generation_config.json."""
    folder = tmp_path_factory.mktemp("tuned") / "tiny-tuned"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, **AUTHORS}))
    return folder


def test_user_values_win_then_the_model_then_vllm() -> None:
    options = GenerationOptions(temperature=0.0, top_k=-1, presence_penalty=0.5)
    resolved = resolve_sampling(options, AUTHORS_VLLM)
    assert resolved.values == {
        "temperature": 0.0,  # the user's, over the model's 0.3
        "top_p": 0.5,
        "top_k": 0,  # -1 and 0 both mean off; 0 is what every backend takes
        "min_p": 0.0,
        "repetition_penalty": 1.05,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.0,
        "max_tokens": 9,
    }
    assert resolved.sources == {
        "temperature": "options",
        "top_p": "generation_config",
        "top_k": "options",
        "min_p": "vllm default",
        "repetition_penalty": "generation_config",
        "presence_penalty": "options",
        "frequency_penalty": "vllm default",
        "max_tokens": "generation_config",
    }
    assert resolve_sampling(GenerationOptions(), {}).values["max_tokens"] == DEFAULT_MAX_TOKENS


def test_an_unknown_model_leaves_unset_values_to_the_server() -> None:
    resolved = resolve_sampling(GenerationOptions(top_p=0.8), None)
    assert resolved.values == {"top_p": 0.8, "max_tokens": DEFAULT_MAX_TOKENS}
    assert resolved.summary()["temperature"] == {"value": None, "source": "server"}


def test_model_defaults_are_read_as_vllm_reads_them(tuned_model: Path, tiny_model: Path) -> None:
    """vidcap's reading (for the transformers and openai backends) equals vLLM's own."""
    from vllm.config import ModelConfig

    assert model_sampling_defaults(str(tuned_model)) == AUTHORS_VLLM
    assert ModelConfig(model=str(tuned_model)).get_diff_sampling_param() == AUTHORS_VLLM
    assert model_sampling_defaults(str(tiny_model)) == {}  # eos/pad only: nothing to apply
    assert model_sampling_defaults("no-such-org/no-such-model", local_files_only=True) is None


def test_flags_and_config_keys(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("top_k = 20\nmin_p = 0.05\npresence_penalty = 1.5\n")
    values = build_config(
        load_config_file(config), {"repetition_penalty": 1.1, "frequency_penalty": -0.5, "top_k": 5}
    ).generation
    assert (values.top_k, values.min_p, values.presence_penalty) == (5, 0.05, 1.5)
    assert (values.repetition_penalty, values.frequency_penalty, values.temperature) == (1.1, -0.5, None)
    for key, bad, message in [
        ("top_k", -2, "--top-k must be a whole number >= 1, or 0 or -1 for off, not -2"),
        ("top_k", 2.5, "--top-k must be"),
        ("min_p", 1.5, "--min-p must be in [0, 1]"),
        ("temperature", 3.0, "--temperature must be in [0, 2]"),
        ("presence_penalty", 2.5, "--presence-penalty must be in [-2, 2]"),
        ("frequency_penalty", -3, "--frequency-penalty must be in [-2, 2]"),
        ("repetition_penalty", 0, "--repetition-penalty must be > 0"),
    ]:
        with pytest.raises(VidcapError, match=message.replace("[", r"\[").replace("]", r"\]")):
            build_config({}, {key: bad})


def test_a_bad_sampling_flag_is_one_line(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"video": "a.mp4"}])
    result = run_vidcap("run", "-i", str(data), "-m", "x", "--top-k", "-5")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --top-k must be a whole number >= 1, or 0 or -1 for off, not -5"
    ]


def _request(clip: Path, request_id: str = "0") -> CaptionRequest:
    loaded = load_video(str(clip), SamplingOptions(nframes=4))
    video = VideoInput(loaded.frames, loaded.plan.processor_metadata(), loaded.plan.video_tokens)
    return CaptionRequest(request_id, "Describe the video.", [video])


@pytest.mark.engine
def test_the_models_top_k_reaches_vllm(vllm_engine, clip_dir: Path, tmp_path: Path) -> None:
    """A model whose authors set top_k 1 samples greedily unless the user says otherwise."""
    request = _request(clip_dir / "a.mp4")
    before = (vllm_engine.generation, vllm_engine.model_sampling)
    try:
        vllm_engine.generation = GenerationOptions(temperature=0.0, max_tokens=12)
        (greedy,) = vllm_engine.generate([request])
        vllm_engine.model_sampling = {"top_k": 1}
        vllm_engine.generation = GenerationOptions(temperature=1.0, max_tokens=12, num_captions=3, seed=1)
        (model_k,) = vllm_engine.generate([request])
        vllm_engine.generation = dataclasses.replace(vllm_engine.generation, top_k=0)
        (user_k,) = vllm_engine.generate([request])

        # The summary says which values were used and where they came from.
        data = write_jsonl(tmp_path / "d.jsonl", [{"video": str(clip_dir / "a.mp4")}])
        out = tmp_path / "out.jsonl"
        values = {"input": str(data), "output": str(out), "model": "tiny", "decode_workers": 0}
        config = dataclasses.replace(build_config({}, values), generation=vllm_engine.generation)
        run_captioning(config, vllm_engine)
        summary = loads(out.with_name("out.jsonl.summary.json").read_bytes())
    finally:
        vllm_engine.generation, vllm_engine.model_sampling = before
    assert greedy.texts and model_k.texts and user_k.texts
    assert model_k.texts == greedy.texts * 3  # top_k 1 from the model: every sample is the greedy one
    assert len(set(user_k.texts)) > 1  # the user's top_k 0 wins: random weights, three different samples
    assert summary["sampling"]["top_k"] == {"value": 0, "source": "options"}
    assert summary["sampling"]["temperature"] == {"value": 1.0, "source": "options"}
    assert summary["sampling"]["repetition_penalty"] == {"value": 1.0, "source": "vllm default"}
    assert summary["sampling"]["max_tokens"] == {"value": 12, "source": "options"}
    assert summary["seed"] == 1 and summary["num_captions"] == 3


def test_the_transformers_backend_samples_alike(tuned_model: Path, clip_dir: Path) -> None:
    from vidcap.engines.transformers_engine import TransformersEngine

    request = _request(clip_dir / "a.mp4")
    engine = TransformersEngine(
        EngineConfig(model=str(tuned_model), backend="transformers"), GenerationOptions(temperature=0.0)
    )
    engine.start(max_videos_per_prompt=1)
    try:
        assert engine.model_sampling == AUTHORS_VLLM
        (greedy,) = engine.generate([request])
        engine.generation = GenerationOptions(temperature=1.0, num_captions=3, seed=1)
        (model_k,) = engine.generate([request])
        engine.generation = GenerationOptions(temperature=1.0, num_captions=3, seed=1, top_k=0)
        (user_k,) = engine.generate([request])
        engine.generation = GenerationOptions(
            temperature=0.0, presence_penalty=2.0, frequency_penalty=2.0, max_tokens=30
        )
        (penalised,) = engine.generate([request])
    finally:
        engine.close()
    assert greedy.generated_tokens <= 9  # the model's max_new_tokens, as vLLM reads it
    assert model_k.texts == greedy.texts * 3  # the model's top_k 1 applies to every sample
    assert len(set(user_k.texts or [])) > 1
    assert penalised.texts and penalised.texts[0] != greedy.texts[0]  # the penalties change the text


def test_the_openai_backend_sends_every_value(tuned_model: Path) -> None:
    """With the model's config at hand, every value is sent explicitly; without it, only the user's."""
    request = CaptionRequest("0", "ok", [])
    with fake_server() as server:
        for processor, generation in [
            (str(tuned_model), GenerationOptions(top_k=7)),
            (None, GenerationOptions(top_k=7)),
        ]:
            engine_kwargs = {"processor": processor} if processor else {}
            config = EngineConfig(
                model="fake", backend="openai", api_base=server.url, engine_kwargs=engine_kwargs
            )
            engine = OpenAIEngine(config, generation)
            engine.start(max_videos_per_prompt=1)
            engine.generate([request])
            engine.close()
    with_config, without = server.captions[-2], server.captions[-1]  # start-up probes left out
    sent = {k: with_config[k] for k in AUTHORS_VLLM if k in with_config}
    assert sent == {"temperature": 0.3, "top_p": 0.5, "top_k": 7, "repetition_penalty": 1.05, "max_tokens": 9}
    assert (with_config["min_p"], with_config["presence_penalty"], with_config["frequency_penalty"]) == (
        0,
        0,
        0,
    )
    assert {k for k in without if k in AUTHORS_VLLM or k in ("min_p", "presence_penalty")} == {
        "top_k",
        "max_tokens",
    }
    assert without["max_tokens"] == DEFAULT_MAX_TOKENS
