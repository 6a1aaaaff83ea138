"""Shot-boundary detection (vidcap.video.shots) on videos with known cuts."""

from __future__ import annotations

import math
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
