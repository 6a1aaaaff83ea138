"""Shared fixtures: a tiny random-weight Qwen2.5-VL, generated clips, one real vLLM engine.

The engine is the real vLLM (the CPU build here), started once per test session because
start-up takes about 25 s. Its captions are noise (random weights): tests check plumbing,
shapes, counts and statuses, never caption quality.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
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


def run_vidcap_in_process(engine, *args: str) -> subprocess.CompletedProcess[str]:
    """``vidcap ARGS`` run by its entry point in this process, on the started shared ``engine``.

    Everything the command does but loading the model is the real thing: argument and config
    parsing, the checks, the output lock, the log capture, the signal handlers, the runner,
    the summary, the exit code, what it prints. It saves a model load (about 25 s) where the
    test checks what a run writes (a rerun that resumes), not how a process ends: tests of
    signals, exit by signal and leftover processes keep a real ``vidcap`` process. The command
    must ask for the engine ``engine`` is (the same ``EngineConfig``: model and settings), else
    it fails here rather than test a run on another engine than its own; its generation options
    are the engine's for the run (its seed per request: the engine-wide seed the shared engine
    started with, which on vLLM's CPU build also keeps chunked prefill off, stays)."""
    from vidcap.cli.app import main

    refused: list[str] = []  # raised again after the command, which takes it for a bug (exit 70)

    def lend(config: EngineConfig, generation: GenerationOptions) -> _Lent:
        if config != engine.config:
            refused.append(
                f"vidcap {' '.join(args)} would start another engine than the shared one "
                f"({config} != {engine.config}): run it as a subprocess (run_vidcap)"
            )
            raise AssertionError(refused[-1])
        return _Lent(engine, generation)

    logger = logging.getLogger("vidcap")  # main() sets its handler up, as once per process
    level = logger.level
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        pytest.MonkeyPatch.context() as patch,
        _descriptors(out.fileno(), err.fileno()),
    ):
        patch.setattr("vidcap.engines.vllm_engine.VllmEngine", lend)  # create_engine looks it up
        patch.setattr(sys, "argv", ["vidcap", *args])
        # The command leaves its log capture on for the exit it expects (quiet.capture_output,
        # release=False): this process goes on, so the capture's state is put back after it.
        patch.setattr("vidcap.quiet._terminal", None)
        patch.setattr(logger, "handlers", list(logger.handlers))
        patch.setattr(logger, "propagate", logger.propagate)
        patch.setattr(sys, "stdout", open(1, "w", closefd=False, buffering=1))  # noqa: SIM115
        patch.setattr(sys, "stderr", open(2, "w", closefd=False, buffering=1))  # noqa: SIM115
        environ = dict(os.environ)  # the capture sets defaults for the libraries' verbosity
        try:
            main()
            code: object = 0  # main() always exits; a return would be a bug of its own
        except SystemExit as exit_:
            code = exit_.code
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for name in set(os.environ) - set(environ):
                del os.environ[name]
            os.environ.update(environ)
        out_text, err_text = _read(out), _read(err)
    logger.setLevel(level)
    if refused:
        raise AssertionError(refused[0])
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    return subprocess.CompletedProcess(["vidcap", *args], returncode, out_text, err_text)


class _Lent:
    """The shared engine lent to one in-process command: the command's generation options for
    the run, and not closed at its end (``create_engine(...)`` is used as ``with ... as engine``)."""

    def __init__(self, engine, generation: GenerationOptions) -> None:
        self.engine, self.generation = engine, generation

    def __enter__(self):
        self.before, self.engine.generation = self.engine.generation, self.generation
        return self.engine

    def __exit__(self, *exc: object) -> None:
        self.engine.generation = self.before


@contextmanager
def _descriptors(out: int, err: int) -> Iterator[None]:
    """Descriptors 1 and 2 of this process on ``out`` and ``err`` for the block, then back."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {1: os.dup(1), 2: os.dup(2)}
    os.dup2(out, 1)
    os.dup2(err, 2)
    try:
        yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


def _read(file) -> str:
    file.seek(0)
    return file.read().decode(errors="replace")


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
