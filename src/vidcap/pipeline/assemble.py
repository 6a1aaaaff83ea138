"""Turn an input record and its outcome into the output record.

The output record is the input record with every field unchanged and in order, except the
conversation's human turn (which shows the prompt actually sent), followed by the output
key (the caption, or null), the status key (``ok``, ``error`` or ``skipped``) and the error
key (the message, or null). Error text never goes into the caption field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from vidcap.config import RunConfig, RunOptions
from vidcap.engines.caption_engine import CaptionOutput
from vidcap.pipeline.assess import SeenCaptions, caption_info, flag_failure
from vidcap.pipeline.captions import caption_value
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
    # A text pass (--no-video) leaves the conversation alone: it shows the first pass's prompt.
    if prompt is not None and not opts.no_video and opts.conversation_key in out:
        out[opts.conversation_key] = with_prompt_shown(out[opts.conversation_key], prompt)
    out[opts.output_key] = caption if status == "ok" else None
    out[opts.status_key] = status
    out[opts.error_key] = error
    if extra:
        out.update(extra)
    return out


@dataclass
class Answered:
    """An engine's answer turned into the output record; ``error`` is None when it is ``ok``."""

    record: dict[str, Any]
    error: str | None
    flags: list[str]
    flagged: bool = False  # failed by --fail-on (a retry may do better), not by the engine or schema


def answered_record(
    data: dict[str, Any],
    output: CaptionOutput,
    config: RunConfig,
    *,
    prompt: str | None,
    notes: dict[str, Any],
    seen: SeenCaptions,
    attempts: int = 0,
) -> Answered:
    """The output record for an engine's answer: its caption (or error) and info object.

    ``seen`` remembers the captions of earlier records: call this in input order, so that the
    ``duplicate`` flag marks the later of two records whatever order the engine finished them in.
    A caption whose flags ``--fail-on`` names is an ``error`` whose text is kept in
    ``{output_key}_raw``; ``attempts``: the retries it took (``info.retries`` when > 0).
    """
    opts = config.run
    info = caption_info(
        output.texts if output.error is None else None,
        output.finish_reasons,
        prompt_tokens=output.prompt_tokens,
        generated_tokens=output.generated_tokens,
        num_captions=config.generation.num_captions,
        seen=seen,
    )
    value = (
        caption_value(output.texts, config.generation, raw_key=f"{opts.output_key}_raw")
        if output.error is None and output.texts is not None
        else None
    )
    if attempts:
        info["retries"] = attempts
    error = output.error or (value.error if value else "the engine returned no text")
    if error is None and value is not None:
        failure = flag_failure(info["flags"], opts.fail_on)
        if failure is not None:
            extra = {f"{opts.output_key}_raw": value.caption, opts.info_key: info, **notes}
            record = output_record(data, opts, status="error", error=failure, prompt=prompt, extra=extra)
            return Answered(record, failure, list(info["flags"]), flagged=True)
        extra = {opts.info_key: info, **notes}
        record = output_record(data, opts, status="ok", caption=value.caption, prompt=prompt, extra=extra)
    else:
        extra = {**(value.extra or {} if value else {}), opts.info_key: info, **notes}
        record = output_record(data, opts, status="error", error=error, prompt=prompt, extra=extra)
    return Answered(record, error, list(info["flags"]))
