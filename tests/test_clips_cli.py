"""``vidcap clips``: shot records for ``vidcap run``, from videos with known cuts."""

from __future__ import annotations

import json
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
        (["-o", "clips.csv"], "a clips file cannot be CSV"),
        (["--short-shots", "keep"], "--short-shots must be merge or drop"),
    ],
)
def test_bad_options_are_one_line(footage, tmp_path: Path, args: list[str], message: str) -> None:
    folder, _ = footage
    proc = run_vidcap("clips", str(folder / "raw.mp4"), "-o", str(tmp_path / "o.jsonl"), *args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and message in proc.stderr


def test_existing_output_needs_overwrite(footage, tmp_path: Path) -> None:
    folder, _ = footage
    out = tmp_path / "o.jsonl"
    out.write_text('{"kept": 1}\n')
    proc = run_vidcap("clips", str(folder / "raw.mp4"), "-o", str(out))
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    assert out.read_text() == '{"kept": 1}\n'


@pytest.mark.engine
def test_clips_then_run_captions_each_shot(footage, tmp_path: Path, tiny_model: Path, vllm_engine) -> None:
    folder, truth = footage
    shots = tmp_path / "shots.jsonl"
    proc = run_vidcap("clips", str(folder / "raw.mp4"), "-o", str(shots))
    assert proc.returncode == 0, proc.stderr
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
    assert [r["shot_id"] for r in rows] == [f"1-{n}" for n in range(1, len(truth) + 2)]
    assert all(r["status"] in ("ok", "error") for r in rows)
    # Each caption saw its own shot: the plan's frames lie within the record's segment.
    shot_rows = _records(shots)
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
