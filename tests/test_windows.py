"""Timed windows: spans that tile a video, the tail rule, and each window's frame plan."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidcap.errors import RecordError
from vidcap.video.plan import plan_frames
from vidcap.video.types import SamplingOptions, VideoInfo
from vidcap.video.windows import (
    Span,
    format_span,
    format_time,
    plan_windows,
    short_video_note,
    window_spans,
)

starts = st.floats(min_value=0, max_value=10_000, allow_nan=False, allow_infinity=False)
lengths = st.floats(min_value=0.01, max_value=20_000, allow_nan=False, allow_infinity=False)
windows = st.floats(min_value=0.05, max_value=5_000, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(start=starts, length=lengths, window=windows)
def test_windows_tile_the_segment(start: float, length: float, window: float) -> None:
    end = start + length
    if not end > start:
        return
    spans = window_spans(start, end, window)
    assert spans[0].start == start
    assert spans[-1].end == end
    for before, after in itertools.pairwise(spans):
        assert before.end == after.start  # no gap, no overlap
    assert all(s.end > s.start for s in spans)
    # Every window but the last is exactly one window long; the last is within [w/2, 1.5 w).
    for span in spans[:-1]:
        assert math.isclose(span.end - span.start, window, rel_tol=1e-9, abs_tol=1e-9)
    last = spans[-1].end - spans[-1].start
    if len(spans) == 1:
        assert math.isclose(last, end - start)
        assert last < 1.5 * window * (1 + 1e-9)
    else:
        assert window / 2 * (1 - 1e-6) <= last < 1.5 * window * (1 + 1e-6)
    # As many windows as whole windows fit, plus one for a tail of at least half a window.
    full = math.floor(length / window + 1e-9)
    tail = length - full * window
    assert len(spans) == max(1, full + (1 if tail >= window / 2 * (1 - 1e-9) else 0))


def test_tail_rule_examples() -> None:
    assert window_spans(0, 89, 20) == [Span(0, 20), Span(20, 40), Span(40, 60), Span(60, 89)]  # 9 s joins
    assert window_spans(0, 90, 20)[-1] == Span(80, 90)  # exactly half a window stays
    assert window_spans(0, 95, 20)[-1] == Span(80, 95)  # 15 s stays its own window
    assert window_spans(0, 70, 20)[-1] == Span(60, 70)  # exactly half a window stays
    assert window_spans(0, 69.9, 20)[-1] == Span(40, 69.9)
    assert window_spans(0, 60, 20) == [Span(0, 20), Span(20, 40), Span(40, 60)]
    spans = window_spans(0, 0.3, 0.1)  # 0.3 / 0.1 is 2.999... in floats: still 3 windows
    assert len(spans) == 3 and spans[-1].end == 0.3


def test_short_videos_are_one_window() -> None:
    assert window_spans(0, 5, 20) == [Span(0, 5)]
    assert window_spans(0, 15, 20) == [Span(0, 15)]
    assert window_spans(0, 29, 20) == [Span(0, 29)]  # 9 s tail joins the only window
    assert window_spans(12.5, 14, 20) == [Span(12.5, 14)]


def test_bad_windows_are_refused() -> None:
    for window in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError, match="window"):
            window_spans(0, 10, window)
    with pytest.raises(ValueError, match="empty"):
        window_spans(5, 5, 1)


def test_time_format() -> None:
    assert format_time(0) == "0:00"
    assert format_time(20) == "0:20"
    assert format_time(65) == "1:05"
    assert format_time(3600) == "1:00:00"
    assert format_time(3725.5) == "1:02:05.5"
    assert format_time(2.25) == "0:02.25"
    assert format_span(Span(20, 40)) == "[0:20-0:40]"


def _info(seconds: float, fps: float = 10.0) -> VideoInfo:
    return VideoInfo(
        path="v.mp4",
        container="mp4",
        codec="h264",
        width=160,
        height=120,
        rotation=0,
        fps=fps,
        duration=seconds,
        total_frames=round(seconds * fps),
    )


def test_each_window_is_planned_as_a_segment() -> None:
    info, options = _info(88), SamplingOptions(fps=1.0)
    whole, plans = plan_windows(info, options, 20)
    assert whole == plan_frames(info, options)
    assert [p.span for p in plans] == [Span(0, 20), Span(20, 40), Span(40, 60), Span(60, 88)]
    for window in plans:
        expected = plan_frames(info, options, video_start=window.span.start, video_end=window.span.end)
        assert window.plan == expected
        # Absolute times: every sampled instant lies in its window.
        assert all(window.span.start <= t <= window.span.end for t in window.plan.timestamps)
    assert plans[0].plan.nframes == 20 and plans[-1].plan.nframes == 28


def test_windows_follow_the_records_bounds() -> None:
    info, options = _info(90), SamplingOptions(fps=1.0)
    _, plans = plan_windows(info, options, 20, video_start=15, video_end=62)
    assert [p.span for p in plans] == [Span(15, 35), Span(35, 62)]  # 7 s tail joins
    # A video_end past the end: the windows stop at the end, and the whole plan says so.
    whole, plans = plan_windows(info, options, 40, video_end=500)
    assert plans[-1].span.end == 90
    assert any("past the end" in note for note in whole.notes)


def test_a_video_shorter_than_a_window_is_one_window_with_a_note() -> None:
    """A video (or segment) shorter than --window is one window, and its plan says so (the note
    reaches the record's caption_notes and probe's notes); a longer single window has no note."""
    options = SamplingOptions(fps=1.0)
    whole, plans = plan_windows(_info(2.5), options, 20)
    assert [p.span for p in plans] == [Span(0, 2.5)]
    assert whole.notes[-1] == "the video lasts 2.50 s, less than --window 20 s: one window [0:00-0:02.5]"
    whole, plans = plan_windows(_info(30), options, 20, video_start=10, video_end=15)
    assert whole.notes[-1] == "the segment lasts 5.00 s, less than --window 20 s: one window [0:10-0:15]"
    whole, plans = plan_windows(_info(25), options, 20)  # one window, 0-25: the tail joined it
    assert len(plans) == 1 and not any("--window" in note for note in whole.notes)
    assert short_video_note([Span(0, 20)], 20) is None


def test_bad_bounds_fail_the_record_as_without_windows() -> None:
    info, options = _info(30), SamplingOptions()
    with pytest.raises(RecordError, match="past the end"):
        plan_windows(info, options, 10, video_start=31)
    with pytest.raises(RecordError, match="not before"):
        plan_windows(info, options, 10, video_start=12, video_end=11)
