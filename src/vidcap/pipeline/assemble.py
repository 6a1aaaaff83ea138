"""Turn an input record and its outcome into the output record.

The output record is the input record with every field unchanged and in order, except the
conversation's human turn (which shows the prompt actually sent), followed by the output
key (the caption, or null), the status key (``ok``, ``error`` or ``skipped``) and the error
key (the message, or null). Error text never goes into the caption field.
"""

from __future__ import annotations

from typing import Any, Literal

from vidcap.config import RunOptions
from vidcap.prompts import with_prompt_shown

Status = Literal["ok", "error", "skipped"]


def output_record(
    record: dict[str, Any],
    opts: RunOptions,
    *,
    status: Status,
    caption: Any = None,
    error: str | None = None,
    prompt: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record to write; ``extra`` adds fields after the error key (e.g. raw model output)."""
    out = dict(record)
    if prompt is not None and opts.conversation_key in out:
        out[opts.conversation_key] = with_prompt_shown(out[opts.conversation_key], prompt)
    out[opts.output_key] = caption if status == "ok" else None
    out[opts.status_key] = status
    out[opts.error_key] = error
    if extra:
        out.update(extra)
    return out
