"""``--fail-on`` and ``--retries`` in the feed: a flagged caption becomes an error with its text
kept, or is tried again with a new seed first (unit tests with a fake engine; the real engine's
truncation is in tests/test_caption_info.py)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_jsonl
from tests.test_runner_errors import FakeEngine, config
from vidcap.engines.caption_engine import CaptionOutput, CaptionRequest
from vidcap.executors.job import run_captioning
from vidcap.io.jsonio import loads
from vidcap.io.records import iter_records
from vidcap.io.sidecar import summary_path

PROMPT_TOKENS, MAX_TOKENS = 100, 8  # what each try of SeedSensitive counts (a whole caption: 3)


class SeedSensitive(FakeEngine):
    """Runs to max_tokens ("length") unless the request's seed is at least ``good_seed``; a
    prompt that says "same" gets the same text as every other such prompt."""

    def __init__(self, model: Path, good_seed: int = 2) -> None:
        super().__init__(model)
        self.good_seed = good_seed
        self.seeds: dict[str, list[int | None]] = {}

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        outputs = []
        for r in requests:
            seed = r.sampling.get("seed")
            self.seeds.setdefault(r.request_id, []).append(seed)
            if "same" in r.prompt:
                outputs.append(CaptionOutput(r.request_id, texts=["one text"], finish_reasons=["stop"]))
            elif seed is not None and seed >= self.good_seed:
                outputs.append(
                    CaptionOutput(
                        r.request_id,
                        texts=[f"whole {r.request_id}"],
                        finish_reasons=["stop"],
                        prompt_tokens=PROMPT_TOKENS,
                        generated_tokens=3,
                    )
                )
            else:
                outputs.append(
                    CaptionOutput(
                        r.request_id,
                        texts=[f"cut {r.request_id}"],
                        finish_reasons=["length"],
                        prompt_tokens=PROMPT_TOKENS,
                        generated_tokens=MAX_TOKENS,
                    )
                )
        return outputs[::-1]


def _data(tmp_path: Path, clip_dir: Path, prompts: list[str]) -> Path:
    records = [
        {"id": i, "video": str(clip_dir / "a.mp4"), "conversation": [{"from": "human", "value": p}]}
        for i, p in enumerate(prompts)
    ]
    return write_jsonl(tmp_path / "data.jsonl", records)


def test_fail_on_makes_flagged_captions_errors_and_keeps_their_text(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data, out = _data(tmp_path, clip_dir, ["a", "b", "c"]), tmp_path / "out.jsonl"
    result = run_captioning(config(data, out, fail_on="truncated"), SeedSensitive(tiny_model))
    assert result.exit_code == 1
    rows = [r.data for r in iter_records(out)]
    assert [r["id"] for r in rows] == [0, 1, 2]
    for i, row in enumerate(rows):
        assert row["status"] == "error" and row["caption"] is None
        assert row["error"] == "caption flagged truncated (--fail-on truncated); its text is kept"
        assert row["caption_raw"] == f"cut {i}"
        assert row["info"]["flags"] == ["truncated"] and row["info"]["finish_reason"] == "length"
        assert "retries" not in row["info"]
    summary = loads(summary_path(out).read_bytes())
    assert summary["flag_counts"] == {"truncated": 3} and summary["stats"]["retries"] == 0


def test_retries_try_again_with_new_seeds_until_the_caption_passes(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data, out = _data(tmp_path, clip_dir, ["a", "b", "c", "d"]), tmp_path / "out.jsonl"
    engine = SeedSensitive(tiny_model)
    result = run_captioning(config(data, out, fail_on="truncated", retries=3, seed=None), engine)
    assert result.exit_code == 0
    rows = [r.data for r in iter_records(out)]
    assert [r["caption"] for r in rows] == [f"whole {i}" for i in range(4)]
    assert all(r["status"] == "ok" and r["info"]["retries"] == 2 and "caption_raw" not in r for r in rows)
    # The run had no seed: the first try has none, the retries 1 and 2 (stopping at the good one).
    assert engine.seeds == {str(i): [None, 1, 2] for i in range(4)}
    summary = loads(summary_path(out).read_bytes())
    assert summary["stats"]["retries"] == 8 and summary["stats"]["ok"] == 4


def test_with_retries_the_records_info_adds_up_to_the_summary_tokens_and_the_dropped_tries_apart(
    tmp_path: Path, clip_dir: Path, tiny_model: Path, capsys
) -> None:
    """The README's promise: the records' info tokens add up to the summary's; the tries --retries
    dropped (two per record here) are counted apart, and the end-of-run lines show them."""
    from vidcap.pipeline.summary_lines import print_summary

    data, out = _data(tmp_path, clip_dir, ["a", "b", "c", "d"]), tmp_path / "out.jsonl"
    result = run_captioning(
        config(data, out, fail_on="truncated", retries=3, seed=None), SeedSensitive(tiny_model)
    )
    rows = [r.data for r in iter_records(out)]
    summary = loads(summary_path(out).read_bytes())
    assert summary["prompt_tokens"] == sum(r["info"]["prompt_tokens"] for r in rows) == 4 * PROMPT_TOKENS
    assert summary["generated_tokens"] == sum(r["info"]["generated_tokens"] for r in rows) == 4 * 3
    assert summary["retried_prompt_tokens"] == 8 * PROMPT_TOKENS
    assert summary["retried_generated_tokens"] == 8 * MAX_TOKENS
    print_summary(result.summary_data, interrupted=False)
    lines = capsys.readouterr().err.splitlines()
    dropped = f"their {8 * PROMPT_TOKENS} prompt + {8 * MAX_TOKENS} generated tokens are in no record"
    assert f"  retries: 8 ({dropped})" in lines


def test_retries_that_run_out_leave_the_error_and_count_the_tries(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data, out = _data(tmp_path, clip_dir, ["a"]), tmp_path / "out.jsonl"
    engine = SeedSensitive(tiny_model, good_seed=10)
    result = run_captioning(config(data, out, fail_on="truncated", retries=2, seed=5), engine)
    assert result.exit_code == 1
    (row,) = [r.data for r in iter_records(out)]
    assert engine.seeds == {"0": [None, 6, 7]}  # no override at first (the run's seed 5), then 5+1, 5+2
    assert row["status"] == "error" and row["caption_raw"] == "cut 0" and row["info"]["retries"] == 2


def test_fail_on_duplicate_fails_the_later_record_only(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data, out = _data(tmp_path, clip_dir, ["same", "x", "same"]), tmp_path / "out.jsonl"
    engine = SeedSensitive(tiny_model, good_seed=0)
    result = run_captioning(config(data, out, fail_on="duplicate"), engine)
    rows = [r.data for r in iter_records(out)]
    assert [r["status"] for r in rows] == ["ok", "ok", "error"]
    assert rows[2]["error"].startswith("caption flagged duplicate") and rows[2]["caption_raw"] == "one text"
    assert result.exit_code == 1
