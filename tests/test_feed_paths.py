"""The feed's error paths with windows and retries (fake engines; the real engine's runs are in
tests/test_windows_flags_e2e.py): a retry the engine refuses at once, a retry's duplicate
check, an engine failure while a record waits for its retry, an engine that loses a request,
and windows refused at submit or still in flight at a stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from tests.test_feed import StreamingFake
from tests.test_runner_errors import FakeEngine, config
from vidcap.engines.caption_engine import CaptionOutput, CaptionRequest
from vidcap.executors.job import run_captioning
from vidcap.io.jsonio import loads
from vidcap.io.records import iter_records
from vidcap.io.sidecar import summary_path


def _data(tmp_path: Path, clip_dir: Path, prompts: list[str]) -> Path:
    records = [
        {"id": i, "video": str(clip_dir / "b.mp4"), "conversation": [{"from": "human", "value": p}]}
        for i, p in enumerate(prompts)
    ]
    return write_jsonl(tmp_path / "data.jsonl", records)


def _rows(out: Path) -> list[dict]:
    return [r.data for r in iter_records(out)]


def _summary(out: Path) -> dict:
    return loads(summary_path(out).read_bytes())


class SameTextUntilSeed(FakeEngine):
    """Each request's text names it whatever the seed; it runs to max_tokens ("length") unless
    its seed is at least ``good_seed``. A prompt that says "ghost" writes "shared" on its first
    try; one that says "late" writes "shared" and stops."""

    def __init__(self, model: Path, good_seed: int = 2) -> None:
        super().__init__(model)
        self.good_seed = good_seed

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        outputs = []
        for r in requests:
            seed = r.sampling.get("seed")
            if "late" in r.prompt:
                text, reason = "shared", "stop"
            elif seed is None:
                text, reason = ("shared" if "ghost" in r.prompt else f"text {r.request_id}"), "length"
            else:
                text, reason = f"text {r.request_id}", "length" if seed < self.good_seed else "stop"
            outputs.append(CaptionOutput(r.request_id, texts=[text], finish_reasons=[reason]))
        return outputs


def test_a_retry_with_the_same_text_is_not_a_duplicate_of_its_own_failed_try(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data, out = _data(tmp_path, clip_dir, ["a", "b"]), tmp_path / "out.jsonl"
    opts = {"fail_on": "truncated,duplicate", "retries": 3, "seed": None}
    result = run_captioning(config(data, out, **opts), SameTextUntilSeed(tiny_model))
    rows = _rows(out)
    # Tries 0 and 1 were cut off; try 2 stopped with the same text: it passes, no duplicate.
    assert [(r["status"], r["caption"], r["info"]["retries"]) for r in rows] == [
        ("ok", "text 0", 2),
        ("ok", "text 1", 2),
    ]
    assert all(r["info"]["flags"] == [] for r in rows)
    assert result.exit_code == 0
    assert _summary(out)["stats"]["retries"] == 4 and _summary(out).get("flag_counts", {}) == {}


def test_a_failed_try_that_is_never_written_makes_no_later_caption_a_duplicate(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data, out = _data(tmp_path, clip_dir, ["ghost", "late"]), tmp_path / "out.jsonl"
    opts = {"fail_on": "truncated,duplicate", "retries": 1, "seed": 1}  # the retry's seed: 2, good
    result = run_captioning(config(data, out, **opts), SameTextUntilSeed(tiny_model))
    first, second = _rows(out)
    assert (first["status"], first["caption"], first["info"]["retries"]) == ("ok", "text 0", 1)
    # "shared" was record 0's failed try only: record 1 is the first to write it.
    assert (second["status"], second["caption"], second["info"]["flags"]) == ("ok", "shared", [])
    assert result.exit_code == 0


class RefusesRetries(StreamingFake):
    """Refuses every retry (a request with a seed of its own) at submit; first tries run to
    max_tokens."""

    def submit(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        retries = [r for r in requests if "seed" in r.sampling]
        super().submit([r for r in requests if r not in retries])
        return [CaptionOutput(r.request_id, error="the engine refused the retry") for r in retries]

    def collect(self, *, wait: bool = True) -> list[CaptionOutput]:
        return [dataclass_replace_length(o) for o in super().collect(wait=wait)]


def dataclass_replace_length(output: CaptionOutput) -> CaptionOutput:
    """The output, stopped at max_tokens."""
    return CaptionOutput(output.request_id, texts=output.texts, finish_reasons=["length"])


@pytest.mark.parametrize("order", ["reverse", "random"])
def test_a_retry_the_engine_refuses_at_once_is_written_as_its_error(
    tmp_path: Path, clip_dir: Path, tiny_model: Path, order: str
) -> None:
    data, out = _data(tmp_path, clip_dir, [f"clip {i}" for i in range(7)]), tmp_path / "out.jsonl"
    engine = RefusesRetries(tiny_model, order)
    result = run_captioning(config(data, out, fail_on="truncated", retries=1), engine)
    rows = _rows(out)
    assert [r["id"] for r in rows] == list(range(7))  # none dropped
    for row in rows:
        assert row["status"] == "error" and row["error"] == "the engine refused the retry"
        assert row["info"]["retries"] == 1
    summary = _summary(out)
    assert summary["complete"] is True and summary["stats"]["retries"] == 7
    assert summary["stats"]["error"] == 7 and summary["stats"]["ok"] == 0
    assert result.exit_code == 1


class DiesAnswering(StreamingFake):
    """Its first ``collect`` answers every request in flight (cut at max_tokens), then returns
    an id it was never given; it notes every submit after that."""

    def __init__(self, model: Path) -> None:
        super().__init__(model, "reverse")
        self.broken = False
        self.after: list[str] = []

    def submit(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        if self.broken:
            self.after += [r.request_id for r in requests]
        return super().submit(requests)

    def collect(self, *, wait: bool = True) -> list[CaptionOutput]:
        outputs = [dataclass_replace_length(o) for o in super().collect(wait=wait)]
        if outputs and not self.broken:
            self.broken = True
            return [*outputs, CaptionOutput("99", texts=["?"])]
        return outputs


def test_an_engine_failure_while_a_retry_is_due_submits_nothing_more(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data, out = _data(tmp_path, clip_dir, [f"clip {i}" for i in range(6)]), tmp_path / "out.jsonl"
    engine = DiesAnswering(tiny_model)
    with pytest.raises(RuntimeError, match="returned request '99'"):
        run_captioning(config(data, out, fail_on="truncated", retries=2), engine)
    assert engine.after == []  # no retry went to an engine that had failed
    assert _rows(out) == []  # the first record waited for its retry: the resume does it
    resumed = run_captioning(
        config(data, out, fail_on="truncated", retries=2), SameTextUntilSeed(tiny_model, good_seed=1)
    )
    assert resumed.exit_code == 0
    assert [(r["id"], r["info"]["retries"]) for r in _rows(out)] == [(i, 1) for i in range(6)]


class LosesOne(StreamingFake):
    """Drops request "2": it leaves the engine and never comes back."""

    def collect(self, *, wait: bool = True) -> list[CaptionOutput]:
        return [o for o in super().collect(wait=wait) if o.request_id != "2"]


def test_a_request_the_engine_loses_fails_the_run_instead_of_dropping_records(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data, out = _data(tmp_path, clip_dir, [f"clip {i}" for i in range(6)]), tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match=r"1 request\(s\) of 4 record\(s\) never came back"):
        run_captioning(config(data, out), LosesOne(tiny_model, "reverse", limit=8))
    assert [r["id"] for r in _rows(out)] == [0, 1]  # what came before it is kept


WINDOWED = {"window": 1, "fps": 2, "summary_prompt": "Sum up.", "batch_size": 2}
SPANS = [(0, 1), (1, 2), (2, 3)]  # b.mp4 is 3 s long


class RefusesWindow(StreamingFake):
    """Refuses the requests named in ``refuse`` at submit; notes every request id it is given."""

    def __init__(self, model: Path, order: str, refuse: set[str] = frozenset(), limit: int = 4) -> None:
        super().__init__(model, order, limit=limit)
        self.refuse, self.given = refuse, []

    def submit(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        self.given += [r.request_id for r in requests]
        super().submit([r for r in requests if r.request_id not in self.refuse])
        return [CaptionOutput(r.request_id, error="refused") for r in requests if r.request_id in self.refuse]


def _check_windowed_ok(row: dict) -> None:
    assert [(w["start"], w["end"]) for w in row["windows"]] == SPANS
    assert [w["status"] for w in row["windows"]] == ["ok"] * 3
    assert row["status"] == "ok" and row["caption"].startswith(
        "caption of <Sum up.\n\n[0:00-0:01] caption of"
    )


@pytest.mark.parametrize("order", ["reverse", "random"])
def test_windowed_records_keep_the_engine_within_max_in_flight(
    tmp_path: Path, clip_dir: Path, tiny_model: Path, order: str
) -> None:
    data, out = _data(tmp_path, clip_dir, [f"clip {i}" for i in range(5)]), tmp_path / "out.jsonl"
    engine = RefusesWindow(tiny_model, order)  # StreamingFake fails any submit past its limit (4)
    result = run_captioning(config(data, out, **WINDOWED), engine)
    assert result.exit_code == 0
    rows = _rows(out)
    assert [r["id"] for r in rows] == list(range(5))
    for row in rows:
        _check_windowed_ok(row)
    assert sorted(engine.submitted) == sorted(
        f"{i}/{k}" for i in range(5) for k in ("w0", "w1", "w2", "summary")
    )
    summary = _summary(out)
    assert summary["stats"]["ok"] == 5 and summary["prompt_tokens"] == 5 * 4 * 5  # 4 requests a record


def test_a_window_refused_at_submit_fails_its_record_only_and_asks_no_summary(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data, out = _data(tmp_path, clip_dir, [f"clip {i}" for i in range(4)]), tmp_path / "out.jsonl"
    engine = RefusesWindow(tiny_model, "random", refuse={"1/w1", "2/w0", "2/w1", "2/w2"})
    result = run_captioning(config(data, out, **WINDOWED), engine)
    rows = _rows(out)
    assert [r["id"] for r in rows] == [0, 1, 2, 3]
    _check_windowed_ok(rows[0])
    _check_windowed_ok(rows[3])
    assert rows[1]["status"] == "error" and rows[1]["error"] == "1 of 3 windows failed ([0:01-0:02]): refused"
    assert [w["status"] for w in rows[1]["windows"]] == ["ok", "error", "ok"]
    assert rows[2]["error"].startswith("3 of 3 windows failed")
    assert "1/summary" not in engine.given and "2/summary" not in engine.given
    summary = _summary(out)
    assert (summary["stats"]["ok"], summary["stats"]["error"]) == (2, 2)
    assert result.exit_code == 1


def test_a_stop_while_windows_are_in_flight_finishes_their_records_and_resumes(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data, out = _data(tmp_path, clip_dir, [f"clip {i}" for i in range(6)]), tmp_path / "out.jsonl"
    engine = RefusesWindow(tiny_model, "random")
    result = run_captioning(
        config(data, out, **WINDOWED), engine, should_stop=lambda: len(engine.finished) >= 2
    )
    assert result.exit_code == 75 and result.interrupted
    rows = _rows(out)
    assert 1 <= len(rows) < 6 and [r["id"] for r in rows] == list(range(len(rows)))
    for row in rows:  # each written record whole: every window and its summary
        _check_windowed_ok(row)
    assert sorted(engine.finished) == sorted(engine.submitted)  # nothing left in the engine
    assert {int(i.split("/")[0]) for i in engine.submitted} == set(range(len(rows)))

    resumed = run_captioning(config(data, out, **WINDOWED), RefusesWindow(tiny_model, "reverse"))
    assert resumed.exit_code == 0
    rows = _rows(out)
    assert [r["id"] for r in rows] == list(range(6))
    for row in rows:
        _check_windowed_ok(row)
