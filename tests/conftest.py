"""Shared fixtures: a tiny random-weight Qwen2.5-VL, generated clips, one real vLLM engine.

The engine is the real vLLM (the CPU build here), started once per test session because
start-up takes about 25 s. Its captions are noise (random weights): tests check plumbing,
shapes, counts and statuses, never caption quality.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from vidcap.config import EngineConfig
from vidcap.engines.caption_engine import GenerationOptions
from vidcap.io.jsonio import dumps
from vidcap.video.synthetic import make_clip

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Engine settings that suit a 1 MB model on a 2-core CPU; 5% of RAM for each engine's KV cache, as
# the two test workers may run several engines at once (vLLM refuses to start without that much free).
TINY_ENGINE = {"max_model_len": 4096, "gpu_memory_utilization": 0.05, "enforce_eager": True}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen2.5-VL checkpoint (model, tokenizer, processor, chat template)."""
    from vidcap.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny-qwen2.5-vl")


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of small real clips: different sizes, frame rates, codecs and containers."""
    folder = tmp_path_factory.mktemp("clips")
    make_clip(folder / "a.mp4", seconds=2.0, fps=10, width=160, height=120)
    make_clip(folder / "b.mp4", seconds=3.0, fps=24, width=176, height=144)
    make_clip(folder / "c.avi", seconds=2.0, fps=25, width=128, height=96, codec="mpeg4")
    make_clip(folder / "tall.mkv", seconds=1.5, fps=12, width=96, height=160)
    return folder


@pytest.fixture(scope="session")
def vllm_engine(tiny_model: Path):
    """One started vLLM engine on the tiny model, shared by the in-process tests."""
    from vidcap.engines.vllm_engine import VllmEngine

    engine = VllmEngine(
        EngineConfig(model=str(tiny_model), **TINY_ENGINE),
        GenerationOptions(max_tokens=12, temperature=0.7, seed=0),
    )
    engine.start(max_videos_per_prompt=2)
    yield engine
    engine.close()


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: at most 2 workers (each may hold a vLLM engine and its KV cache in memory;
    most of the time goes to start-up, imports and decoding, which two processes overlap well)."""
    return max(1, min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with the most ``engine`` tests first, each file's tests kept together and in order.

    Each such test starts vLLM engines of its own (about 25 s each on 2 idle cores): started
    first, the two xdist workers (``--dist loadfile --no-loadscope-reorder``) share them out
    and end on the quick files, rather than one worker finishing alone on a file of them. So a
    new test that starts an engine (a ``vidcap run``, a server, a fixture's engine) is marked
    ``engine``."""
    files = [item.nodeid.split("::")[0] for item in items]
    engine_tests = Counter(
        file for file, item in zip(files, items, strict=True) if item.get_closest_marker("engine")
    )
    first: dict[str, int] = {}  # where each file's tests start
    for index, file in enumerate(files):
        first.setdefault(file, index)
    order = {id(item): (-engine_tests[file], first[file]) for file, item in zip(files, items, strict=True)}
    items.sort(key=lambda item: order[id(item)])  # stable: a file's tests keep their order


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """Write records as JSON Lines with vidcap's faithful encoder."""
    path.write_bytes(b"".join(dumps(r) + b"\n" for r in records))
    return path


def run_vidcap(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run the real ``vidcap`` command (``python -m vidcap``) and capture its output as text.

    The default timeout suits commands that stop before the engine starts; runs that load
    the model pass a longer one.
    """
    return subprocess.run(
        [sys.executable, "-m", "vidcap", *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


# Random weights may sample an empty caption, which is a record error (exit code 1) by design; it
# says nothing about the plumbing the end-to-end tests check, so it is the one error they accept.
EMPTY_CAPTION = "the model returned an empty caption"


def assert_only_noise_errors(returncode: int, output: Path, stderr: str = "") -> None:
    """The run ended 0, or 1 with no error record but the random model's empty captions.

    The output may hold records of an earlier run (a resume): the exit code is checked against
    the errors of the last run, which its summary counts."""
    from vidcap.io.jsonio import loads
    from vidcap.io.records import iter_records
    from vidcap.io.sidecar import summary_path

    assert returncode in (0, 1), stderr
    errors = [r.data.get("error") for r in iter_records(output) if r.data.get("status") == "error"]
    assert all(e == EMPTY_CAPTION for e in errors), errors
    last_run_errors = loads(summary_path(output).read_bytes())["status_counts"]["error"]
    assert last_run_errors <= len(errors)
    assert (returncode == 1) == (last_run_errors > 0), stderr
