"""The record fields the report reads, named in one place.

``caption``/``status``/``error`` follow ``vidcap run``'s ``--output-key``/``--status-key``/
``--error-key`` (the run's summary records the status key). ``info`` and ``windows`` are the
fields issue 11 adds (per-caption info with token counts and quality flags; timed windows of a
long video, each with its own caption, status and info); records without them simply show less.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportFields:
    """Names of the record fields the report reads (defaults: what ``vidcap run`` writes)."""

    caption: str = "caption"
    status: str = "status"
    error: str = "error"
    video: str = "video"
    id: str = "id"
    notes: str = "caption_notes"  # ``{output_key}_notes``: what decoding had to assume
    info: str = "info"
    windows: str = "windows"
    # Inside an info object.
    finish_reason: str = "finish_reason"
    prompt_tokens: str = "prompt_tokens"
    generated_tokens: str = "generated_tokens"
    flags: str = "flags"
    # Inside a window.
    window_start: str = "start"
    window_end: str = "end"
    # A record's own segment of its video (seconds), as ``vidcap run`` reads it.
    video_start: str = "video_start"
    video_end: str = "video_end"
    # What ``vidcap clips`` adds to each shot record: its id and what starts it.
    shot_id: str = "shot_id"
    shot_kind: str = "shot_kind"


STATUSES = ("ok", "error", "skipped")
"""The statuses ``vidcap run`` writes, in the order the page lists them (others follow)."""
