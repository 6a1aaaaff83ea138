"""Timed windows of a long video (``--window SECONDS``), and each window's frame plan.

A video (or its ``[video_start, video_end]`` segment) is cut into consecutive windows of
``window`` seconds that tile it: the first starts at the segment's start, each starts where the
previous one ended, the last ends at the segment's end. A tail shorter than half a window joins
the previous window (as NVIDIA Cosmos-Curate merges a short last clip), so no window is shorter
than half a window, except the only window of a video shorter than that.

Each window is planned with the same rules as a whole video (``plan_video`` with the window as
``video_start``/``video_end``, qwen-vl-utils' segment semantics): its frame count follows
``--fps``/``--nframes`` over the window's length, its frame size the pixel budget over its frame
count. Both ends of a segment are inclusive in that plan, so the frame exactly on a boundary
between two windows may be sampled by both.

Times are seconds from the start of the video, everywhere: a window's ``start``/``end``, its
plan's ``timestamps`` and the ``frames_indices`` of the metadata the engine gets (Qwen3-VL
writes ``<t seconds>`` into its prompt from them), exactly as for a record with ``video_start``
under qwen-vl-utils. So the model, the ``windows`` field and a summary's ``[m:ss-m:ss]`` prefixes
all name the same instants.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import NamedTuple

from vidcap.families import plan_video
from vidcap.video.plan import planned_length
from vidcap.video.types import FramePlan, SamplingOptions, VideoInfo

# Float slack when counting whole windows: 0.3 s / 0.1 s must be 3 windows, not 2 and a tail.
_EPS = 1e-9


class Span(NamedTuple):
    """A window's bounds in seconds from the start of the video."""

    start: float
    end: float


def window_spans(start: float, end: float, window: float) -> list[Span]:
    """The windows tiling ``[start, end]``: consecutive spans of ``window`` seconds, the last
    one ending at ``end``; a tail shorter than ``window / 2`` joins the window before it.

    A segment shorter than one window is one window. Raises ValueError for a non-positive or
    non-finite ``window`` or an empty segment.
    """
    if not (math.isfinite(window) and window > 0):
        raise ValueError(f"window must be a positive number of seconds, got {window}")
    if not (math.isfinite(start) and math.isfinite(end) and end > start):
        raise ValueError(f"cannot cut [{start}, {end}] into windows: it is empty")
    length = end - start
    full = max(1, math.floor(length / window + _EPS))
    tail = length - full * window
    count = full + 1 if tail >= window / 2 - _EPS * window else full
    bounds = [start + k * window for k in range(count)] + [end]
    return [Span(a, b) for a, b in itertools.pairwise(bounds)]


def format_time(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on), with hundredths only where the time has them:
    ``0:20``, ``1:05:00``, ``0:02.5``."""
    hundredths = round(seconds * 100)
    whole, frac = divmod(hundredths, 100)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
    if frac:
        text += f".{frac:02d}".rstrip("0")
    return text


def format_span(span: Span) -> str:
    """``[0:00-0:20]``: how a window is named in a summary prompt and in notes."""
    return f"[{format_time(span.start)}-{format_time(span.end)}]"


@dataclass(frozen=True)
class WindowPlan:
    """One window of a video and the frames planned for it."""

    span: Span
    plan: FramePlan


def plan_windows(
    info: VideoInfo,
    options: SamplingOptions,
    window: float,
    *,
    video_start: float | None = None,
    video_end: float | None = None,
) -> tuple[FramePlan, list[WindowPlan]]:
    """The segment's whole plan (which checks ``video_start``/``video_end`` as a run without
    windows does, and carries the notes about the stream) and each window's plan.

    The segment ends at ``video_end`` or at the video's planned length, whichever is first.
    Raises RecordError (bad bounds, unplannable stream) or ValueError (bad options) as
    ``plan_video`` does.
    """
    whole = plan_video(info, options, video_start=video_start, video_end=video_end)
    length = planned_length(info)
    start = video_start or 0.0
    # plan_video refused a start at or past the end and a start not before video_end.
    end = length if video_end is None else min(video_end, length)
    plans = []
    spans = window_spans(start, end, window)
    for span in spans:
        plan = plan_video(info, options, video_start=span.start, video_end=span.end)
        plans.append(WindowPlan(span, plan))
    note = short_video_note(spans, window, segment=video_start is not None or video_end is not None)
    if note is not None:
        whole = dataclasses.replace(whole, notes=(*whole.notes, note))
    return whole, plans


def short_video_note(spans: list[Span], window: float, *, segment: bool = False) -> str | None:
    """The note for a video (or ``segment``) shorter than one window, else None.

    Such a video is one window: the record keeps its one-window list and its timed caption
    (``[0:00-0:02.54] ...``), like every record of a windowed run; the note (in the record's
    ``caption_notes`` and in ``vidcap probe``) says why there is a single, shorter window."""
    if len(spans) != 1 or spans[0].end - spans[0].start >= window:
        return None
    what = "the segment" if segment else "the video"
    length = spans[0].end - spans[0].start
    return f"{what} lasts {length:.2f} s, less than --window {window:g} s: one window {format_span(spans[0])}"
