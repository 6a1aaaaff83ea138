"""Issue 11 end to end on the real engine (tiny random model; captions are noise).

A windowed run with a summary pass, killed with SIGKILL mid-run (a real ``vidcap`` process) and
rerun (the same command, in-process on the shared engine), gives every record once, in input
order, each with windows that tile its video; and ``--max-tokens 4 --fail-on truncated`` (with
and without ``--retries 1``) fails every caption keeping its text, on the shared in-process engine.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import EMPTY_CAPTION, TINY_ENGINE, run_vidcap_in_process, write_jsonl
from tests.test_api import generation
from tests.test_batch_jobs import output_ids, start_vidcap, wait_for_lines
from vidcap.config import build_config
from vidcap.executors.job import run_captioning
from vidcap.io.jsonio import loads
from vidcap.io.records import iter_records
from vidcap.video.synthetic import make_clip

RECORDS = 16
SPANS = [(0, 4), (4, 8), (8, 12)]  # a 12 s clip in 4 s windows
FLAGGED = "caption flagged truncated (--fail-on truncated); its text is kept"


def _noise_error(error: str) -> bool:
    """The random model's empty caption, in a window or in the summary: the one error allowed."""
    return error == f"summary failed: {EMPTY_CAPTION}" or (
        "window" in error and error.endswith(f": {EMPTY_CAPTION}")
    )


@pytest.mark.engine
def test_windowed_run_killed_with_sigkill_and_rerun_gives_every_record_once(
    tmp_path: Path, tiny_model: Path, vllm_engine
) -> None:
    make_clip(tmp_path / "long.mp4", seconds=12, fps=2, width=64, height=48)
    ids = [f"{i:03d}" for i in range(RECORDS)]
    data = write_jsonl(
        tmp_path / "data.jsonl", [{"id": i, "video": "long.mp4", "n": n} for n, i in enumerate(ids)]
    )
    config = tmp_path / "tiny.toml"
    config.write_text(
        f'model = "{tiny_model}"\nmax_model_len = {TINY_ENGINE["max_model_len"]}\n'
        f"gpu_memory_utilization = {TINY_ENGINE['gpu_memory_utilization']}\nenforce_eager = true\n"
        "max_tokens = 6\nbatch_size = 2\nmax_in_flight = 4\ndecode_workers = 1\n"
        f"fps = 1.0\nmin_pixels = {28 * 28 * 4}\nmax_pixels = {28 * 28 * 16}\n"
    )
    out = tmp_path / "out.jsonl"
    args = ["run", "-i", str(data), "-o", str(out), "-c", str(config), "--quiet"]
    args += ["--window", "4", "--summary-prompt", "Summarise these scenes."]
    proc = start_vidcap(args)
    wait_for_lines(out, 3, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: main process, engine, decode workers
    proc.wait(timeout=60)
    written = output_ids(out)
    assert 3 <= len(written) < RECORDS, "the kill came too late to test anything"
    assert written == ids[: len(written)]

    # The same command resumes it (in this process, on the shared engine: a resume is the runner's).
    rerun = run_vidcap_in_process(vllm_engine, *args)
    assert rerun.returncode in (0, 1), rerun.stderr
    rows = [r.data for r in iter_records(out)]
    assert [r["id"] for r in rows] == ids  # every record once, in input order
    assert [r["n"] for r in rows] == list(range(RECORDS))
    for row in rows:
        windows = row["windows"]
        assert [(w["start"], w["end"]) for w in windows] == SPANS
        assert all(w["info"]["prompt_tokens"] > 0 for w in windows)
        if row["status"] == "ok":
            assert all(w["status"] == "ok" and w["caption"].strip() for w in windows)
            assert isinstance(row["caption"], str) and row["caption"].strip()  # the summary's
            assert row["info"]["prompt_tokens"] > 0 and row["info"]["finish_reason"] in ("stop", "length")
        else:
            assert _noise_error(row["error"]), row["error"]
    summary = loads((tmp_path / "out.jsonl.summary.json").read_bytes())
    assert summary["complete"] is True
    assert summary["resumed"] >= len(written) - 1  # a torn last line, if any, was redone
    assert summary["resumed"] + sum(summary["status_counts"].values()) == RECORDS
    # The exit code is the rerun's: its own records' errors (those the killed run wrote are not its).
    errors = summary["status_counts"]["error"]
    assert errors == sum(r["status"] == "error" for r in rows[summary["resumed"] :])
    assert (rerun.returncode == 1) == (errors > 0)


def _run(engine, tmp_path: Path, name: str, records: list[dict], **options) -> tuple[list[dict], dict]:
    data = write_jsonl(tmp_path / f"{name}.jsonl", records)
    out = tmp_path / f"{name}-out.jsonl"
    values = {"input": str(data), "output": str(out), "model": "tiny", "decode_workers": 0, **options}
    # The runner reads captions (and retry seeds) with the config's generation: keep the engine's.
    config = dataclasses.replace(build_config({}, values), generation=engine.generation)
    result = run_captioning(config, engine)
    assert result.exit_code == 1  # every caption fails
    return [r.data for r in iter_records(out)], result.summary_data


def _assert_flagged(row: dict) -> bool:
    """A caption --fail-on truncated failed, its text kept; False for the model's blank text."""
    info = row["info"]
    assert row["status"] == "error" and row["caption"] is None
    assert info["finish_reason"] == "length" and info["generated_tokens"] == 4 and info["prompt_tokens"] > 0
    assert "truncated" in info["flags"]
    if row["error"] == EMPTY_CAPTION:  # random weights wrote 4 blank tokens: an error anyway
        return False
    assert row["error"] == FLAGGED
    assert isinstance(row["caption_raw"], str) and row["caption_raw"].strip()
    return True


def test_max_tokens_4_fail_on_truncated_fails_every_caption_and_retries_count(
    vllm_engine, clip_dir: Path, tmp_path: Path
) -> None:
    clips = ["a.mp4", "b.mp4", "c.avi", "tall.mkv"]
    records = [{"id": i, "video": str(clip_dir / name)} for i, name in enumerate(clips * 2)]
    with generation(vllm_engine, max_tokens=4, temperature=0.7, seed=3):
        rows, summary = _run(vllm_engine, tmp_path, "once", records, fail_on="truncated")
        retried, retried_summary = _run(
            vllm_engine, tmp_path, "again", records, fail_on="truncated", retries=1
        )

    assert [r["id"] for r in rows] == list(range(len(records)))
    flagged = [_assert_flagged(row) for row in rows]
    assert sum(flagged) >= len(rows) - 1
    assert all("retries" not in row["info"] for row in rows)
    assert summary["stats"]["retries"] == 0 and summary["flag_counts"]["truncated"] == len(rows)
    assert summary["generated_tokens"] == 4 * len(rows)

    # With --retries 1 each flagged caption is tried once more (seed 3 + 1), fails again (4
    # tokens are still too few) and says so; the summary counts every try: the records' tokens
    # (what their info objects add up to) and, apart, those of the tries no record keeps.
    assert [r["id"] for r in retried] == list(range(len(records)))
    again = [_assert_flagged(row) for row in retried]
    assert sum(again) >= len(retried) - 1
    assert all(row["info"]["retries"] == 1 for row in retried if row["error"] == FLAGGED)
    tries = sum(row["info"].get("retries", 0) for row in retried)
    assert retried_summary["stats"]["retries"] == tries >= len(retried) - 1
    assert retried_summary["generated_tokens"] == 4 * len(retried)
    assert retried_summary["generated_tokens"] == sum(row["info"]["generated_tokens"] for row in retried)
    assert retried_summary["prompt_tokens"] == sum(row["info"]["prompt_tokens"] for row in retried)
    assert retried_summary["retried_generated_tokens"] == 4 * tries
    assert retried_summary["stats"]["error"] == len(retried)
