"""Windowed records (``--window``): their requests, and their ``windows`` field from the outputs.

The surface the feed uses, in the order it uses it, for one record whose decode gave a
``WindowedVideo`` (``DecodeTask.window``):

1. ``window_requests(index, video, prompt=..., system_prompt=...)``: one ``CaptionRequest`` per
   window, ids ``"{index}/w{k}"`` (k from 0). The feed submits them as any other request (length
   check included: a refused window gets a ``CaptionOutput`` with its ``error``).
2. Once every window's output is in: ``assemble_windows(index, video, outputs, ...)``, a
   ``WindowedResult`` holding the ``windows`` field, the record's status and error, its caption
   and info.
3. With ``--summary-prompt``: ``summary_request(index, result, ...)`` is a text-only request, id
   ``"{index}/summary"``, or None when a window failed (a summary over a gap would describe
   another video; the record is an error anyway). Its output goes to ``add_summary``.
4. ``result.fields()``: what to pass as ``extra`` to ``output_record`` (its ``windows``
   field and info), with ``status``/``caption``/``error`` from the result.

``record_of_request`` maps any of these ids back to the record's index.

Each window object holds ``start``/``end`` (seconds from the start of the video, as the model's
frame times), then the caption, status, error (only when the window failed) and info under the
run's own names (``--output-key``, ``--status-key``, ``--error-key``, ``--info-key``), so a
window reads like a record.

The record's status: ``ok`` when every window (and the summary, when asked) is ok; otherwise
``error``, with an error naming the failed windows by time range and the first one's message.
Its caption: the summary's with ``--summary-prompt``; without, the windows' captions as one
timed text, a line per window (``[0:00-0:20] ...``), which is also what a summary pass reads.
Its info: the summary's with ``--summary-prompt``; without, the windows' token counts added up,
their flags together and no finish reason. ``prompt_tokens``/``generated_tokens`` of the result
count every request of the record, for the run's totals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vidcap.config import RunOptions
from vidcap.engines.caption_engine import CaptionOutput, CaptionRequest, VideoInput
from vidcap.generation import GenerationOptions
from vidcap.io.columns import WINDOWS_KEY  # the output field holding a windowed record's windows
from vidcap.pipeline.assess import FLAGS, SeenCaptions, caption_info
from vidcap.pipeline.captions import caption_value
from vidcap.video.load import WindowedVideo
from vidcap.video.windows import Span, format_span

_SUMMARY = "summary"


def window_request_id(index: int, number: int) -> str:
    """The request id of window ``number`` (from 0) of record ``index``: ``"7/w0"``."""
    return f"{index}/w{number}"


def summary_request_id(index: int) -> str:
    """The request id of record ``index``'s summary: ``"7/summary"``."""
    return f"{index}/{_SUMMARY}"


def record_of_request(request_id: str) -> int:
    """The record index a request id names: ``"7"``, ``"7/w3"`` and ``"7/summary"`` are record 7."""
    return int(request_id.split("/", 1)[0])


def window_requests(
    index: int, video: WindowedVideo, *, prompt: str, system_prompt: str | None = None
) -> list[CaptionRequest]:
    """One request per window of ``video``, each with the record's prompt and that window's frames."""
    return [
        CaptionRequest(
            request_id=window_request_id(index, number),
            prompt=prompt,
            system_prompt=system_prompt,
            videos=[VideoInput(window.frames, window.plan.processor_metadata(), window.plan.video_tokens)],
        )
        for number, window in enumerate(video.windows)
    ]


def caption_text(caption: Any) -> str:
    """A caption as one text: itself, the first of a list (``--num-captions``), JSON for an object."""
    if isinstance(caption, list):
        caption = caption[0] if caption else ""
    if isinstance(caption, str):
        return caption
    return json.dumps(caption, ensure_ascii=False, separators=(",", ":"))


def timed_text(spans: list[Span], captions: list[Any]) -> str:
    """One line per window: its time range, then its caption (``[0:00-0:20] A dog runs.``)."""
    return "\n".join(
        f"{format_span(span)} {' '.join(caption_text(c).split())}"
        for span, c in zip(spans, captions, strict=True)
    )


@dataclass
class WindowedResult:
    """What one windowed record's outputs add up to (see the module doc)."""

    windows: list[dict[str, Any]]
    spans: list[Span]
    captions: list[Any]  # each window's caption value (None where it failed)
    status: Literal["ok", "error"]
    error: str | None
    caption: Any
    info: dict[str, Any]
    info_key: str
    prompt_tokens: int = 0  # every request of the record: windows and summary
    generated_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the summary's raw text

    def fields(self) -> dict[str, Any]:
        """The fields after the error key: the record's info, its ``windows``, and any extra."""
        return {self.info_key: self.info, WINDOWS_KEY: self.windows, **self.extra}


def _judge(
    output: CaptionOutput, *, opts: RunOptions, generation: GenerationOptions, seen: SeenCaptions
) -> tuple[dict[str, Any], Any, str | None]:
    """One window's (or the summary's) answer: its info object, caption value and error."""
    ok_texts = output.texts if output.error is None else None
    info = caption_info(
        ok_texts,
        output.finish_reasons,
        prompt_tokens=output.prompt_tokens,
        generated_tokens=output.generated_tokens,
        num_captions=generation.num_captions,
        seen=seen,
    )
    value = caption_value(ok_texts, generation, raw_key=f"{opts.output_key}_raw") if ok_texts else None
    error = output.error or (value.error if value is not None else "the engine returned no text")
    return info, value, error


def _union_flags(infos: list[dict[str, Any]]) -> list[str]:
    seen = {flag for info in infos for flag in info["flags"]}
    return [f for f in FLAGS if f in seen] + sorted(seen - set(FLAGS))


def assemble_windows(
    index: int,
    video: WindowedVideo,
    outputs: Mapping[str, CaptionOutput],
    *,
    opts: RunOptions,
    generation: GenerationOptions,
    seen: SeenCaptions,
) -> WindowedResult:
    """The ``windows`` field and the record's status, caption and info from its windows' outputs.

    ``outputs`` holds (at least) every window's output by request id; a window without one is
    an error ("the engine returned no output"). Call records in input order: the ``duplicate``
    flag marks the later of two equal captions.
    """
    windows: list[dict[str, Any]] = []
    captions: list[Any] = []
    infos: list[dict[str, Any]] = []
    failed: list[tuple[Span, str]] = []
    prompt_tokens = generated_tokens = 0
    for number, loaded in enumerate(video.windows):
        output = outputs.get(window_request_id(index, number))
        if output is None:
            output = CaptionOutput(window_request_id(index, number), error="the engine returned no output")
        prompt_tokens += output.prompt_tokens
        generated_tokens += output.generated_tokens
        info, value, error = _judge(output, opts=opts, generation=generation, seen=seen)
        # To the microsecond (libav's time base): a container duration of 29600148 us is 29.600148,
        # not the float product 29.600147999999997.
        item: dict[str, Any] = {"start": round(loaded.span.start, 6), "end": round(loaded.span.end, 6)}
        if error is None and value is not None:
            item.update({opts.output_key: value.caption, opts.status_key: "ok"})
            captions.append(value.caption)
        else:
            item.update({opts.output_key: None, opts.status_key: "error", opts.error_key: error})
            item.update(value.extra if value is not None else {})
            captions.append(None)
            failed.append((loaded.span, error))
        item[opts.info_key] = info
        windows.append(item)
        infos.append(info)
    spans = [w.span for w in video.windows]
    info = {
        "finish_reason": None,
        "prompt_tokens": prompt_tokens,
        "generated_tokens": generated_tokens,
        "flags": _union_flags(infos),
    }
    result = WindowedResult(
        windows=windows,
        spans=spans,
        captions=captions,
        status="ok",
        error=None,
        caption=None,
        info=info,
        info_key=opts.info_key,
        prompt_tokens=prompt_tokens,
        generated_tokens=generated_tokens,
    )
    if failed:
        result.status = "error"
        names = ", ".join(format_span(span) for span, _ in failed)
        plural = "s" if len(windows) > 1 else ""
        result.error = f"{len(failed)} of {len(windows)} window{plural} failed ({names}): {failed[0][1]}"
    else:
        result.caption = timed_text(spans, captions)
    return result


def summary_request(
    index: int, result: WindowedResult, *, summary_prompt: str, system_prompt: str | None = None
) -> CaptionRequest | None:
    """The text-only request for a whole-video caption over the windows' captions: the summary
    prompt, a blank line, then the timed text (a line per window). None when a window failed."""
    if result.status != "ok":
        return None
    prompt = f"{summary_prompt.rstrip()}\n\n{timed_text(result.spans, result.captions)}"
    return CaptionRequest(
        request_id=summary_request_id(index), prompt=prompt, videos=[], system_prompt=system_prompt
    )


def add_summary(
    result: WindowedResult,
    output: CaptionOutput,
    *,
    opts: RunOptions,
    generation: GenerationOptions,
    seen: SeenCaptions,
) -> WindowedResult:
    """Put the summary's caption and info on the record (its status follows the summary's)."""
    result.prompt_tokens += output.prompt_tokens
    result.generated_tokens += output.generated_tokens
    result.info, value, error = _judge(output, opts=opts, generation=generation, seen=seen)
    if error is None and value is not None:
        result.caption = value.caption
        return result
    result.status, result.caption = "error", None
    result.error = f"summary failed: {error}"
    result.extra.update(value.extra if value is not None else {})
    return result
