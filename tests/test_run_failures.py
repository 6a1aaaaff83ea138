"""How a run ends when it cannot go on, with a fake engine (unit tests of the run loop's error paths).

A failed engine start is a failure (not an interruption), an error while stopping is reported
(not swallowed into exit 75), a rerun with nothing left to do never starts the engine, and what
can be checked before the model loads is checked then.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from tests.test_runner_errors import FakeEngine, config, dataset
from vidcap.errors import (
    EXIT_ENGINE_FAILED,
    EXIT_INTERNAL,
    EngineStartError,
    FailedWhileStoppingError,
    VidcapError,
)
from vidcap.executors import harness
from vidcap.executors.job import run_captioning
from vidcap.io.jsonio import loads
from vidcap.io.records import iter_records
from vidcap.io.shards import shard_range
from vidcap.pipeline.check import check_output_is_not_input, check_todo, todo_problems
from vidcap.prompts import DiyVideoPrompt


def summary_of(out: Path) -> dict:
    return loads(out.with_name(out.name + ".summary.json").read_bytes())


class NotToBeStarted(FakeEngine):
    def start(self, *, max_videos_per_prompt: int) -> None:
        raise AssertionError("the engine was started")


def test_an_error_while_stopping_is_raised_not_swallowed(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data = dataset(tmp_path, clip_dir, 9)
    out = tmp_path / "out.jsonl"
    engine = FakeEngine(tiny_model, die_on=2)
    # The stop is asked during batch 2, and batch 2 fails: the failure must not pass for a stop.
    with pytest.raises(RuntimeError, match="engine core died"):
        run_captioning(config(data, out), engine, should_stop=lambda: engine.batches >= 2)
    assert [r.data["id"] for r in iter_records(out)] == [0, 1, 2]
    summary = summary_of(out)
    assert summary["complete"] is False
    assert summary["interrupted"] is True
    assert summary["failed"] == "RuntimeError: engine core died"


class SignalledThenDies(FakeEngine):
    """Receives SIGTERM (as from SLURM) during generation, then fails."""

    def generate(self, requests):
        os.kill(os.getpid(), signal.SIGTERM)
        raise RuntimeError("engine core died")


def test_cli_reports_an_error_while_stopping_with_its_own_exit_code(
    tmp_path: Path, clip_dir: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = dataset(tmp_path, clip_dir, 4)
    out = tmp_path / "out.jsonl"
    monkeypatch.setattr("vidcap.engines.create_engine", lambda *_: SignalledThenDies(tiny_model))
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(FailedWhileStoppingError) as info:
        harness.execute(config(data, out, model=str(tiny_model)), quiet=True)
    assert info.value.exit_code == EXIT_INTERNAL  # not 75: a requeue must not take it for a pre-emption
    assert str(info.value).startswith(
        "the run failed while stopping for a signal: RuntimeError: engine core died"
    )
    assert signal.getsignal(signal.SIGTERM) is handler  # the stop handler is uninstalled


class FailsToStart(FakeEngine):
    def start(self, *, max_videos_per_prompt: int) -> None:
        raise RuntimeError("CUDA out of memory")


def test_a_failed_engine_start_is_a_failure_not_an_interruption(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data = dataset(tmp_path, clip_dir, 4)
    out = tmp_path / "out.jsonl"
    with pytest.raises(EngineStartError) as info:
        run_captioning(config(data, out), FailsToStart(tiny_model))
    assert info.value.exit_code == EXIT_ENGINE_FAILED == 69
    assert str(info.value) == "cannot start the vllm engine: RuntimeError: CUDA out of memory"
    summary = summary_of(out)
    assert (summary["complete"], summary["interrupted"]) == (False, False)
    assert summary["failed"] == str(info.value)


@pytest.mark.parametrize("name", ["out.jsonl", "out.json"])
def test_overwrite_with_an_engine_that_fails_to_start_keeps_the_old_output(
    tmp_path: Path, clip_dir: Path, tiny_model: Path, name: str
) -> None:
    data = dataset(tmp_path, clip_dir, 4)
    out = tmp_path / name
    run_captioning(config(data, out), FakeEngine(tiny_model))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(EngineStartError):
        run_captioning(config(data, out, overwrite=True), FailsToStart(tiny_model))
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before  # output, summary: untouched; no temp or lock file left


@pytest.mark.parametrize("id_key", [None, "id"])
def test_a_rerun_with_every_record_done_does_not_start_the_engine(
    tmp_path: Path, clip_dir: Path, tiny_model: Path, id_key: str | None
) -> None:
    data = dataset(tmp_path, clip_dir, 5)
    out = tmp_path / "out.jsonl"
    first = run_captioning(config(data, out, id_key=id_key), FakeEngine(tiny_model))
    summary = out.with_name("out.jsonl.summary.json").read_bytes()
    output = out.read_bytes()
    rerun = run_captioning(config(data, out, id_key=id_key), NotToBeStarted(tiny_model))
    assert rerun.exit_code == 0 and rerun.complete
    assert rerun.stats.resumed == 5
    assert out.read_bytes() == output
    assert out.with_name("out.jsonl.summary.json").read_bytes() == summary  # last run's statistics kept
    assert first.summary_data["status_counts"]["ok"] == 5


def test_a_json_output_killed_after_its_last_batch_is_finished_without_the_engine(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data = dataset(tmp_path, clip_dir, 3)
    out = tmp_path / "out.json"
    run_captioning(config(data, out), FakeEngine(tiny_model))
    records = json.loads(out.read_text())
    # As a kill after the last batch leaves it: the journal full, the array never written, the
    # summary (with the run's fingerprint) not yet marked complete.
    out.unlink()
    write_jsonl(tmp_path / "out.json.partial.jsonl", records)
    summary = summary_of(out)
    summary["complete"] = False
    out.with_name("out.json.summary.json").write_text(json.dumps(summary))
    result = run_captioning(config(data, out), NotToBeStarted(tiny_model))
    assert result.exit_code == 0
    assert json.loads(out.read_text()) == records
    assert summary_of(out)["complete"] is True


def test_output_that_is_the_input_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_bytes(b'{"video": "a.mp4"}')
    (tmp_path / "link.jsonl").symlink_to(data)
    os.link(data, tmp_path / "hard.jsonl")
    for output in ("data.jsonl", "link.jsonl", "hard.jsonl", "./data.jsonl"):
        with pytest.raises(VidcapError, match="is the input file"):
            check_output_is_not_input(data, tmp_path / output)
    check_output_is_not_input(data, tmp_path / "other.jsonl")
    # A sidecar the run writes beside the output is guarded too.
    json_input = tmp_path / "o.json.summary.json"
    json_input.write_text("[]")
    with pytest.raises(VidcapError, match=r"a file the run writes \(o\.json\.summary\.json\)"):
        check_output_is_not_input(json_input, tmp_path / "o.json")


def facts_for(tmp_path: Path, records: list[dict], template: str, **opts):
    data = write_jsonl(tmp_path / "data.jsonl", records)
    cfg = config(data, tmp_path / "out.jsonl", **opts)
    return check_todo(iter_records(data), data, cfg.run, DiyVideoPrompt(template)), data


def test_missing_videos_are_listed_with_file_and_line(tmp_path: Path, clip_dir: Path) -> None:
    good = str(clip_dir / "a.mp4")
    records = [
        {"video": good},
        {"video": "nope.mp4"},
        {"video": [good, str(tmp_path)]},
        {"video": None},
        {"video": "https://example.com/v.mp4"},  # a URL is the decoder's business
    ]
    facts, data = facts_for(tmp_path, records, "Describe.")
    assert facts.missing_count == 2
    assert facts.missing_videos == [f"{data}:2: nope.mp4: no such file", f"{data}:3: {tmp_path}: not a file"]
    warnings = todo_problems(facts, on_missing_video="record")
    assert warnings[0].startswith("2 video file(s) missing or unreadable; their records will get status")
    with pytest.raises(VidcapError, match=rf"^2 video file\(s\) missing .*first: {data}:2: nope.mp4: no"):
        todo_problems(facts, on_missing_video="error")


def test_a_template_field_no_record_has_stops_the_run(tmp_path: Path, clip_dir: Path) -> None:
    good = str(clip_dir / "a.mp4")
    records = [{"video": good, "topic": "cats"}, {"video": good, "topic": "dogs"}]
    facts, data = facts_for(tmp_path, records, "Describe {topc}.")
    with pytest.raises(VidcapError) as info:
        todo_problems(facts, on_missing_video="record")
    assert str(info.value) == (
        f"prompt template field '{{topc}}' is in none of the 2 records that use the template "
        f"(first: {data}:1); did you mean '{{topic}}'?"
    )


def test_a_template_field_some_records_lack_is_reported_and_fails_those_records(
    tmp_path: Path, clip_dir: Path
) -> None:
    good = str(clip_dir / "a.mp4")
    own_prompt = [{"from": "human", "value": "Say hi."}]
    records = [
        {"video": good, "topic": "cats"},
        {"video": good},
        {"video": good, "conversation": own_prompt},  # its own prompt: the template is not used
        {"video": None},  # nothing to caption
    ]
    facts, data = facts_for(tmp_path, records, "Describe {topic}.")
    assert (facts.template_records, facts.field_counts) == (2, {"topic": 1})
    assert todo_problems(facts, on_missing_video="error") == [
        f"1 record(s) lack the prompt template field '{{topic}}' and will get status error: {data}:2"
    ]


def test_an_empty_shard_with_overwrite_empties_the_output_without_the_engine(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data = dataset(tmp_path, clip_dir, 2)
    empty = [i for i in range(3) if len(shard_range(2, i, 3)) == 0]
    assert empty, "three shards over two records: one of them is empty"
    out = tmp_path / f"shard-{empty[0]}.jsonl"
    out.write_text('{"old": 1}\n')
    cfg = config(data, out, shard_index=empty[0], num_shards=3, overwrite=True)
    result = run_captioning(cfg, NotToBeStarted(tiny_model))
    assert result.exit_code == 0
    assert out.read_bytes() == b""
    assert summary_of(out)["records_in_shard"] == 0


def test_overwrite_stopped_before_its_first_batch_keeps_the_old_output_and_summary(
    tmp_path: Path, clip_dir: Path, tiny_model: Path
) -> None:
    data = dataset(tmp_path, clip_dir, 4)
    out = tmp_path / "out.jsonl"
    run_captioning(config(data, out, prompt="Old prompt."), FakeEngine(tiny_model))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("out.")}
    new = config(data, out, prompt="New prompt.", overwrite=True)
    stopped = run_captioning(new, FakeEngine(tiny_model), should_stop=lambda: True)
    assert stopped.interrupted
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("out.")}
    assert after == before  # the old records keep their own fingerprint
    # So a resume with the new prompt cannot take the old records for its own.
    with pytest.raises(VidcapError, match="prompt"):
        run_captioning(config(data, out, prompt="New prompt."), FakeEngine(tiny_model))


def test_a_run_in_process_leaves_the_callers_own_helpers_alive(
    tmp_path: Path, clip_dir: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``execute`` ends the helpers *it* started; a caller's engine started before (its processes
    hold stop signals back, as vLLM's engine core does) must outlive the run."""
    import subprocess
    import sys

    from vidcap.procs import blocks_stop_signal, stop_signals_blocked

    with stop_signals_blocked():
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        assert blocks_stop_signal(helper.pid)
        data = dataset(tmp_path, clip_dir, 2)
        out = tmp_path / "out.jsonl"
        monkeypatch.setattr("vidcap.engines.create_engine", lambda *_: FakeEngine(tiny_model))
        assert harness.execute(config(data, out, model=str(tiny_model)), quiet=True) == 0
        with pytest.raises(subprocess.TimeoutExpired):  # alive: the run did not kill it
            helper.wait(timeout=2)
    finally:
        helper.kill()
        helper.wait()
