"""Error paths of the run loop, with a fake engine (unit tests; the real engine is tested elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from vidcap.config import EngineConfig, build_config
from vidcap.engines.caption_engine import CaptionEngine, CaptionOutput, CaptionRequest
from vidcap.executors.job import run_captioning
from vidcap.io.jsonio import loads
from vidcap.io.records import iter_records
from vidcap.pipeline.stats import RunStats, error_kind


class FakeEngine(CaptionEngine):
    """Answers out of order, fails requests whose prompt says 'fail', dies on batch ``die_on``."""

    name = "fake"

    def __init__(self, model: Path, die_on: int | None = None) -> None:
        self.config = EngineConfig(model=str(model))
        self.die_on = die_on
        self.batches = 0

    def start(self, *, max_videos_per_prompt: int) -> None:
        self.max_model_len = 100_000

    def count_prompt_tokens(self, request: CaptionRequest) -> int:
        return request.video_tokens + 10

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        self.batches += 1
        if self.batches == self.die_on:
            raise RuntimeError("engine core died")
        outputs = [
            CaptionOutput(r.request_id, error="engine rejected the request")
            if "fail" in r.prompt
            else CaptionOutput(r.request_id, texts=[f"caption for {r.request_id}"], prompt_tokens=5)
            for r in requests
        ]
        return outputs[::-1]  # out of order: the runner must match by request id


def dataset(tmp_path: Path, clip_dir: Path, n: int, failing: set[int] = frozenset()) -> Path:
    records = [
        {
            "id": i,
            "video": str(clip_dir / "a.mp4"),
            "conversation": [{"from": "human", "value": "please fail" if i in failing else ""}],
        }
        for i in range(n)
    ]
    return write_jsonl(tmp_path / "data.jsonl", records)


def config(data: Path, out: Path, **extra):
    values = {"input": str(data), "output": str(out), "model": "fake", "batch_size": 3, "decode_workers": 0}
    return build_config({}, {**values, **extra})


def test_engine_error_on_one_request_fails_only_that_record(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data = dataset(tmp_path, clip_dir, 7, failing={4})
    out = tmp_path / "out.jsonl"
    result = run_captioning(config(data, out), FakeEngine(tiny_model))
    rows = [r.data for r in iter_records(out)]
    assert [r["id"] for r in rows] == list(range(7))
    for row in rows:
        if row["id"] == 4:
            assert (row["status"], row["caption"], row["error"]) == (
                "error",
                None,
                "engine rejected the request",
            )
        else:
            assert row["status"] == "ok" and row["caption"] == f"caption for {row['id']}"  # matched by id
    assert result.exit_code == 1
    assert result.stats.errors_by_kind == {"engine rejected the request": 1}


def test_engine_dying_mid_run_keeps_what_was_written(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data = dataset(tmp_path, clip_dir, 9)
    out = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="engine core died"):
        run_captioning(config(data, out), FakeEngine(tiny_model, die_on=2))
    assert [r.data["id"] for r in iter_records(out)] == [0, 1, 2]  # the first batch, intact
    summary = loads(out.with_name("out.jsonl.summary.json").read_bytes())
    assert summary["complete"] is False and summary["records_written"] == 3

    run_captioning(config(data, out), FakeEngine(tiny_model))  # the same command resumes
    assert [r.data["id"] for r in iter_records(out)] == list(range(9))


def test_video_whose_packets_decode_to_nothing(tmp_path: Path, clip_dir: Path, tiny_model: Path) -> None:
    """A valid container whose video payload is zeroed: packets demux, no frame decodes."""
    data = bytearray((clip_dir / "a.mp4").read_bytes())
    box = data.find(b"mdat")
    size = int.from_bytes(data[box - 4 : box], "big")
    data[box + 4 : box - 4 + size] = bytes(size - 8)  # keep the box, zero every packet
    zeroed = tmp_path / "zeroed.mp4"
    zeroed.write_bytes(bytes(data))
    records = [{"id": 0, "video": str(zeroed)}, {"id": 1, "video": str(clip_dir / "a.mp4")}]
    out = tmp_path / "out.jsonl"
    result = run_captioning(config(write_jsonl(tmp_path / "d.jsonl", records), out), FakeEngine(tiny_model))
    rows = [r.data for r in iter_records(out)]
    assert rows[0]["status"] == "error" and rows[0]["caption"] is None
    assert "zeroed.mp4" in rows[0]["error"] and "corrupt video" in rows[0]["error"]
    assert rows[1]["status"] == "ok"
    # The summary counts errors by kind, not by a message that names the file.
    assert result.stats.errors_by_kind == {"corrupt video {video}": 1}


def test_error_kinds_do_not_depend_on_the_file() -> None:
    stats = RunStats()
    stats.count_error("corrupt video /data/a b.mp4: Invalid data found", ["/data/a b.mp4"])
    stats.count_error("corrupt video /data/c.avi: Invalid data found", ["/data/c.avi"])
    stats.count_error("video not found: /data/x: y.mp4", ["/data/x: y.mp4"])  # ": " in the path
    stats.count_error("prompt too long: 5000 tokens (4000 visual) but the model takes 4096")
    assert stats.errors_by_kind == {"corrupt video {video}": 2, "video not found": 1, "prompt too long": 1}
    assert error_kind("frame size 4000x10 is more than 200:1; the model cannot take it") == (
        "frame size 4000x10 is more than 200:1; the model cannot take it"  # no ": ", kept whole
    )


def test_a_long_error_kind_is_cut_at_a_word() -> None:
    """A kind longer than 80 characters ends at a whole word and says it is cut (it was cut mid-word)."""
    message = (
        "the video has more visual tokens than the engine's encoder cache holds; lower --fps, "
        "--max-pixels or --total-pixels"
    )
    kind = error_kind(message)
    assert len(kind) <= 80 and kind.endswith("...")
    assert message.startswith(kind.removesuffix("..."))
    assert message[len(kind.removesuffix("..."))] == " ", kind  # the next character starts a new word


@pytest.mark.parametrize(
    ("stop_during_batch", "written", "complete"),
    [
        (0, 0, False),  # asked while the model loaded: nothing is captioned
        (2, 6, False),  # the second batch is finished and written, the third never begun
        (3, 7, True),  # asked during the last batch: every record is written, the run is complete
    ],
)
def test_a_stop_finishes_the_batch_in_flight_and_begins_no_other(
    tmp_path: Path, clip_dir: Path, tiny_model: Path, stop_during_batch: int, written: int, complete: bool
) -> None:
    data = dataset(tmp_path, clip_dir, 7)  # batches of 3: 3 + 3 + 1
    out = tmp_path / "out.jsonl"
    engine = FakeEngine(tiny_model)
    result = run_captioning(
        config(data, out), engine, should_stop=lambda: engine.batches >= stop_during_batch
    )
    assert [r.data["id"] for r in iter_records(out)] == list(range(written))
    assert engine.batches == stop_during_batch
    assert (result.complete, result.interrupted) == (complete, not complete)
    assert result.exit_code == (0 if complete else 75)


def test_a_dead_vllm_engine_core_is_an_engine_died_error_not_a_bug(tiny_model: Path) -> None:
    """vLLM raises its EngineDeadError from ``step`` once the engine core process is gone (killed,
    out of memory): the run reports it as EngineDiedError (exit 70), a rerun resumes."""
    from vidcap.engines.caption_engine import GenerationOptions
    from vidcap.engines.vllm_engine import VllmEngine
    from vidcap.errors import EXIT_INTERNAL, EngineDiedError

    class EngineDeadError(RuntimeError):  # vLLM's name (vllm.v1.engine.exceptions)
        pass

    class DeadCore:
        engine_core = object()

        def has_unfinished_requests(self) -> bool:
            return True

        def step(self) -> list:
            raise EngineDeadError("EngineCore encountered an issue. See stack trace (above)")

    engine = VllmEngine(EngineConfig(model=str(tiny_model)), GenerationOptions())
    engine._llm = type("LLM", (), {"llm_engine": DeadCore()})()
    engine._requests = {"0-abc": "0", "0": "0"}
    with pytest.raises(EngineDiedError, match="engine core died mid-run") as caught:
        engine.collect(wait=True)
    assert caught.value.exit_code == EXIT_INTERNAL
