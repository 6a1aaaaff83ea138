"""Text-only runs (``--no-video``): a second pass of a text model over records, e.g. refining
the captions a first, video run wrote.

The prompt template is filled from the record's fields, plus what a caption record holds in a
form a prompt can use: ``{windows}`` (a windowed record's captions, one ``From 0.0 s to 12.0 s:
...`` line per window) and, for a JSON caption (``--json-schema``), each of its fields by name.
The record's own fields win over these; a conversation's human turn is not used as the prompt
(it asked the first pass's question, not this one's).
"""

from __future__ import annotations

import json
from typing import Any

from vidcap.errors import RecordError
from vidcap.io.columns import WINDOWS_KEY
from vidcap.pipeline.windowed import caption_text
from vidcap.prompts import DiyVideoPrompt

CAPTION_KEY = "caption"  # the field whose JSON object's fields a prompt may name


def windows_text(windows: Any) -> str:
    """A windowed record's captions as lines ``From 0.0 s to 12.0 s: caption``; a window without
    a caption (it failed) says so rather than leaving a silent gap."""
    if not isinstance(windows, list):
        raise RecordError(f"'{WINDOWS_KEY}' must be a list of windows, got {type(windows).__name__}")
    lines = []
    for number, window in enumerate(windows, start=1):
        if not isinstance(window, dict) or not all(k in window for k in ("start", "end", "caption")):
            raise RecordError(f"'{WINDOWS_KEY}' item {number} is not a window (start, end, caption)")
        caption = window["caption"]
        text = " ".join(caption_text(caption).split()) if caption is not None else "(no caption)"
        lines.append(f"From {float(window['start']):.1f} s to {float(window['end']):.1f} s: {text}")
    return "\n".join(lines)


def _json_fields(caption: Any) -> dict[str, Any]:
    """A JSON caption's fields (an object, or a string holding one); {} for any other caption."""
    if isinstance(caption, str) and caption.lstrip().startswith("{"):
        try:
            caption = json.loads(caption)
        except ValueError:
            return {}
    return dict(caption) if isinstance(caption, dict) else {}


def prompt_fields(record: dict[str, Any], template: DiyVideoPrompt) -> dict[str, Any]:
    """The fields a text pass's prompt is filled from (see the module doc)."""
    fields: dict[str, Any] = _json_fields(record.get(CAPTION_KEY))
    if WINDOWS_KEY in template.fields and WINDOWS_KEY in record:
        fields[WINDOWS_KEY] = windows_text(record[WINDOWS_KEY])
    fields.update((k, v) for k, v in record.items() if k != WINDOWS_KEY or k not in fields)
    if isinstance(fields.get(CAPTION_KEY), dict | list):  # as JSON text, not Python's repr
        fields[CAPTION_KEY] = caption_text(fields[CAPTION_KEY])
    return fields


def text_prompt(record: dict[str, Any], template: DiyVideoPrompt) -> str:
    """The prompt of a text pass for one record; a field the template needs and the record lacks
    is that record's error (``RecordError``, one line)."""
    return template.build_prompt(**prompt_fields(record, template))
