"""The streaming feed: records enter as frames are ready, outputs come back as they finish
(in any order) and are matched by request id; output is written in input order.

Fake streaming engines check what the feed does with outputs finishing out of order and with
a stop; the end-to-end tests run the real vLLM engine (tiny model).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from vidcap.config import EngineConfig, build_config
from vidcap.engines.caption_engine import CaptionEngine, CaptionOutput, CaptionRequest, VideoInput
from vidcap.executors.job import run_captioning
from vidcap.io.jsonio import loads
from vidcap.io.records import iter_records
from vidcap.video.load import load_video
from vidcap.video.types import SamplingOptions


class StreamingFake(CaptionEngine):
    """A scheduler of its own: each ``collect`` finishes some of the requests in flight, in
    ``order`` ("reverse": the newest first; "random": a random subset in random order, even
    without waiting). The caption names the request's prompt, so a wrong match shows."""

    name = "fake-streaming"

    def __init__(self, model: Path, order: str, limit: int = 4) -> None:
        self.config = EngineConfig(model=str(model))
        self.order, self.limit = order, limit
        self.flying: list[CaptionRequest] = []
        self.submitted: list[str] = []
        self.finished: list[str] = []
        self.rng = random.Random(7)

    def start(self, *, max_videos_per_prompt: int) -> None:
        self.max_model_len = 100_000

    def count_prompt_tokens(self, request: CaptionRequest) -> int:
        return request.video_tokens + 10

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        raise AssertionError("the feed streams: generate is not its path")

    def max_in_flight(self, batch_size: int) -> int:
        return self.limit

    @property
    def in_flight(self) -> int:
        return len(self.flying)

    def submit(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        assert len(self.flying) + len(requests) <= self.limit, "the feed went past max_in_flight"
        self.flying += requests
        self.submitted += [r.request_id for r in requests]
        return []

    def collect(self, *, wait: bool = True) -> list[CaptionOutput]:
        if self.order == "reverse":
            if not wait:
                return []
            done, self.flying = self.flying[::-1], []
        else:
            count = self.rng.randint(1 if wait else 0, len(self.flying))
            done = self.rng.sample(self.flying, count)
            self.flying = [r for r in self.flying if r not in done]
        self.finished += [r.request_id for r in done]
        return [
            CaptionOutput(
                r.request_id, texts=[f"caption of <{r.prompt}>"], prompt_tokens=5, generated_tokens=3
            )
            for r in done
        ]


def dataset(tmp_path: Path, clip_dir: Path, n: int, dup: tuple[int, int] | None = None) -> Path:
    records = []
    for i in range(n):
        prompt = "the same clip" if dup and i in dup else f"clip {i}"
        record = {
            "id": i,
            "video": str(clip_dir / "a.mp4"),
            "conversation": [{"from": "human", "value": prompt}],
        }
        if i % 5 == 3:
            record["video"] = None  # needs no engine: skipped, through the same window
        records.append(record)
    return write_jsonl(tmp_path / "data.jsonl", records)


def config(data: Path, out: Path, **extra):
    values = {"input": str(data), "output": str(out), "model": "fake", "batch_size": 3, "decode_workers": 0}
    return build_config({}, {**values, **extra})


@pytest.mark.parametrize("order", ["reverse", "random"])
def test_outputs_finishing_out_of_order_reach_their_own_records_in_input_order(
    tmp_path: Path, clip_dir: Path, tiny_model: Path, order: str
) -> None:
    data = dataset(tmp_path, clip_dir, 14, dup=(9, 2))  # records 2 and 9 get the same caption
    out = tmp_path / "out.jsonl"
    engine = StreamingFake(tiny_model, order)
    result = run_captioning(config(data, out), engine)
    assert result.exit_code == 0
    assert engine.finished != engine.submitted  # they did finish out of order
    rows = [r.data for r in iter_records(out)]
    assert [r["id"] for r in rows] == list(range(14))
    for row in rows:
        if row["id"] % 5 == 3:
            assert (row["status"], row["caption"]) == ("skipped", None)
            continue
        prompt = "the same clip" if row["id"] in (2, 9) else f"clip {row['id']}"
        assert row["status"] == "ok" and row["caption"] == f"caption of <{prompt}>"
    # The later record in input order is the duplicate, whichever finished first.
    assert "duplicate" not in rows[2]["info"]["flags"]
    assert "duplicate" in rows[9]["info"]["flags"]
    summary = loads(out.with_name("out.jsonl.summary.json").read_bytes())
    engine_info = summary["engine"]
    assert engine_info["in_flight_limit"] == 4 and 1 <= engine_info["max_in_flight"] <= 4
    assert summary["stats"]["ok"] == 11 and summary["stats"]["skipped"] == 3


def test_a_stop_finishes_and_writes_what_is_in_flight_and_submits_nothing_more(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data = dataset(tmp_path, clip_dir, 20)
    out = tmp_path / "out.jsonl"
    engine = StreamingFake(tiny_model, "random", limit=5)
    stop_after = 4  # a stop asked once 4 requests have come back; more are in flight then
    result = run_captioning(config(data, out), engine, should_stop=lambda: len(engine.finished) >= stop_after)
    assert result.exit_code == 75 and result.interrupted
    rows = [r.data for r in iter_records(out)]
    ids = [r["id"] for r in rows]
    assert ids == list(range(len(ids)))  # a prefix of the input, in order
    # Every request submitted came back and was written; none was submitted after the stop.
    assert sorted(engine.finished, key=int) == engine.submitted
    answered = [r["id"] for r in rows if r["status"] == "ok"]
    assert answered == [int(i) for i in engine.submitted]
    assert len(engine.submitted) > stop_after
    assert all(row["caption"] == f"caption of <clip {row['id']}>" for row in rows if row["status"] == "ok")

    resumed = run_captioning(config(data, out), StreamingFake(tiny_model, "reverse"))
    assert resumed.exit_code == 0
    assert [r.data["id"] for r in iter_records(out)] == list(range(20))


def test_run_summary_tells_how_busy_the_engine_was(vllm_engine, clip_dir: Path, tmp_path: Path) -> None:
    names = ["a.mp4", "b.mp4", "c.avi", "tall.mkv"] * 2
    records = [{"id": f"r{i}", "video": str(clip_dir / name)} for i, name in enumerate(names)]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    out = tmp_path / "out.jsonl"
    opts = {"input": str(data), "output": str(out), "model": "tiny", "decode_workers": 1, "batch_size": 3}
    result = run_captioning(build_config({}, opts), vllm_engine)
    assert result.exit_code == 0
    assert [r.data["id"] for r in iter_records(out)] == [r["id"] for r in records]
    engine = loads(out.with_name("out.jsonl.summary.json").read_bytes())["engine"]
    assert 0 < engine["busy_fraction"] <= 1
    assert engine["mean_in_flight"] > 0
    assert 1 <= engine["max_in_flight"] <= engine["in_flight_limit"]
    assert engine["in_flight_limit"] == vllm_engine.max_in_flight(3)
    stages = engine["stages_s"]
    assert set(stages) == {
        "decode_workers",
        "decode_wait",
        "requests",
        "submit",
        "collect",
        "assess",
        "write",
    }
    assert stages["decode_workers"] > 0 and stages["submit"] > 0  # the workers' own time is counted


def test_vllm_streams_with_per_request_lengths_matched_by_id(vllm_engine, clip_dir: Path) -> None:
    video = load_video(str(clip_dir / "a.mp4"), SamplingOptions(nframes=4))
    lengths = {"long": 12, "short": 1, "mid": 6, "two": 2}
    requests = [
        CaptionRequest(
            request_id,
            "Describe.",
            [VideoInput(video.frames, video.plan.processor_metadata(), video.plan.video_tokens)],
            sampling={"max_tokens": n, "min_tokens": n},
        )
        for request_id, n in lengths.items()
    ]
    assert vllm_engine.submit(requests) == []
    assert vllm_engine.in_flight == 4
    outputs = []
    while vllm_engine.in_flight:
        outputs += vllm_engine.collect(wait=True)
    assert sorted(o.request_id for o in outputs) == sorted(lengths)
    for output in outputs:  # each output is its own request's: the forced length says so
        assert output.error is None and output.generated_tokens == lengths[output.request_id]
    assert vllm_engine.collect(wait=False) == []
