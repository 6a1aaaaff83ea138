"""Windowed decoding: one probe, one pass per frame size, and the same frames as each window alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vidcap.errors import RecordError
from vidcap.pipeline.decode_step import DecodeTask, decode_record
from vidcap.video.load import WindowedVideo, load_video, load_windowed_video
from vidcap.video.synthetic import frame_index_of, make_clip
from vidcap.video.types import SamplingOptions
from vidcap.video.windows import Span


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """25 s at 4 fps, small: three windows of 10 s would leave a 5 s tail (half: kept apart)."""
    return make_clip(tmp_path_factory.mktemp("long") / "long.mp4", seconds=25, fps=4, width=160, height=120)


def _same_as_alone(video: WindowedVideo, path: Path, options: SamplingOptions) -> None:
    for window in video.windows:
        alone = load_video(str(path), options, video_start=window.span.start, video_end=window.span.end)
        assert window.plan == alone.plan
        assert window.frames.shape == alone.frames.shape
        assert np.array_equal(window.frames, alone.frames)
        shown = [frame_index_of(frame) for frame in window.frames]
        assert shown == list(window.plan.frame_indices)


def test_windows_decode_as_each_window_alone(long_clip: Path) -> None:
    options = SamplingOptions(fps=1.0, min_pixels=3136, max_pixels=20000)
    video = load_windowed_video(str(long_clip), options, 10)
    assert [w.span for w in video.windows] == [Span(0, 10), Span(10, 20), Span(20, 25)]
    sizes = {(w.plan.resized_width, w.plan.resized_height) for w in video.windows}
    assert len(sizes) == 1  # one pass over the file
    _same_as_alone(video, long_clip, options)
    # The metadata the engine gets names the frames sent, in seconds from the video's start.
    last = video.windows[-1].plan.processor_metadata()
    assert last["frames_indices"][0] >= 80 and last["fps"] == 4


def test_windows_of_different_sizes(long_clip: Path) -> None:
    # A pixel budget per video: the longer last window gets smaller frames than the others.
    options = SamplingOptions(fps=2.0, min_pixels=3136, total_pixels=200_000)
    video = load_windowed_video(str(long_clip), options, 10, video_start=1.0)
    assert [w.span for w in video.windows] == [Span(1, 11), Span(11, 25)]
    sizes = [(w.plan.resized_width, w.plan.resized_height) for w in video.windows]
    assert sizes[0] != sizes[1]
    _same_as_alone(video, long_clip, options)


def test_decode_task_with_a_window(long_clip: Path) -> None:
    task = DecodeTask(index=3, paths=(str(long_clip),), options=SamplingOptions(fps=0.5), window=12.0)
    (video,) = decode_record(task).videos
    assert isinstance(video, WindowedVideo)
    assert [w.span for w in video.windows] == [Span(0, 12), Span(12, 25)]  # 1 s tail joins
    two = DecodeTask(index=3, paths=(str(long_clip), str(long_clip)), options=SamplingOptions(), window=12.0)
    with pytest.raises(RecordError, match="one video per record; this record has 2"):
        decode_record(two)
