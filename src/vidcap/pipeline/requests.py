"""From input records to caption requests: what the main process decides about each record
(prompt, video paths, skip), the decode task it sends to a worker, and the ``CaptionRequest``
built from the worker's frames, refused here when the engine could not take its prompt."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidcap.config import RunConfig
from vidcap.engines.caption_engine import CaptionEngine, CaptionRequest, VideoInput
from vidcap.errors import RecordError, engine_error, one_line
from vidcap.io.records import InputRecord
from vidcap.pipeline.check import bound, resolve_video_path, video_paths
from vidcap.pipeline.decode_step import DecodedRecord, DecodeTask
from vidcap.pipeline.text_pass import text_prompt
from vidcap.prompts import DiyVideoPrompt, conversation_system_prompt, resolve_prompt

log = logging.getLogger(__name__)


@dataclass
class Pending:
    """A record on its way through the decode pool, with what the main process decided about it."""

    record: InputRecord
    paths: tuple[str, ...] = ()  # its videos, as resolved (error messages name them so)
    prompt: str | None = None
    system_prompt: str | None = None
    error: str | None = None
    skipped: bool = False


@dataclass
class Built:
    """A decoded record made ready for the engine: its ``request``, or the ``error`` that fails it
    before generation; ``notes``: the ``{output_key}_notes`` field (what decoding had to assume)."""

    request: CaptionRequest | None
    error: str | None
    notes: dict[str, Any]
    videos: int = 0
    frames: int = 0


def decode_tasks(
    records: Iterator[InputRecord],
    config: RunConfig,
    template: DiyVideoPrompt,
    base: Path | str,
    pending: deque[Pending],
) -> Iterator[DecodeTask]:
    """Decide prompt, paths and skips; one decode task per record, its ``Pending`` appended to
    ``pending`` (the pool's outcomes come back in the same order)."""
    opts = config.run
    for record in records:
        if opts.no_video:  # a text pass: every record is prompted, none has a video to decode
            entry = Pending(record, system_prompt=opts.system_prompt)
            try:
                entry.prompt = text_prompt(record.data, template)
            except RecordError as exc:
                entry.error = one_line(exc)
            pending.append(entry)
            yield DecodeTask(index=record.index, paths=(), options=config.sampling)
            continue
        paths = tuple(resolve_video_path(p, base) for p in video_paths(record.data, opts.input_video_key))
        entry = Pending(record, paths)
        entry.skipped = not paths  # null or [] video: nothing to caption, whatever the prompt
        try:
            if paths:
                entry.prompt = resolve_prompt(
                    record.data, template, opts.conversation_key, template_first=opts.prompt_first
                )
                entry.system_prompt = opts.system_prompt or conversation_system_prompt(
                    record.data.get(opts.conversation_key)
                )
        except RecordError as exc:
            entry.error = one_line(exc)
        pending.append(entry)
        yield DecodeTask(
            index=record.index,
            paths=paths if entry.error is None else (),
            options=config.sampling,
            video_start=bound(record.data, "video_start"),
            video_end=bound(record.data, "video_end"),
            threads=opts.decode_threads,
            window=opts.window,
        )


def build_request(entry: Pending, decoded: DecodedRecord, engine: CaptionEngine, config: RunConfig) -> Built:
    """The request for a decoded record (id: its input position), or why the engine cannot take it."""
    videos = decoded.videos
    request = CaptionRequest(
        request_id=str(entry.record.index),
        prompt=entry.prompt or "",
        system_prompt=entry.system_prompt,
        videos=[VideoInput(v.frames, v.plan.processor_metadata(), v.plan.video_tokens) for v in videos],
    )
    notes = notes_field(videos, config.run.output_key, engine.request_notes([request]))
    frames = sum(v.plan.nframes for v in videos)
    error = length_problem(engine, request, config)
    return Built(request if error is None else None, error, notes, videos=len(videos), frames=frames)


def notes_field(videos: list[Any], output_key: str, engine_notes: Sequence[str] = ()) -> dict[str, Any]:
    """``{output_key}_notes``: what probing, planning and decoding had to assume (an irregular
    frame rate, a container count past the last frame, packed B-frames, ...), then what the engine
    may change (``engine_notes``); absent when nothing was.
    With several videos in a record, each note names its video."""
    named = len(videos) > 1
    lines = [f"{Path(v.info.path).name}: {note}" if named else note for v in videos for note in v.all_notes]
    lines += engine_notes
    return {f"{output_key}_notes": lines} if lines else {}


def length_problem(engine: CaptionEngine, request: CaptionRequest, config: RunConfig) -> str | None:
    """Refuse, before generation, a prompt the engine cannot take (so it cannot fail in the engine)."""
    limit = engine.max_model_len
    if limit is None:
        return None
    try:
        tokens = engine.count_prompt_tokens(request)
    except Exception as exc:  # the model's processor refused this record's input: its error alone
        log.debug("counting the prompt tokens of %s failed", request.request_id, exc_info=True)
        return f"the model's processor cannot take this record: {engine_error(exc)}"
    if tokens < limit:
        return None
    return (
        f"prompt too long: {tokens} tokens ({request.video_tokens} visual) but the model takes "
        f"{limit} (--max-model-len); lower --fps, --max-frames or --max-pixels, or raise --max-model-len"
    )
