"""The feed: the one loop from decoded records to written output records.

Each decoded record (in input order, from ``DecodeAhead``) becomes a request that is submitted
at once while the engine has fewer than ``max_in_flight`` requests; the engine's outputs come
back as they finish, in any order, and are matched to their records by request id (never by
position). Every record, answered or not (skipped, failed to decode, prompt too long), takes a
slot in a reorder window in input order; the window releases finished records from its head,
so records are assessed (the ``duplicate`` flag marks the later of two records) and written
in input order. Written records are flushed at least every ``batch_size`` records or
``FLUSH_S`` seconds, whichever comes first.

Memory is bounded: at most ``2 * max_in_flight`` records between the oldest not yet released
and the newest entered (finished ones hold only their output record, not frames), the write
buffer (< ``batch_size``) and the decode look-ahead.

A stop (``should_stop()``) submits nothing new, collects what is in flight, writes every
finished record in order and ends; the run is interrupted unless every record was done.

A windowed record (``--window``, ``pipeline/windowed.py``) submits one request per window; once
they are all in, its ``--summary-prompt`` request (text only); it is done when those are. Its
requests wait in its slot while the engine is full (no record enters meanwhile), so the engine
never holds more than ``max_in_flight``; a stop still submits them, to finish the record.
A caption that ``--fail-on`` fails is tried again with a new seed (``--retries``) when it
reaches the head of the window (the ``duplicate`` flag is only known there); the record keeps
its request (and frames) until it is written for that.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidcap.config import RunConfig
from vidcap.engines.caption_engine import CaptionEngine, CaptionOutput, CaptionRequest
from vidcap.pipeline.ahead import END, DecodeAhead
from vidcap.pipeline.assemble import Answered, answered_record, output_record
from vidcap.pipeline.assess import SeenCaptions, flag_failure, retry_seed
from vidcap.pipeline.check import record_location
from vidcap.pipeline.requests import Pending, build_request, length_problem, notes_field
from vidcap.pipeline.stats import InFlightClock, RunStats
from vidcap.pipeline.windowed import (
    WINDOWS_KEY,
    add_summary,
    assemble_windows,
    summary_request,
    summary_request_id,
    window_requests,
)
from vidcap.progress import Progress
from vidcap.video.windows import short_video_note

log = logging.getLogger(__name__)

FLUSH_S = 5.0  # the longest a finished record waits in the write buffer (a run killed loses no more)
_STOP_POLL_S = 0.5  # nothing in flight, waiting for a decode: how often a stop request is checked
_IDLE_POLL_S = 0.01  # requests in flight, no decoded record ready: wait this long, then poll the engine


@dataclass
class _Slot:
    """A record's place in the reorder window: its answer (``output``) or its final record."""

    entry: Pending
    notes: dict[str, Any] = field(default_factory=dict)
    videos: int = 0
    output: CaptionOutput | None = None
    record: dict[str, Any] | None = None  # a record that needs no engine, ready to write
    error: str | None = None  # that record's error (counted when it is released)
    request: CaptionRequest | None = None  # kept for a retry (--retries), else dropped at submit
    attempts: int = 0  # retries so far
    windowed: Any = None  # --window: the record's WindowedVideo
    outputs: dict[str, CaptionOutput] = field(default_factory=dict)  # --window: by request id
    waiting: int = 0  # --window: its requests still in flight
    queued: deque[CaptionRequest] = field(default_factory=deque)  # --window: not yet submitted
    entered: bool = False  # --window: every window request has been submitted (or refused)
    summary_asked: bool = False  # --summary-prompt: its request made (once)

    @property
    def done(self) -> bool:
        if self.record is not None:
            return True
        if self.windowed is not None:
            return self.entered and self.waiting == 0 and not self.queued
        return self.output is not None


@dataclass
class Feed:
    """Streams one run's decoded records through the engine into the writer; see the module doc.

    ``on_write`` is called after each write (the runner's --overwrite summary follows the first).
    """

    engine: CaptionEngine
    config: RunConfig
    writer: Any
    stats: RunStats
    progress: Progress
    seen: SeenCaptions
    max_in_flight: int
    on_write: Callable[[], None] = lambda: None
    _window: deque[_Slot] = field(default_factory=deque)
    _flying: dict[str, _Slot] = field(default_factory=dict)  # request id -> its record's slot
    _buffer: list[tuple[dict[str, Any], int]] = field(default_factory=list)  # released: (record, videos)
    _flushed_at: float = 0.0
    _writing: bool = False  # a write in progress: one that fails is not tried again
    _failing: bool = False  # an exception is ending the run: release what is done, submit nothing
    _said_short: bool = False  # --window: a video shorter than a window was said on the terminal

    def run(self, ahead: DecodeAhead, should_stop: Callable[[], bool]) -> bool:
        """Caption everything ``ahead`` yields; True if a stop ended it before the last record."""
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, not {self.max_in_flight}")
        self.stats.in_flight_limit = max(self.stats.in_flight_limit, self.max_in_flight)
        clock = InFlightClock(self.stats)
        self._flushed_at = time.monotonic()
        stopping = exhausted = False
        try:
            while True:
                stopping = stopping or should_stop()
                can_enter = not stopping and not exhausted and self._room()
                if can_enter:
                    # Nothing in flight: wait for the next decode (checking for a stop now and
                    # then); else only a moment, then see what the engine has finished.
                    item = self._next(ahead, _IDLE_POLL_S if self.engine.in_flight else _STOP_POLL_S)
                    if item is END:
                        exhausted = True
                    elif item is not None:
                        self._enter(*item)
                        clock.update(self.engine.in_flight)
                if self.engine.in_flight:
                    # Block for outputs only when no record can enter now (at the limit, stopping,
                    # or no records left).
                    self._collect(wait=not can_enter)
                    clock.update(self.engine.in_flight)
                self._release()
                if not self.engine.in_flight and not can_enter:
                    if stopping and not exhausted:  # a stop after the last record is no interruption
                        exhausted = self._ended(ahead)
                    if exhausted or stopping:
                        break
            if self._window:
                # Nothing in flight, yet records unanswered: ending here would drop them silently.
                raise RuntimeError(
                    f"the {self.engine.name} engine has nothing in flight but {len(self._flying)} "
                    f"request(s) of {len(self._window)} record(s) never came back"
                )
            self._flush()
        except BaseException:
            # What is finished, in order, is still good: keep it (a resume starts after it). No
            # retry is submitted now: a record waiting for one is left for the resume.
            self._failing = True
            if not self._writing:
                self._release()
                self._flush()
            raise
        finally:
            clock.stop()
        return not exhausted

    # -- entering records ------------------------------------------------------------------
    def _room(self) -> bool:
        # A windowed record's requests wait in its slot until the engine has room: no record
        # enters while any are waiting, so the engine never holds more than max_in_flight.
        if any(slot.queued for slot in self._window):
            return False
        return self.engine.in_flight < self.max_in_flight and len(self._window) < 2 * self.max_in_flight

    def _next(self, ahead: DecodeAhead, timeout: float) -> Any:
        started = time.monotonic()
        try:
            return ahead.get(timeout)
        finally:
            self.stats.decode_wait_s += time.monotonic() - started

    def _ended(self, ahead: DecodeAhead) -> bool:
        """Whether the records have all been entered (the next item is the end), when stopping."""
        try:
            return self._next(ahead, 0.0) is END
        except Exception:  # what lies beyond a stop is the next run's business
            return False

    def _enter(self, entry: Pending, outcome: Any) -> None:
        """Give the record its slot; submit its request, or make its record if it needs no engine."""
        config, stats = self.config, self.stats
        slot = _Slot(entry)
        self._window.append(slot)
        error = entry.error or outcome.error
        if entry.skipped and error is None:
            slot.record = output_record(entry.record.data, config.run, status="skipped", prompt=entry.prompt)
            return
        if error is None and config.run.window is not None:
            self._enter_windows(slot, outcome.result)
            return
        if error is None:
            started = time.monotonic()
            built = build_request(entry, outcome.result, self.engine, config)
            stats.request_s += time.monotonic() - started
            stats.decode_worker_s += outcome.result.seconds
            stats.videos += built.videos
            stats.frames += built.frames
            slot.notes, slot.videos, error = built.notes, built.videos, built.error
            if built.request is not None:
                if config.run.retries:
                    slot.request = built.request
                self._submit(slot, built.request)
                return
        slot.error = error
        slot.record = output_record(
            entry.record.data, config.run, status="error", error=error, prompt=entry.prompt, extra=slot.notes
        )

    def _enter_windows(self, slot: _Slot, decoded: Any) -> None:
        """A windowed record: a request per window (each length-checked like any request)."""
        config, stats, entry = self.config, self.stats, slot.entry
        video = decoded.videos[0]
        slot.windowed, slot.videos = video, 1
        if not self._said_short:
            self._say_short_video(entry, video)
        stats.decode_worker_s += decoded.seconds
        stats.videos += 1
        stats.frames += sum(w.plan.nframes for w in video.windows)
        started = time.monotonic()
        requests = window_requests(
            entry.record.index, video, prompt=entry.prompt or "", system_prompt=entry.system_prompt
        )
        stats.request_s += time.monotonic() - started
        slot.notes = notes_field([video], config.run.output_key, self.engine.request_notes(requests))
        slot.queued.extend(requests)
        self._submit_queued()

    def _say_short_video(self, entry: Pending, video: Any) -> None:
        """Once a run: a video shorter than --window is one window (its record's notes say so)."""
        data, window = entry.record.data, self.config.run.window or 0.0
        segment = data.get("video_start") is not None or data.get("video_end") is not None
        note = short_video_note([w.span for w in video.windows], window, segment=segment)
        if note is not None:
            self._said_short = True
            where = record_location(Path(self.config.run.input), entry.record)
            log.warning("%s: %s (said once; such records have it in their notes)", where, note)

    def _submit_queued(self) -> None:
        """Submit the windowed records' waiting requests, oldest record first, while the engine
        has room (a stop still submits them: the record is finished, not left half done)."""
        for slot in self._window:
            while True:
                while slot.queued and self.engine.in_flight < self.max_in_flight:
                    self._submit(slot, slot.queued.popleft())
                if slot.queued:
                    return  # the engine is full: later records wait their turn
                if slot.windowed is None or slot.entered:
                    break
                slot.entered = True  # its windows are all submitted (or refused)
                self._windows_in(slot)  # maybe queues its summary: submitted next time round

    def _submit(self, slot: _Slot, request: CaptionRequest) -> None:
        """Submit one request of ``slot`` (refused here when its prompt is too long)."""
        if slot.windowed is not None:
            problem = length_problem(self.engine, request, self.config)
            if problem is not None:
                slot.outputs[request.request_id] = CaptionOutput(request.request_id, error=problem)
                return
            slot.waiting += 1
        request_id = request.request_id
        if request_id in self._flying:
            raise RuntimeError(f"request id {request_id!r} is already in flight")
        self._flying[request_id] = slot
        started = time.monotonic()
        refused = self.engine.submit([request])
        self.stats.submit_s += time.monotonic() - started
        self._answers(refused)

    def _windows_in(self, slot: _Slot) -> None:
        """Once a windowed record's windows are all in: its summary request (--summary-prompt)."""
        opts, index = self.config.run, slot.entry.record.index
        if not (slot.entered and slot.waiting == 0) or opts.summary_prompt is None:
            return
        if slot.summary_asked:
            return
        slot.summary_asked = True
        # The captions for the summary's prompt; the record is assembled again in input order
        # (with the run's duplicate memory) when it is released.
        generation = self.config.generation
        draft = assemble_windows(
            index, slot.windowed, slot.outputs, opts=opts, generation=generation, seen=SeenCaptions()
        )
        request = summary_request(
            index, draft, summary_prompt=opts.summary_prompt, system_prompt=slot.entry.system_prompt
        )
        if request is not None:  # None: a window failed, and a summary over a gap would mislead
            slot.queued.append(request)  # submitted by _submit_queued when the engine has room

    # -- outputs ---------------------------------------------------------------------------
    def _collect(self, *, wait: bool) -> None:
        started = time.monotonic()
        outputs = self.engine.collect(wait=wait)
        self.stats.collect_s += time.monotonic() - started
        self._answers(outputs)
        if not self._failing:
            self._submit_queued()

    def _answers(self, outputs: list[CaptionOutput]) -> None:
        """Each output to its record's slot, by request id."""
        for output in outputs:
            slot = self._flying.pop(output.request_id, None)
            if slot is None:
                raise RuntimeError(
                    f"the {self.engine.name} engine returned request {output.request_id!r}, "
                    "which is not in flight (or was answered already)"
                )
            if slot.windowed is None:
                slot.output = output
            else:
                slot.outputs[output.request_id] = output
                slot.waiting -= 1
                self._windows_in(slot)

    # -- in input order ----------------------------------------------------------------------
    def _release(self) -> None:
        """Assess and buffer the finished records at the head of the window, in input order."""
        config, stats = self.config, self.stats
        started = time.monotonic()
        while self._window and self._window[0].done:
            slot = self._window[0]
            entry = slot.entry
            if slot.windowed is not None and slot.record is None:
                record, error, flags = self._windowed_record(slot)
                stats.count_flags(flags)
            elif slot.output is not None:
                retry = slot.attempts < config.run.retries and slot.request is not None
                # A caption that may yet be retried is checked against the run's captions without
                # joining them: a try that is not written must not make a later caption (its own
                # retry's included) a duplicate.
                answered = self._answered(slot, self.seen.preview() if retry else self.seen)
                if answered.flagged and retry:
                    if self._failing:
                        break  # the run is ending: the resume tries this record again
                    # The try is dropped: its tokens are counted apart from the records' (whose
                    # info objects add up to the summary's prompt_tokens/generated_tokens).
                    stats.retried_prompt_tokens += slot.output.prompt_tokens
                    stats.retried_generated_tokens += slot.output.generated_tokens
                    self._retry(slot)
                    continue  # the head waits for its retry (unless the engine refused it at once)
                if retry:  # it passed: now its caption joins the run's
                    answered = self._answered(slot, self.seen)
                stats.prompt_tokens += slot.output.prompt_tokens
                stats.generated_tokens += slot.output.generated_tokens
                stats.count_flags(answered.flags)
                record, error = answered.record, answered.error
            else:
                record, error = slot.record, slot.error
            self._window.popleft()
            if error is not None:
                stats.count_error(error, entry.paths)
            elif entry.skipped:
                stats.skipped += 1
            else:
                stats.ok += 1
            self._buffer.append((record, slot.videos))
        stats.assess_s += time.monotonic() - started
        if len(self._buffer) >= config.run.batch_size or (
            self._buffer and time.monotonic() - self._flushed_at >= FLUSH_S
        ):
            self._flush()

    def _answered(self, slot: _Slot, seen: SeenCaptions) -> Answered:
        """A record's ``Answered`` (record, error, flags) from its engine output."""
        entry = slot.entry
        assert slot.output is not None
        return answered_record(
            entry.record.data,
            slot.output,
            self.config,
            prompt=entry.prompt,
            notes=slot.notes,
            seen=seen,
            attempts=slot.attempts,
        )

    def _windowed_record(self, slot: _Slot) -> tuple[dict[str, Any], str | None, list[str]]:
        """A windowed record's output record, error and flags, from its windows (and summary)."""
        config, entry = self.config, slot.entry
        opts, generation, index = config.run, config.generation, entry.record.index
        result = assemble_windows(
            index, slot.windowed, slot.outputs, opts=opts, generation=generation, seen=self.seen
        )
        summary = slot.outputs.get(summary_request_id(index))
        if summary is not None:
            add_summary(result, summary, opts=opts, generation=generation, seen=self.seen)
        self.stats.prompt_tokens += result.prompt_tokens
        self.stats.generated_tokens += result.generated_tokens
        extra = {**result.fields(), **slot.notes}
        failure = flag_failure(result.info["flags"], opts.fail_on) if result.status == "ok" else None
        if failure is not None:  # --fail-on, on the record's flags (its windows' and summary's)
            extra = {f"{opts.output_key}_raw": result.caption, **extra}
            result.status, result.error = "error", failure
        record = output_record(
            entry.record.data,
            opts,
            status=result.status,
            caption=result.caption,
            error=result.error,
            prompt=entry.prompt,
            extra=extra,
        )
        return record, result.error, list(result.info["flags"])

    def _retry(self, slot: _Slot) -> None:
        """Submit a record's request again with a new seed: its caption failed --fail-on."""
        assert slot.request is not None and slot.output is not None
        slot.attempts += 1
        self.stats.retries += 1
        seed = retry_seed(self.config.generation.seed, slot.attempts)
        request = dataclasses.replace(slot.request, sampling={**slot.request.sampling, "seed": seed})
        slot.output = None
        self._submit(slot, request)

    def _flush(self) -> None:
        """Write the released records (one write and fsync), then tell the progress display."""
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        started = time.monotonic()
        self._writing = True
        self.writer.write_batch([record for record, _ in batch])
        self._writing = False
        self.stats.write_s += time.monotonic() - started
        self._flushed_at = time.monotonic()
        # With --window the display also counts windows: a record may hold many.
        windows = sum(len(r.get(WINDOWS_KEY) or ()) for r, _ in batch) if self.config.run.window else 0
        videos = sum(v for _, v in batch)
        self.progress.advance(len(batch), videos=videos, errors=self.stats.error, windows=windows)
        self.on_write()
