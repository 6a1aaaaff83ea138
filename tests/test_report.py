"""``vidcap report`` without a browser: what the page holds, record selection, and bad inputs.

The outputs here are written by hand in vidcap's output format (no engine needed to check the
report); the browser test (test_report_browser.py) starts from a real run of the tiny model.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import run_vidcap, write_jsonl
from vidcap.errors import VidcapError
from vidcap.io.jsonio import dumps, dumps_pretty, loads
from vidcap.report.build import DEFAULT_LIMIT, ReportOptions, build_report
from vidcap.report.recorded import Sampling
from vidcap.report.thumbs import fit, spread
from vidcap.video.metadata import probe_video
from vidcap.video.plan import plan_frames
from vidcap.video.synthetic import make_clip
from vidcap.video.types import SamplingOptions

SAMPLING = SamplingOptions(fps=2.0, max_pixels=160 * 28 * 28)
NAN = float("nan")


def page_data(html: Path) -> dict:
    """The records embedded in a report page (the JSON the page's script renders)."""
    text = html.read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S)
    assert match, "no embedded report data"
    return json.loads(match.group(1), parse_constant=pytest.fail)  # strict, as the browser's JSON.parse


def ok(rid: str, video: str, caption: str, **extra) -> dict:
    return {"id": rid, "video": [video], "caption": caption, "status": "ok", "error": None, **extra}


@pytest.fixture()
def outdir(tmp_path: Path) -> Path:
    """A run folder: clips/ beside an output of ok, error, flagged, windowed and skipped records."""
    make_clip(tmp_path / "clips" / "a.mp4", seconds=3.0, fps=24, width=320, height=240)
    make_clip(tmp_path / "clips" / "w.avi", seconds=6.0, fps=10, width=160, height=96, codec="mpeg4")
    windows = [
        {
            "start": 0.0,
            "end": 3.0,
            "caption": "first window",
            "status": "ok",
            "info": {"flags": ["repetition"]},
        },
        {"start": 3.0, "end": 6.0, "caption": "second window", "status": "ok", "info": {"flags": []}},
    ]
    records = [
        ok("r1", "clips/a.mp4", "a caption with </script><b>markup</b>"),
        {"id": "r2", "video": "clips/gone.mp4", "caption": None, "status": "error", "error": "not found"},
        ok(
            "r3", "clips/a.mp4", "cut off", info={"finish_reason": "length", "flags": ["truncated"], "p": NAN}
        ),
        ok("r4", "clips/w.avi", "whole video", windows=windows),
        {"id": "r5", "video": None, "caption": None, "status": "skipped", "error": None},
    ]
    write_jsonl(tmp_path / "out.jsonl", records)
    return tmp_path


def report(outdir: Path, **kwargs) -> tuple[Path, dict]:
    html = outdir / "report.html"
    sampling = Sampling(SAMPLING, "test")
    outputs = (outdir / "out.jsonl",)
    options = ReportOptions(outputs=outputs, html=html, sampling=sampling, workers=1, **kwargs)
    build_report(options)
    return html, page_data(html)


def test_spread_and_fit() -> None:
    assert spread(5, 12) == [0, 1, 2, 3, 4]
    assert spread(100, 4) == [0, 33, 66, 99]
    assert spread(3, 1) == [0]
    assert fit(1280, 720, (128, 72)) == (128, 72)
    assert fit(720, 1280, (128, 72)) == (40, 72)
    assert fit(64, 48, (128, 72)) == (64, 48)  # never enlarged


def test_page_shows_every_record_with_the_planned_frames(outdir: Path) -> None:
    html, data = report(outdir)
    by_id = {r["id"]: r for r in data["records"]}
    assert list(by_id) == ["r1", "r2", "r3", "r4", "r5"]  # output order, nothing dropped

    # r1's strip: frames the run's plan sampled (same options), evenly spread, with their times.
    plan = plan_frames(probe_video(str(outdir / "clips" / "a.mp4")), SAMPLING)
    strip = by_id["r1"]["strips"][0]
    assert strip["planned"] == plan.nframes
    chosen = spread(plan.nframes, 12)
    assert [t for t, _ in strip["frames"]] == pytest.approx([plan.timestamps[i] for i in chosen])
    for _, uri in strip["frames"]:
        jpeg = base64.b64decode(uri.removeprefix("data:image/jpeg;base64,"))
        with av.open(io.BytesIO(jpeg)) as container:
            frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
        assert frame.shape == (strip["height"], strip["width"], 3)
        assert strip["width"] <= 128 and strip["height"] <= 72
        assert np.ptp(frame) > 0  # a real picture, not a blank
    assert by_id["r1"]["caption"] == "a caption with </script><b>markup</b>"

    # The failed record and its unreadable video are on the page; the report went on.
    assert by_id["r2"]["status"] == "error" and by_id["r2"]["error"] == "not found"
    assert "not found" in by_id["r2"]["strips"][0]["error"]
    assert by_id["r3"]["flags"] == ["truncated"]
    assert by_id["r3"]["info"] == {"finish_reason": "length", "p": None}  # NaN: null for JSON.parse

    # Windows: each window's caption with the frames of its own segment.
    windows = by_id["r4"]["windows"]
    assert [w["caption"] for w in windows] == ["first window", "second window"]
    assert by_id["r4"]["all_flags"] == ["repetition"] and by_id["r4"]["strips"] == []
    for window in windows:
        times = [t for t, _ in window["strips"][0]["frames"]]
        assert times and all(window["start"] <= t <= window["end"] for t in times)
    assert by_id["r5"]["strips"] == []

    # Self-contained: nothing is fetched from anywhere.
    text = html.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)
    assert "<link" not in text and "@import" not in text and "url(" not in text
    assert "</script><b>" not in text  # the caption cannot close the data script
    assert '<svg role="img" aria-label="records by status"' in text
    assert "1 truncated" in text and "1 repetition" in text


def test_only_and_sample_choose_records_and_say_so(outdir: Path) -> None:
    _, data = report(outdir, only=("error", "truncated"))
    assert [r["id"] for r in data["records"]] == ["r2", "r3"]
    _, data = report(outdir, only=("repetition",))  # a window's flag counts for its record
    assert [r["id"] for r in data["records"]] == ["r4"]
    with pytest.raises(VidcapError, match="no record matches --only nothing"):
        report(outdir, only=("nothing",))

    picks = [[r["id"] for r in report(outdir, sample=3, seed=seed)[1]["records"]] for seed in (1, 1, 2)]
    assert picks[0] == picks[1] and len(picks[0]) == 3  # seeded
    assert picks[0] == sorted(picks[0])  # shown in output order


def test_big_outputs_are_sampled_by_default_and_paginated(tmp_path: Path) -> None:
    """A 10,000-record output: a random 1,000 by default (said on the page), all with --all."""
    records = [{"id": i, "video": None, "caption": None, "status": "skipped"} for i in range(10_000)]
    write_jsonl(tmp_path / "out.jsonl", records)
    html, data = report(tmp_path)
    assert len(data["records"]) == DEFAULT_LIMIT and data["page_size"] == 50
    assert "A random sample of 1,000 of them" in html.read_text()
    assert "10,000 records (10,000 skipped" in html.read_text()
    _, data = report(tmp_path, show_all=True)
    assert len(data["records"]) == 10_000


def test_summary_fields_and_shards(outdir: Path) -> None:
    """The run summary's figures are shown; its status key is honoured; shards read in order."""
    out = outdir / "out.jsonl"
    renamed = []
    for line in out.read_bytes().splitlines():
        record = loads(line)
        record["state"] = record.pop("status")  # as written by: vidcap run --status-key state
        renamed.append(record)
    write_jsonl(outdir / "s0.jsonl", renamed[:2])
    write_jsonl(outdir / "s1.json", [])
    (outdir / "s1.json").write_bytes(dumps(renamed[2:]))
    summary = {
        "status_key": "state",
        "input": str(outdir / "data.jsonl"),
        "videos_per_s": 1.25,
        "engine": {"busy_fraction": 0.93},  # issue 10's engine statistics
        "model": "some/model",  # not a local folder: the report must not look it up on the hub
    }
    (outdir / "s0.jsonl.summary.json").write_bytes(dumps_pretty(summary))
    html = outdir / "r.html"
    shards = (outdir / "s0.jsonl", outdir / "s1.json")
    build_report(ReportOptions(outputs=shards, html=html, sampling=Sampling(SAMPLING, "test"), workers=1))
    data = page_data(html)
    assert [r["id"] for r in data["records"]] == ["r1", "r2", "r3", "r4", "r5"]
    assert [r["status"] for r in data["records"]] == ["ok", "error", "ok", "ok", "skipped"]
    assert data["records"][2]["where"] == f"{outdir / 's1.json'}: element 1"
    text = html.read_text()
    assert "<th>engine busy</th>" in text and "<td>0.93</td>" in text and "<td>1.25</td>" in text


def test_bad_outputs_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "status": "ok"}\n{"id": 2, "stat\n')
    result = run_vidcap("report", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {bad}:2: invalid JSON")
    assert "Traceback" not in result.stderr

    result = run_vidcap("report", str(tmp_path / "absent.jsonl"))
    assert result.returncode == 2 and f"error: {tmp_path / 'absent.jsonl'}: no such file" in result.stderr

    result = run_vidcap("report", str(tmp_path / "notes.txt"))
    assert result.returncode == 2 and "not a vidcap output file" in result.stderr
    assert not (tmp_path / "bad.report.html").exists()


def test_cli_writes_beside_the_output_and_names_missing_videos(outdir: Path) -> None:
    result = run_vidcap("report", str(outdir / "out.jsonl"), "--fps", "2", "--max-pixels", str(160 * 28 * 28))
    assert result.returncode == 0, result.stderr
    html = outdir / "out.report.html"
    assert html.is_file()
    assert f"video not shown: {outdir / 'out.jsonl'}:2 (id r2): clips/gone.mp4" in result.stderr
    assert "5 of 5 records, 1 video(s) not readable" in result.stderr
    assert len(page_data(html)["records"]) == 5


def test_options_recorded_in_the_summary_are_used(outdir: Path) -> None:
    """A summary with the run's fingerprint (issue 9: its options, frame sampling included) gives
    the report the run's frame plan and field names without any flag."""
    out = outdir / "out.jsonl"
    records = [loads(line) for line in out.read_bytes().splitlines()]
    for record in records:
        record["text"] = record.pop("caption")  # as written by: vidcap run --output-key text
    write_jsonl(out, records)
    recorded = SamplingOptions(nframes=6, max_pixels=200_000)
    fingerprint = {"options": {"output_key": "text", "sampling": dataclasses.asdict(recorded)}}
    (outdir / "out.jsonl.summary.json").write_bytes(dumps_pretty({"fingerprint": fingerprint}))
    html = outdir / "r.html"
    build_report(ReportOptions(outputs=(out,), html=html, workers=1))
    first = page_data(html)["records"][0]
    assert first["caption"] == "a caption with </script><b>markup</b>"
    plan = plan_frames(probe_video(str(outdir / "clips" / "a.mp4")), recorded)
    assert first["strips"][0]["planned"] == plan.nframes == 6
    assert [t for t, _ in first["strips"][0]["frames"]] == pytest.approx(list(plan.timestamps))
    assert "as the run recorded them in its summary" in html.read_text()


def _histogram_counts(html: Path, title: str) -> list[int]:
    """The bar counts of the page's histogram ``title`` (each bar's tooltip ends ``: COUNT``)."""
    text = html.read_text(encoding="utf-8")
    figure = re.search(rf'<svg role="img" aria-label="{title}".*?</svg>', text, re.S)
    assert figure, f"no {title} plot"
    return [int(n.replace(",", "")) for n in re.findall(r": ([\d,]+)</title>", figure.group(0))]


def test_a_windowed_records_caption_is_labelled_and_plotted_apart(outdir: Path) -> None:
    """A windowed record's caption is a summary (with its prompt) or its windows' timed text; the
    caption-length plot counts captions of a video or a window, never summaries or timed texts."""
    html, data = report(outdir)
    by_id = {r["id"]: r for r in data["records"]}
    assert by_id["r4"]["caption_kind"] == "summary" and by_id["r4"]["summary_prompt"] is None
    assert by_id["r1"]["caption_kind"] == "caption"
    # r1, r3 and r4's two windows; r4's summary has a plot of its own.
    assert sum(_histogram_counts(html, "caption length")) == 4
    assert sum(_histogram_counts(html, "summary length")) == 1

    # The prompt comes from the run summary; a caption that is the windows' timed text says so.
    out = outdir / "out.jsonl"
    records = [loads(line) for line in out.read_bytes().splitlines()]
    fingerprint = {"options": {"window": 3.0, "summary_prompt": "Sum up the scenes."}}
    (outdir / "out.jsonl.summary.json").write_bytes(dumps_pretty({"fingerprint": fingerprint}))
    html, data = report(outdir)
    assert data["records"][3]["summary_prompt"] == "Sum up the scenes."
    records[3]["caption"] = "[0:00-0:03] first window\n[0:03-0:06] second window"
    write_jsonl(out, records)
    html, data = report(outdir)
    assert data["records"][3]["caption_kind"] == "timed" and data["records"][3]["summary_prompt"] is None
    assert sum(_histogram_counts(html, "caption length")) == 4
    assert "summary length" not in html.read_text()


def test_a_records_notes_are_shown_once_and_window_bounds_rounded(tmp_path: Path) -> None:
    """The notes the run wrote (caption_notes) are not said again under the frames the report
    plans (the same plan, the same notes); a window's bounds are shown to the microsecond."""
    make_clip(tmp_path / "v.mp4", seconds=6.0, fps=10, width=160, height=96)
    windows = [
        {"start": 0.0, "end": 3.0, "caption": "one", "status": "ok", "info": {"flags": []}},
        # Past the end of the 6 s video: its plan has a note.
        {"start": 3.0, "end": 7.000000000000001, "caption": "two", "status": "ok", "info": {"flags": []}},
    ]
    write_jsonl(tmp_path / "out.jsonl", [ok("n", "v.mp4", "text", windows=windows)])
    _, data = report(tmp_path)
    (first, second) = data["records"][0]["windows"]
    assert second["end"] == 7.0
    (note,) = second["strips"][0]["notes"]
    assert "past the end" in note and first["strips"][0]["notes"] == []

    # As a run writes it: the window's note in the record's caption_notes, named by the window.
    record = ok("n", "v.mp4", "text", windows=windows, caption_notes=[f"window [0:03-0:07]: {note}"])
    write_jsonl(tmp_path / "out.jsonl", [record])
    _, data = report(tmp_path)
    shown = data["records"][0]
    assert shown["notes"] == record["caption_notes"]
    assert [s["notes"] for w in shown["windows"] for s in w["strips"]] == [[], []]


def test_a_shot_record_of_vidcap_clips_shows_its_span(tmp_path: Path) -> None:
    """A record `vidcap clips` made (a shot id, video_start/video_end) shows its span in the
    source video, its frames come from that span; CSV text seconds count as numbers."""
    make_clip(tmp_path / "v.mp4", seconds=6.0, fps=10, width=160, height=96)
    shot = ok("s", "v.mp4", "the second shot", video_start=2.0, video_end=4.5, shot_id="1-2", shot_kind="cut")
    from_csv = ok(
        "t", "v.mp4", "a CSV row", video_start="4.5", video_end="6.0", shot_id="1-3", shot_kind="fade"
    )
    plain = ok("p", "v.mp4", "not a shot", video_start=1.0, video_end=2.0)
    write_jsonl(tmp_path / "out.jsonl", [shot, from_csv, plain])
    html, data = report(tmp_path)
    first, second, third = data["records"]
    assert first["shot"] == {"id": "1-2", "kind": "cut", "start": 2.0, "end": 4.5}
    assert second["shot"] == {"id": "1-3", "kind": "fade", "start": 4.5, "end": 6.0}
    assert third["shot"] is None
    times = [t for t, _ in first["strips"][0]["frames"]]
    assert times and all(2.0 <= t <= 4.5 for t in times)
    assert "of the source video" in html.read_text(encoding="utf-8")  # the page's script draws it
