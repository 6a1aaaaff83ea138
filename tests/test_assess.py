"""Per-caption info and quality flags (pipeline/assess.py): the rules, the run loop, the summary.

The rules are checked on crafted texts; the run loop with a fake engine that returns duplicate,
looping and cut-off texts (the real engine's finish reasons and token counts are checked in
tests/test_caption_info.py).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import ClassVar

import pytest

from tests.conftest import write_jsonl
from tests.test_runner_errors import FakeEngine, config
from vidcap.config import build_config
from vidcap.engines.caption_engine import CaptionOutput, CaptionRequest
from vidcap.errors import VidcapError
from vidcap.executors.job import run_captioning
from vidcap.io.records import iter_records
from vidcap.pipeline import summary_lines
from vidcap.pipeline.assess import (
    SeenCaptions,
    caption_info,
    flag_failure,
    is_repetitive,
    periodic_tail,
    retry_seed,
)

SENTENCE = "A man in a red coat walks a brown dog along a wet street at night while cars pass by."


def test_periodic_tail_finds_the_loop_even_when_cut_mid_unit() -> None:
    assert periodic_tail(list("xyabcabcab"), 10) == (3, 8)
    assert periodic_tail([], 10) == (0, 0)


@pytest.mark.parametrize(
    "text",
    [
        SENTENCE + " and the dog" * 6,  # a 3-word unit, 6 times
        SENTENCE + " the the the the the the the the the the the the",  # one word, 12 times
        "The scene shows " + "a cat sitting on a mat, " * 5 + "a cat sitting",  # cut mid-unit
        "视频中" + "哈" * 60,  # no spaces: the character rule
        "!" * 50,
    ],
)
def test_loops_are_repetition(text: str) -> None:
    assert is_repetitive(text)


@pytest.mark.parametrize(
    "text",
    [
        SENTENCE,
        SENTENCE + " " + SENTENCE,  # said twice: a long unit, not a loop
        "very very good",  # too short to call a loop
        SENTENCE * 1 + " It rains, it rains, it rains.",  # 3 repeats of a short unit: allowed
        "",
    ],
)
def test_ordinary_text_is_not_repetition(text: str) -> None:
    assert not is_repetitive(text)


def test_seen_captions_flags_repeats_across_records_only_and_stays_bounded() -> None:
    seen = SeenCaptions(limit=2)
    assert not seen.check_and_add(["a", "a"])  # the same text twice in one record: not a duplicate
    assert seen.check_and_add(["a"])
    assert not seen.check_and_add(["b"])
    assert not seen.check_and_add(["c"])  # the limit forgets "a", the oldest
    assert not seen.check_and_add(["a"])
    assert not seen.check_and_add(["  "])  # blank: the empty flag's business


def test_info_lists_finish_reasons_per_caption_with_several_captions() -> None:
    seen = SeenCaptions()
    info = caption_info(
        ["one", "two"], ["stop", "length"], prompt_tokens=7, generated_tokens=9, num_captions=2, seen=seen
    )
    assert info == {"finish_reason": ["stop", "length"], "prompt_tokens": 7, "generated_tokens": 9,
                    "flags": ["truncated"]}  # fmt: skip
    info = caption_info(None, [], prompt_tokens=0, generated_tokens=0, num_captions=1, seen=seen)
    assert info == {"finish_reason": None, "prompt_tokens": 0, "generated_tokens": 0, "flags": []}


class ScriptedEngine(FakeEngine):
    """Answers record i with ``TEXTS[i]``, cut off (finish reason length) where ``CUT`` says."""

    TEXTS: ClassVar = [SENTENCE, SENTENCE + " and the dog" * 6, "A red door.", SENTENCE, "", "A red door."]
    CUT: ClassVar = {1}

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        outputs = []
        for r in requests:
            i = int(r.request_id)
            text = self.TEXTS[i]
            outputs.append(
                CaptionOutput(
                    r.request_id,
                    texts=[text],
                    prompt_tokens=100 + i,
                    generated_tokens=len(text.split()) + 1,
                    finish_reasons=["length" if i in self.CUT else "stop"],
                )
            )
        return outputs[::-1]


def test_run_flags_records_and_counts_flags_in_the_summary(
    tmp_path: Path, clip_dir: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = len(ScriptedEngine.TEXTS)
    records = [{"id": i, "video": str(clip_dir / "a.mp4")} for i in range(n)]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    out = tmp_path / "out.jsonl"
    # One batch, answered in reverse: the later of two equal captions is the duplicate.
    engine = ScriptedEngine(tiny_model)
    result = run_captioning(config(data, out, nframes=2, info_key="qa", batch_size=n), engine)
    rows = [r.data for r in iter_records(out)]
    assert [r["id"] for r in rows] == list(range(n))
    flags = [r["qa"]["flags"] for r in rows]
    assert flags == [[], ["truncated", "repetition"], [], ["duplicate"], ["empty"], ["duplicate"]]
    # Flags never change the status; the empty caption is an error as before, with its info.
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "ok", "error", "ok"]
    assert rows[3]["caption"] == SENTENCE
    assert [r["qa"]["finish_reason"] for r in rows] == ["stop", "length", "stop", "stop", "stop", "stop"]
    assert [r["qa"]["prompt_tokens"] for r in rows] == [100 + i for i in range(n)]
    assert "info" not in rows[0] and list(rows[0])[-1] == "qa"
    summary = result.summary_data
    assert summary["flag_counts"] == {"truncated": 1, "repetition": 1, "duplicate": 2, "empty": 1}
    assert summary["info_key"] == "qa"
    assert summary["generated_tokens"] == sum(r["qa"]["generated_tokens"] for r in rows)

    # The end-of-run lines show the counts.
    stream = io.StringIO()
    monkeypatch.setattr(summary_lines, "terminal_err", lambda: stream)
    summary_lines.print_summary(summary, interrupted=False)
    assert "  flags:   1 truncated, 1 repetition, 2 duplicate, 1 empty" in stream.getvalue().splitlines()


def test_a_record_with_the_info_field_is_refused_before_any_work(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", [{"video": str(clip_dir / "a.mp4"), "info": {"x": 1}}])
    with pytest.raises(VidcapError, match=r"already has a 'info' field; choose another name with --info-key"):
        run_captioning(config(data, tmp_path / "out.jsonl"), FakeEngine(tiny_model))
    assert not (tmp_path / "out.jsonl").exists()
    with pytest.raises(VidcapError, match="must be different names"):
        config(data, tmp_path / "out.jsonl", info_key="status")


# -- --fail-on and --retries: the options and the rule (the feed applies them) ----------------


def test_fail_on_parses_flags_from_a_flag_or_a_config_list() -> None:
    config = build_config({"fail_on": ["truncated", "duplicate"]}, {"input": "x.jsonl"})
    assert config.run.fail_on == ("truncated", "duplicate")
    config = build_config({}, {"fail_on": "repetition, truncated,repetition", "retries": 2})
    assert config.run.fail_on == ("repetition", "truncated") and config.run.retries == 2


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"fail_on": "truncated,loops"}, "--fail-on: unknown flag 'loops'"),
        ({"fail_on": "empty"}, "--fail-on: unknown flag 'empty'"),
        ({"retries": 2}, "give --fail-on too"),
        ({"fail_on": "truncated", "retries": -1}, "--retries must be >= 0"),
        ({"fail_on": "truncated", "retries": 1, "temperature": 0.0}, "needs --temperature > 0"),
    ],
)
def test_bad_fail_on_and_retries_are_one_line_errors(values: dict, message: str) -> None:
    with pytest.raises(VidcapError, match=re.escape(message)):
        build_config({}, values)


def test_flag_failure_names_the_flags_that_fail() -> None:
    assert flag_failure(["duplicate"], ("truncated",)) is None
    assert flag_failure([], ("truncated",)) is None
    error = flag_failure(["truncated", "repetition", "duplicate"], ("repetition", "truncated"))
    assert error == "caption flagged truncated, repetition (--fail-on repetition,truncated); its text is kept"
    assert [retry_seed(7, a) for a in (1, 2)] == [8, 9] and retry_seed(None, 1) == 1
