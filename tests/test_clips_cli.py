"""``vidcap clips``: shot records for ``vidcap run``, from videos with known cuts."""

from __future__ import annotations

import json
import os
from itertools import pairwise
from pathlib import Path

import pytest

from tests.conftest import (
    TINY_ENGINE,
    assert_only_noise_errors,
    run_vidcap,
    run_vidcap_in_process,
    write_jsonl,
)
from vidcap.io.records import iter_records
from vidcap.shot_corpus import build_video


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> tuple[Path, list[int]]:
    folder = tmp_path_factory.mktemp("footage")
    transitions = build_video(folder / "raw.mp4", 5, seed=7, width=160, height=120)
    return folder, [t.first for t in transitions]


def _records(path: Path) -> list[dict]:
    return [r.data for r in iter_records(path)]


def test_one_record_per_shot_with_cut_times_within_two_frames(footage, tmp_path: Path) -> None:
    folder, truth = footage
    data = write_jsonl(folder / "in.jsonl", [{"id": "raw", "video": "raw.mp4", "lang": "en"}])
    out = tmp_path / "sub" / "shots.jsonl"
    proc = run_vidcap("clips", str(data), "-o", str(out), "--id-key", "id")
    assert proc.returncode == 0, proc.stderr
    shots = _records(out)
    assert [s["shot_id"] for s in shots] == [f"raw-{n}" for n in range(1, len(truth) + 2)]
    assert [s["shot_kind"] for s in shots] == ["start"] + ["cut"] * len(truth)
    assert all(s["lang"] == "en" and s["id"] == "raw" for s in shots)
    # The path is rewritten from the clips file's folder, where vidcap run looks for it.
    assert (out.parent / shots[0]["video"]).resolve() == (folder / "raw.mp4").resolve()
    starts = [round(s["video_start"] * 25) for s in shots[1:]]
    assert all(abs(a - b) <= 2 for a, b in zip(starts, truth, strict=True)), (starts, truth)
    # Shots tile the video: each ends where the next starts.
    assert all(a["video_end"] == b["video_start"] for a, b in pairwise(shots))
    assert shots[0]["video_start"] == 0.0


def test_bad_video_is_an_error_record_and_the_rest_go_on(footage, tmp_path: Path) -> None:
    folder, truth = footage
    (tmp_path / "bad.mp4").write_bytes(b"garbage" * 50)
    data = write_jsonl(
        tmp_path / "in.jsonl",
        [{"video": "bad.mp4"}, {"video": str(folder / "raw.mp4")}, {"video": "missing.mp4"}],
    )
    out = tmp_path / "shots.jsonl"
    proc = run_vidcap("clips", str(data), "-o", str(out))
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "in.jsonl:1:" in errors[0] and "in.jsonl:3: video not found" in errors[1]
    rows = _records(out)
    assert "clips_error" in rows[0] and rows[0]["video"] == "bad.mp4"
    assert [r["shot_id"] for r in rows[1:-1]] == [f"2-{n}" for n in range(1, len(truth) + 2)]
    assert rows[-1] == {"video": "missing.mp4", "clips_error": rows[-1]["clips_error"]}


def test_short_shots_dropped_leave_no_record(footage, tmp_path: Path) -> None:
    folder, _ = footage
    video = str(folder / "raw.mp4")
    every, dropped = tmp_path / "all.jsonl", tmp_path / "long.jsonl"
    assert run_vidcap("clips", video, "-o", str(every)).returncode == 0
    proc = run_vidcap("clips", video, "-o", str(dropped), "--min-shot", "2.5", "--short-shots", "drop")
    assert proc.returncode == 0, proc.stderr
    spans = [(r["video_start"], r["video_end"]) for r in _records(every)]
    long = [(a, b) for a, b in spans if b - a >= 2.5 - 1e-6]
    assert 0 < len(long) < len(spans)  # the footage's shots are 1.2-3.6 s
    assert [(r["video_start"], r["video_end"]) for r in _records(dropped)] == long


def test_interval_split_with_trims(footage, tmp_path: Path) -> None:
    folder, _ = footage
    out = tmp_path / "clips.jsonl"
    proc = run_vidcap(
        "clips", str(folder / "raw.mp4"), "-o", str(out), "--split", "interval", "--every", "2",
        "--trim-start", "1", "--trim-end", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = _records(out)
    assert rows[0]["video_start"] == 1.0 and rows[1]["video_start"] == 3.0
    assert all(r["video_end"] - r["video_start"] <= 2.0 + 1e-9 for r in rows)
    assert rows[-1]["shot_kind"] == "interval"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "interval"], "--split interval needs --every"),
        (["--detector", "magic"], "--detector must be one of content, adaptive"),
        (["--min-shot", "5", "--max-shot", "2"], "--max-shot (2.0) must be more than --min-shot"),
        (["--short-shots", "keep"], "--short-shots must be merge or drop"),
    ],
)
def test_bad_options_are_one_line(footage, tmp_path: Path, args: list[str], message: str) -> None:
    folder, _ = footage
    proc = run_vidcap("clips", str(folder / "raw.mp4"), "-o", str(tmp_path / "o.jsonl"), *args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and message in proc.stderr


def test_an_output_without_summary_is_not_resumed(footage, tmp_path: Path) -> None:
    folder, _ = footage
    out = tmp_path / "o.jsonl"
    out.write_text('{"kept": 1}\n')
    proc = run_vidcap("clips", str(folder / "raw.mp4"), "-o", str(out))
    assert proc.returncode == 2 and "cannot resume" in proc.stderr and "--overwrite" in proc.stderr
    assert out.read_text() == '{"kept": 1}\n'


def _three_videos(folder: Path, tmp_path: Path, suffix: str = ".jsonl") -> Path:
    """A dataset of three records (one a bad video) in the format of ``suffix``."""
    from vidcap.io.formats import format_for

    (tmp_path / "bad.mp4").write_bytes(b"garbage" * 50)
    video = str(folder / "raw.mp4")
    rows = [{"id": "a", "video": video}, {"id": "b", "video": "bad.mp4"}, {"id": "c", "video": video}]
    path = tmp_path / f"in{suffix}"
    format_for(path, "output").write_file(path, rows)
    return path


def test_a_killed_run_resumes_every_shot_once_in_order(footage, tmp_path: Path) -> None:
    folder, truth = footage
    data = _three_videos(folder, tmp_path)
    whole = tmp_path / "whole.jsonl"
    assert run_vidcap("clips", str(data), "-o", str(whole), "--id-key", "id", "-q").returncode == 1
    expected = whole.read_bytes().splitlines(keepends=True)
    assert len(expected) == 2 * (len(truth) + 1) + 1
    # As a kill leaves it: the first video's shots, the error record, two shots of the third
    # video and half a line; the summary says the run did not complete.
    out = tmp_path / "out.jsonl"
    assert run_vidcap("clips", str(data), "-o", str(out), "--id-key", "id", "-q").returncode == 1
    kept = len(truth) + 1 + 1 + 2
    out.write_bytes(b"".join(expected[:kept]) + expected[kept][:20])
    proc = run_vidcap("clips", str(data), "-o", str(out), "--id-key", "id", "-q")
    assert proc.returncode == 0, proc.stderr  # the bad video's error record was written before
    assert out.read_bytes() == whole.read_bytes()
    assert "vidcap: 1 video(s) (2 done before)" in proc.stderr
    # Another split option: refused, naming it.
    again = run_vidcap("clips", str(data), "-o", str(out), "--id-key", "id", "--min-shot", "2")
    assert again.returncode == 2 and "min-shot 0.0 -> 2.0" in again.stderr


def test_a_sigkilled_run_resumes(footage, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    folder, truth = footage
    data = write_jsonl(tmp_path / "in.jsonl", [{"video": str(folder / "raw.mp4")}] * 6)
    whole = tmp_path / "whole.jsonl"
    assert run_vidcap("clips", str(data), "-o", str(whole), "-q", "--decode-workers", "0").returncode == 0
    out = tmp_path / "out.jsonl"
    args = [sys.executable, "-m", "vidcap", "clips", str(data), "-o", str(out), "-q", "--decode-workers", "0"]
    proc = subprocess.Popen(args, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size == 0):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < len(_records(out)) < 6 * (len(truth) + 1)
    assert run_vidcap("clips", str(data), "-o", str(out), "-q").returncode == 0
    assert out.read_bytes() == whole.read_bytes()


@pytest.mark.parametrize(
    ("suffix_in", "suffix_out"), [(".csv", ".parquet"), (".parquet", ".csv"), (".json", ".json")]
)
def test_shards_in_every_format_merge_into_the_whole(
    footage, tmp_path: Path, suffix_in: str, suffix_out: str
) -> None:
    folder, truth = footage
    data = _three_videos(folder, tmp_path, suffix_in)
    whole = tmp_path / f"whole{suffix_out}"
    assert run_vidcap("clips", str(data), "-o", str(whole), "-q").returncode == 1
    shards = []
    for index in range(2):
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(index), "SLURM_ARRAY_TASK_COUNT": "2"}
        out = tmp_path / f"part{index}{suffix_out}"
        proc = run_vidcap("clips", str(data), "-o", str(out), "-q", env=env)
        assert proc.returncode == (1 if index == 0 else 0), proc.stderr  # the bad video is line 2
        shards.append(str(out))
    merged = tmp_path / f"merged{suffix_out}"
    proc = run_vidcap("merge", *shards, "-o", str(merged))
    assert proc.returncode == 0, proc.stderr
    assert _records(merged) == _records(whole)
    rows = _records(whole)
    assert [r.get("shot_id") for r in rows] == [f"1-{n}" for n in range(1, len(truth) + 2)] + [None] + [
        f"3-{n}" for n in range(1, len(truth) + 2)
    ]
    # A CSV clips file reads back as text; vidcap run takes its seconds all the same.
    starts = [float(r["video_start"]) for r in rows if r.get("shot_id")]
    assert starts[1] > 0


def test_default_output_progress_and_summary(footage, tmp_path: Path) -> None:
    folder, truth = footage
    data = _three_videos(folder, tmp_path)
    proc = run_vidcap("clips", str(data), "--shard-index", "1", "--num-shards", "2")
    out = tmp_path / "in.clips.shard-1-of-2.jsonl"
    assert proc.returncode == 0, proc.stderr
    assert "vidcap: splitting: 1 records" in proc.stderr and "1/1 records (100%)" in proc.stderr
    summary = json.loads((tmp_path / "in.clips.shard-1-of-2.jsonl.summary.json").read_text())
    assert summary["complete"] is True and summary["shard"] == {"index": 1, "count": 2}
    assert summary["records_in_shard"] == len(_records(out)) == summary["clips"] == len(truth) + 1
    assert (
        summary["fingerprint"]["span"]["start"] == 2
        and summary["fingerprint"]["options"]["command"] == "clips"
    )


@pytest.mark.engine
def test_clips_then_run_caption_each_shot_of_real_footage(
    tmp_path: Path, tiny_model: Path, vllm_engine
) -> None:
    """The issue's done-when: real clips joined at known frames, cut by `vidcap clips` (into a
    CSV file, whose seconds read back as text), then captioned by `vidcap run`: one captioned
    record per shot, each cut within 2 frames of the known one."""
    from vidcap.shot_corpus import debian_videos, real_sources

    try:
        sources = real_sources(debian_videos(), 160, 120)
    except RuntimeError as e:
        pytest.skip(str(e))
    truth = [
        t.first
        for t in build_video(tmp_path / "footage.mp4", 5, seed=11, width=160, height=120, sources=sources)
    ]
    data = write_jsonl(tmp_path / "in.jsonl", [{"id": "reel", "video": "footage.mp4"}])
    shots = tmp_path / "shots.csv"
    proc = run_vidcap("clips", str(data), "-o", str(shots), "--id-key", "id", "-q")
    assert proc.returncode == 0, proc.stderr
    shot_rows = _records(shots)
    starts = [round(float(s["video_start"]) * 25) for s in shot_rows]
    assert len(starts) == len(truth) + 1 and starts[0] == 0
    assert all(abs(a - b) <= 2 for a, b in zip(starts[1:], truth, strict=True)), (starts, truth)
    assert [s["shot_kind"] for s in shot_rows] == ["start"] + ["cut"] * len(truth)
    config = tmp_path / "tiny.toml"
    config.write_text(
        f'model = "{tiny_model}"\nmax_model_len = {TINY_ENGINE["max_model_len"]}\n'
        f"gpu_memory_utilization = {TINY_ENGINE['gpu_memory_utilization']}\nenforce_eager = true\n"
        f"max_tokens = 6\nfps = 2.0\nmin_pixels = {28 * 28 * 4}\nmax_pixels = {28 * 28 * 16}\n"
    )
    out = tmp_path / "captions.jsonl"
    # The run command in this process, on the shared engine (the config's engine settings are its).
    proc = run_vidcap_in_process(vllm_engine, "run", "-i", str(shots), "-o", str(out), "-c", str(config),
                                 "--id-key", "shot_id", "--quiet")  # fmt: skip
    assert_only_noise_errors(proc.returncode, out, proc.stderr)
    rows = _records(out)
    assert [r["shot_id"] for r in rows] == [f"reel-{n}" for n in range(1, len(truth) + 2)]
    assert all((r["status"] == "ok" and r["caption"]) or r["status"] == "error" for r in rows)
    # Each caption is of its own shot: the record's segment is the shot's.
    assert [(r["video_start"], r["video_end"]) for r in rows] == [
        (s["video_start"], s["video_end"]) for s in shot_rows
    ]


def test_probe_split_shots_shows_the_cuts_clips_makes(footage, tmp_path: Path) -> None:
    folder, truth = footage
    video = str(folder / "raw.mp4")
    proc = run_vidcap("probe", video, str(tmp_path / "missing.mp4"), "--split", "shots", "--json")
    assert proc.returncode == 1
    assert "error: video not found:" in proc.stderr
    row, missing = (json.loads(line) for line in proc.stdout.splitlines())
    assert [s["first_frame"] for s in row["shots"]] == [0, *truth]
    assert "error" in missing
    out = tmp_path / "shots.jsonl"
    assert run_vidcap("clips", video, "-o", str(out)).returncode == 0
    assert [(s["start"], s["end"]) for s in row["shots"]] == [
        (r["video_start"], r["video_end"]) for r in _records(out)
    ]
    table = run_vidcap("probe", video, "--split", "shots")
    assert table.returncode == 0 and f"{len(truth) + 1} shot(s) (content, threshold 27)" in table.stdout


def test_a_video_over_the_decode_timeout_fails_alone(footage, tmp_path: Path) -> None:
    folder, truth = footage
    data = write_jsonl(tmp_path / "in.jsonl", [{"video": str(folder / "raw.mp4")}])
    out = tmp_path / "shots.jsonl"
    proc = run_vidcap("clips", str(data), "-o", str(out), "--decode-workers", "1", "--decode-timeout", "0.05")
    assert proc.returncode == 1
    assert _records(out) == [{"video": str(folder / "raw.mp4"), "clips_error": "timed out after 0.05 s"}]
    in_process = run_vidcap("clips", str(data), "-o", str(out), "--decode-workers", "0", "--overwrite")
    assert in_process.returncode == 0 and len(_records(out)) == len(truth) + 1


@pytest.mark.parametrize(
    ("value", "problem"),
    [(1.5, False), ("1.5", False), (" 2 ", False), (True, True), ("abc", True), ("nan", True), ([1], True)],
)
def test_seconds_may_be_text_as_a_csv_clips_file_holds_them(value, problem: bool) -> None:
    from vidcap.pipeline.check import bound, seconds_problem

    found = seconds_problem({"video_start": value}, "video_start")
    assert (found is not None) == problem
    if problem:
        assert found == f"'video_start' must be a number of seconds, got {value!r}"
    else:
        assert bound({"video_start": value}, "video_start") == float(value)
