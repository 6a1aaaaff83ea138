"""--data-parallel-size: N engines in N processes behind one engine, one output in input order.

The end-to-end test runs the real ``vidcap`` with two real vLLM engines (CPU build), kills it
mid-run, reruns it, and compares the captions with one engine's (seeded: vLLM's per-request
seed makes each caption independent of the engine and batch it ran in). The error paths (an
engine killed mid-run, an engine that cannot start) use a fake engine in the child processes.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_ENGINE, assert_only_noise_errors, run_vidcap, write_jsonl
from tests.test_batch_jobs import other_output, output_ids, start_vidcap, wait_for_lines
from vidcap.config import EngineConfig, build_config, load_config_file
from vidcap.engines.caption_engine import (
    CaptionEngine,
    CaptionOutput,
    CaptionRequest,
    GenerationOptions,
    VideoInput,
)
from vidcap.errors import EngineDiedError, VidcapError
from vidcap.executors.data_parallel import DataParallelEngine, plan_placements
from vidcap.executors.job import run_captioning
from vidcap.io.jsonio import loads
from vidcap.io.records import iter_records


class EchoEngine(CaptionEngine):
    """A fake engine for the error paths: answers with what it received (the frames' checksum)
    and which engine it is; fails to start in the engine named by ``VIDCAP_TEST_FAIL_RANK``."""

    name = "echo"

    def __init__(self, config: EngineConfig, generation: GenerationOptions) -> None:
        self.config = config
        self.generation = generation

    def start(self, *, max_videos_per_prompt: int) -> None:
        if os.environ["VIDCAP_ENGINE_RANK"] == os.environ.get("VIDCAP_TEST_FAIL_RANK"):
            raise VidcapError("no such model here")
        self.max_model_len = 4096

    def count_prompt_tokens(self, request: CaptionRequest) -> int:
        return 1

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        rank = os.environ["VIDCAP_ENGINE_RANK"]
        return [
            CaptionOutput(r.request_id, texts=[f"{r.prompt} {_checksum(r)} {rank}"], finish_reasons=["stop"])
            for r in requests
        ]


def _checksum(request: CaptionRequest) -> int:
    return int(sum(int(v.frames.astype(np.int64).sum()) for v in request.videos))


def _request(number: int) -> CaptionRequest:
    # Over 1 MiB of frames: they go through shared memory (vidcap.procs.dumps_shared).
    frames = np.random.default_rng(number).integers(0, 255, size=(8, 224, 224, 3), dtype=np.uint8)
    return CaptionRequest(str(number), f"prompt {number}", [VideoInput(frames, {"fps": 2.0}, 8)])


def _collect_all(engine: DataParallelEngine) -> dict[str, CaptionOutput]:
    outputs: dict[str, CaptionOutput] = {}
    while engine.in_flight:
        outputs.update((o.request_id, o) for o in engine.collect(wait=True))
    return outputs


def test_a_killed_engine_fails_its_requests_and_the_others_go_on(tiny_model: Path) -> None:
    config = EngineConfig(model=str(tiny_model), data_parallel_size=2)
    with DataParallelEngine(config, GenerationOptions(), engine_factory=EchoEngine) as engine:
        engine.start(max_videos_per_prompt=1)
        assert engine.max_model_len == 4096  # engine 1's limits are the run's
        assert engine.max_in_flight(4) == 8  # what one engine keeps in flight, times two
        first, second = engine.pids()
        os.kill(second, signal.SIGSTOP)  # so that its requests are surely in flight when it dies
        requests = [_request(n) for n in range(6)]
        assert engine.submit(requests) == []
        frames = Path("/dev/shm").glob(f"vidcap-frames-{os.getpid()}-*")
        assert list(frames)  # engine 2's, not taken: it is stopped
        os.kill(second, signal.SIGKILL)
        outputs = _collect_all(engine)
        # Engine 1 took its frames (and unlinked their segment); the dead one's are unlinked here.
        assert list(Path("/dev/shm").glob(f"vidcap-frames-{os.getpid()}-*")) == []

        assert sorted(outputs, key=int) == [str(n) for n in range(6)]  # every request answered once
        lost = {rid for rid, o in outputs.items() if o.error is not None}
        assert lost == {"1", "3", "5"}  # the least-loaded engine alternates
        for rid in lost:
            assert outputs[rid].error.startswith("engine 2 of 2 (")
            assert outputs[rid].error.endswith(") died: its process was killed by SIGKILL")
        for request in requests[0::2]:  # engine 1's, with their frames intact through shared memory
            assert outputs[request.request_id].texts == [f"{request.prompt} {_checksum(request)} 0"]

        # What comes next goes to the engine alive; generate keeps the request order.
        more = [_request(n) for n in (6, 7)]
        assert [o.texts for o in engine.generate(more)] == [[f"{r.prompt} {_checksum(r)} 0"] for r in more]
        stats = engine.engine_stats()
        assert stats["data_parallel_size"] == 2
        assert [(e["engine"], e["requests"], e["alive"]) for e in stats["engines"]] == [
            (1, 5, True),
            (2, 3, False),
        ]
        assert stats["engines"][1]["error"] == outputs["1"].error

        # With no engine left, the run fails (its records are not written as errors).
        os.kill(first, signal.SIGSTOP)
        engine.submit([_request(8)])
        os.kill(first, signal.SIGKILL)
        with pytest.raises(EngineDiedError, match=r"all 2 engines died .*rerun the same command"):
            engine.collect(wait=True)


def test_a_message_an_engine_cannot_read_fails_it_instead_of_hanging(tiny_model: Path) -> None:
    config = EngineConfig(model=str(tiny_model), data_parallel_size=2)
    with DataParallelEngine(config, GenerationOptions(), engine_factory=EchoEngine) as engine:
        engine.start(max_videos_per_prompt=1)
        engine._workers[1].conn.send_bytes(b"not a pickle")  # as a message that cannot be unpickled there
        engine.submit([_request(0), _request(1)])
        outputs = _collect_all(engine)
        assert outputs["0"].texts == [f"prompt 0 {_checksum(_request(0))} 0"]
        assert outputs["1"].error.startswith("engine 2 of 2 (")
        assert (
            "died: RuntimeError: a message from the run could not be read: UnpicklingError"
            in outputs["1"].error
        )


def test_an_engine_that_cannot_start_fails_the_start(tiny_model: Path, monkeypatch) -> None:
    monkeypatch.setenv("VIDCAP_TEST_FAIL_RANK", "1")
    config = EngineConfig(model=str(tiny_model), data_parallel_size=2)
    engine = DataParallelEngine(config, GenerationOptions(), engine_factory=EchoEngine)
    with pytest.raises(VidcapError, match=r"^engine 2 of 2 \(.*\) failed to start: no such model here$"):
        engine.start(max_videos_per_prompt=1)
    assert engine.pids() == []  # the other engine was stopped too


def test_gpus_are_split_in_tensor_parallel_groups(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4,5,6")
    config = EngineConfig(model="m", tensor_parallel_size=2)
    placements = plan_placements(2, config)
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in placements] == ["3,4", "5,6"]
    assert [p.label for p in placements] == ["GPUs 3,4", "GPUs 5,6"]
    assert [p.kv_share for p in placements] == [1.0, 1.0]  # each GPU's memory is its own
    with pytest.raises(VidcapError, match="needs 6 GPUs; 4 visible"):
        plan_placements(3, config)


def test_without_gpus_the_cores_and_kv_memory_are_split(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    placements = plan_placements(2, EngineConfig(model="m"))
    assert [p.env["VLLM_CPU_OMP_THREADS_BIND"] for p in placements] == ["0,1,2,3", "4,5,6,7"]
    assert [p.env["OMP_NUM_THREADS"] for p in placements] == ["4", "4"]
    assert [p.kv_share for p in placements] == [0.5, 0.5]
    tp2 = plan_placements(2, EngineConfig(model="m", tensor_parallel_size=2))
    assert [p.env["VLLM_CPU_OMP_THREADS_BIND"] for p in tp2] == ["0,1|2,3", "4,5|6,7"]


def test_data_parallel_size_is_checked() -> None:
    with pytest.raises(VidcapError, match="--data-parallel-size must be >= 1"):
        build_config({}, {"model": "m", "data_parallel_size": 0})
    with pytest.raises(VidcapError, match="run more server replicas"):
        build_config({}, {"model": "m", "backend": "openai", "data_parallel_size": 2})


@pytest.mark.engine
def test_two_engines_killed_and_rerun_match_one_engine(
    tmp_path: Path, clip_dir: Path, tiny_model: Path, vllm_engine
) -> None:
    """Two real engines: SIGKILL mid-run, rerun; every record once, in input order, each caption
    the one a single engine gives (the shared engine's sampling: seed 0, temperature 0.7)."""
    clips = ["a.mp4", "b.mp4", "c.avi", "tall.mkv"]
    # Enough records that the kill, after the first 4 are written, finds work left on a loaded machine.
    records = [{"id": f"{i:03d}", "video": str(clip_dir / clips[i % len(clips)])} for i in range(48)]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    config = tmp_path / "tiny.toml"
    config.write_text(
        f'model = "{tiny_model}"\nmax_model_len = {TINY_ENGINE["max_model_len"]}\n'
        # On CPU the engines share the RAM: each reserves half of this (0.05 of RAM, as the single
        # engines of the other tests); less leaves the profiled engine no room for its KV cache.
        "gpu_memory_utilization = 0.1\nenforce_eager = true\n"
        "max_tokens = 12\ntemperature = 0.7\nseed = 0\nbatch_size = 4\ndecode_workers = 1\n"
        "max_in_flight = 2\n"  # work left to kill: a stop or kill finds records not yet started
        "fps = 1.0\nmin_pixels = 12544\nmax_pixels = 50176\n"
    )
    out = tmp_path / "dp2.jsonl"
    args = ["run", str(data), "-o", str(out), "-c", str(config), "--data-parallel-size", "2", "-q"]
    proc = start_vidcap(args)
    wait_for_lines(out, 4, proc, timeout=900)  # two engines start on two busy cores: minutes
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: main process, both engines, decoders
    proc.wait(timeout=60)
    written = output_ids(out)
    assert 4 <= len(written) < len(records), "the kill came too late to test anything"
    assert written == [r["id"] for r in records][: len(written)]

    rerun = run_vidcap(*args, timeout=900)
    assert_only_noise_errors(rerun.returncode, out, rerun.stderr)
    assert "leaked" not in rerun.stderr + other_output(out)
    assert output_ids(out) == [r["id"] for r in records]
    summary = loads((tmp_path / "dp2.jsonl.summary.json").read_bytes())
    assert summary["complete"] is True
    assert summary["resumed"] + sum(summary["status_counts"].values()) == len(records)

    one = tmp_path / "dp1.jsonl"
    single = build_config(load_config_file(config), {"input": str(data), "output": str(one)})
    assert_only_noise_errors(run_captioning(single, vllm_engine).exit_code, one)
    two = [(r.data["id"], r.data.get("caption"), r.data["status"]) for r in iter_records(out)]
    assert two == [(r.data["id"], r.data.get("caption"), r.data["status"]) for r in iter_records(one)]
