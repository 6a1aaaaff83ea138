"""No idle start: records are decoded while the model loads, with the plan made for the context
the engine will have (read before loading it, checked once it is up)."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from tests.test_runner_errors import FakeEngine, config, dataset
from vidcap.config import EngineConfig
from vidcap.engines.caption_engine import CaptionOutput, CaptionRequest
from vidcap.engines.vllm_engine import engine_context
from vidcap.executors.job import run_captioning
from vidcap.io.records import iter_records
from vidcap.video.synthetic import make_clip


class LoadingEngine(FakeEngine):
    """Says a context before loading (``planned``) and has ``context`` once started; its start
    waits (up to ``wait_s``) for a decode worker to be running, as a slow model load would."""

    def __init__(self, model: Path, *, planned: int | None, context: int, wait_s: float = 0.0) -> None:
        super().__init__(model)
        self.planned, self.context, self.wait_s = planned, context, wait_s
        self.workers_while_loading = 0
        self.video_tokens: dict[str, int] = {}

    def planned_max_model_len(self) -> int | None:
        return self.planned

    def start(self, *, max_videos_per_prompt: int) -> None:
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline and not self.workers_while_loading:
            workers = [p for p in multiprocessing.active_children() if p.name == "vidcap-pool-worker"]
            self.workers_while_loading = len(workers)
            time.sleep(0.05)
        self.max_model_len = self.context

    def count_prompt_tokens(self, request: CaptionRequest) -> int:
        return 1  # any plan fits: what is compared is the plan

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        self.video_tokens.update((r.request_id, r.video_tokens) for r in requests)
        return super().generate(requests)


def test_decoding_starts_while_the_model_loads(tmp_path: Path, clip_dir: Path, tiny_model: Path) -> None:
    data = dataset(tmp_path, clip_dir, 5)
    engine = LoadingEngine(tiny_model, planned=100_000, context=100_000, wait_s=60)
    out = tmp_path / "out.jsonl"
    result = run_captioning(config(data, out, decode_workers=1), engine)
    assert engine.workers_while_loading == 1  # the decode pool ran before the model was up
    assert result.exit_code == 0 and [r.data["id"] for r in iter_records(out)] == list(range(5))


def test_a_context_other_than_foreseen_plans_the_records_again(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    """The default pixel budget follows the context: a record decoded for the context foreseen
    before loading is decoded again when the engine says another one, so the plan is always
    the one for the engine's context."""
    clip = make_clip(tmp_path / "vga.mp4", seconds=2.0, fps=10, width=640, height=480)
    data = write_jsonl(tmp_path / "data.jsonl", [{"id": i, "video": str(clip)} for i in range(4)])
    tokens = {}
    # A context of 400 tokens makes the 640x480 frames smaller; one of 100,000 does not.
    for name, planned, context in [
        ("small", 400, 400),
        ("large", 100_000, 100_000),
        ("wrong", 400, 100_000),
    ]:
        engine = LoadingEngine(tiny_model, planned=planned, context=context)
        out = tmp_path / f"{name}.jsonl"
        result = run_captioning(config(data, out, decode_workers=1), engine)
        assert result.exit_code == 0 and len(list(iter_records(out))) == 4
        tokens[name] = engine.video_tokens
    assert tokens["small"]["0"] < tokens["large"]["0"]  # the context decides the budget here
    assert tokens["wrong"] == tokens["large"]


@pytest.mark.engine
def test_the_context_read_before_loading_is_the_started_engines(vllm_engine, tiny_model: Path) -> None:
    """What the run plans the first records for is what the started vLLM engine reports."""
    assert vllm_engine.planned_max_model_len() == vllm_engine.max_model_len == 4096
    # Without --max-model-len, the model's own (the run without one in test_engine_limits.py
    # checks that the engine started so reports it); engine_kwargs win over --max-model-len.
    assert engine_context(EngineConfig(model=str(tiny_model))) == 128_000
    given = EngineConfig(model=str(tiny_model), max_model_len=8192, engine_kwargs={"max_model_len": 2048})
    assert engine_context(given) == 2048


@pytest.mark.engine
def test_the_engine_keeps_no_processor_cache(vllm_engine) -> None:
    """Every video of a run is sent once: vLLM's processor cache would only hold memory."""
    assert vllm_engine._llm.llm_engine.model_config.multimodal_config.mm_processor_cache_gb == 0
