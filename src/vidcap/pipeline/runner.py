"""The run loop: strings the steps together for one shard of one input file.

Order of work, and why:
1. check every record and the output folder before loading the model (a bad line at
   record 90,000 should cost seconds, not a GPU hour);
2. find what the output already holds (resume) and open it for appending;
3. start the engine;
4. decode in worker processes ahead of the engine (bounded look-ahead), generate batch by
   batch, and append each finished batch in input order, flushed to disk;
5. between batches, honour a stop request (SIGTERM/SIGINT): write what is done and return.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vidcap.config import RunConfig
from vidcap.engines.base import CaptionEngine, CaptionRequest, VideoInput
from vidcap.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RECORDS_FAILED, RecordError, one_line
from vidcap.io.merge import summary_path
from vidcap.io.records import InputRecord, SpanReader
from vidcap.io.resume import load_done
from vidcap.io.writer import open_writer
from vidcap.pipeline.assemble import output_record
from vidcap.pipeline.captions import caption_value
from vidcap.pipeline.check import bound, check_records, record_id, resolve_video_path, video_paths
from vidcap.pipeline.decode import DecodeTask, decode_record
from vidcap.pipeline.fingerprint import check_resumable, run_fingerprint
from vidcap.pipeline.shard import Shard, resolve_shard
from vidcap.pipeline.stats import RunStats
from vidcap.pipeline.summary import write_summary
from vidcap.progress import NullProgress, Progress
from vidcap.prompts import DiyVideoPrompt, as_prompt_template, conversation_system_prompt, resolve_prompt
from vidcap.video.plan import check_sampling
from vidcap.video.pool import OrderedPool, default_workers

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """How a run ended; ``exit_code`` follows the documented CLI exit codes."""

    output: Path
    summary: Path
    stats: RunStats
    records_in_shard: int
    complete: bool
    interrupted: bool
    elapsed_s: float
    summary_data: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 all ok, 1 some records failed, 75 interrupted (rerun to resume)."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_RECORDS_FAILED if self.stats.error else EXIT_OK


@dataclass
class _Pending:
    """A record on its way through the pool, with what the main process decided about it."""

    record: InputRecord
    paths: tuple[str, ...] = ()  # its videos, as resolved (error messages name them so)
    prompt: str | None = None
    system_prompt: str | None = None
    error: str | None = None
    skipped: bool = False


def run_captioning(
    config: RunConfig,
    engine: CaptionEngine,
    *,
    template: DiyVideoPrompt | str | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> RunResult:
    """Caption one shard of ``config.run.input`` into ``config.run.output``; see the module doc."""
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    opts = config.run
    progress = progress or NullProgress()
    template = as_prompt_template(template if template is not None else opts.prompt)
    input_path = Path(opts.input)
    # The shard's span of the input, found by a newline scan: the checks read only that.
    shard = resolve_shard(opts.shard_index, opts.num_shards, input_path)
    output_path = Path(opts.output) if opts.output else shard.default_output()

    log.info("checking the records in %s", input_path)
    facts = check_records(shard.span, opts, whole_input=shard.count == 1)
    for bad in facts.bad_lines:
        log.warning("%s (skipped: --on-bad-line skip)", bad.message)
    if facts.bad_count > len(facts.bad_lines):
        log.warning("... and %d more bad lines skipped", facts.bad_count - len(facts.bad_lines))
    # The model's patch geometry (from its config, no engine needed) decides the pixel defaults.
    geometry = engine.vision_geometry()
    config = dataclasses.replace(
        config,
        sampling=dataclasses.replace(
            config.sampling,
            image_factor=geometry.image_factor,
            temporal_patch_size=geometry.temporal_patch_size,
        ),
    )
    check_sampling(config.sampling)
    fingerprint = run_fingerprint(
        config, prompt=template.prompt_template, span=shard.span, digest=facts.digest
    )
    done = None if opts.overwrite else load_done(output_path, id_key=opts.id_key)
    if done is not None:
        check_resumable(output_path, fingerprint, done)  # before any work: nothing is written yet
    stats = RunStats(bad_lines=facts.bad_count)
    writer = open_writer(output_path, resume=not opts.overwrite)
    summary = _SummaryWriter(config, output_path, shard, facts.records, fingerprint, started, started_at)
    summary.write(stats, complete=False)  # the fingerprint is on disk before the first record
    interrupted = False
    caption_started: float | None = None
    sampling: dict[str, Any] | None = None  # the values sent and their sources, once the engine knows
    try:
        log.info("%d records ok; loading the model %s", facts.records, config.engine.model)
        load_started = time.monotonic()
        engine.start(max_videos_per_prompt=facts.max_videos_per_record)
        stats.load_s = time.monotonic() - load_started
        log.info("model loaded in %.1f s", stats.load_s)
        if engine.max_model_len:  # the default pixel budget fits the engine's context
            config = dataclasses.replace(
                config, sampling=dataclasses.replace(config.sampling, model_seq_len=engine.max_model_len)
            )
        sampling = engine.sampling().summary()
        todo, skipped_done = _records_to_do(config, shard, facts.records, done)
        stats.resumed = skipped_done
        if skipped_done:
            log.info("resuming after %d records already done in %s", skipped_done, output_path)
        caption_started = time.monotonic()
        progress.start(facts.records, done=skipped_done, description=f"captioning {input_path.name}")
        pending: deque[_Pending] = deque()
        workers = opts.decode_workers if opts.decode_workers is not None else default_workers()
        # One batch decoding ahead while the engine works on the current one is all the overlap
        # there is to have; more only holds more frames in memory.
        lookahead = opts.batch_size + 2 * max(workers, 1)
        with OrderedPool(
            decode_record,
            workers=workers,
            max_pending=lookahead,
            timeout_s=opts.decode_timeout,
            error_types=(RecordError,),  # anything else is a bug: its message keeps its type name
        ) as pool:
            video_root = Path(opts.video_root) if opts.video_root else input_path.parent
            tasks = _tasks(todo, config, template, video_root, pending)
            batch: list[tuple[_Pending, Any]] = []
            wait_started = time.monotonic()
            for outcome in pool.imap(tasks):
                stats.decode_wait_s += time.monotonic() - wait_started
                # Between two batches, or before the first (a stop asked while the model loaded).
                if should_stop():
                    interrupted = True
                    break
                batch.append((pending.popleft(), outcome))
                if len(batch) >= opts.batch_size:
                    _finish_batch(batch, config, engine, writer, stats, progress)
                    batch = []
                wait_started = time.monotonic()
            if batch and not interrupted:
                interrupted = should_stop()
                if not interrupted:
                    _finish_batch(batch, config, engine, writer, stats, progress)
        # A stop asked during the last batch is moot: every record is written, the run is complete.
    except BaseException:
        if should_stop():  # the engine died from the same signal that asked us to stop
            interrupted = True
        else:
            writer.close(complete=False)
            summary.write(stats, complete=False, sampling=sampling)
            raise
    finally:
        progress.stop()
    if caption_started is not None:
        stats.caption_s = time.monotonic() - caption_started
    complete = not interrupted
    writer.close(complete=complete)
    elapsed = time.monotonic() - started
    data = summary.write(stats, complete=complete, sampling=sampling)
    return RunResult(
        output=output_path,
        summary=summary_path(output_path),
        stats=stats,
        records_in_shard=facts.records,
        complete=complete,
        interrupted=interrupted,
        elapsed_s=elapsed,
        summary_data=data,
    )


def _records_to_do(
    config: RunConfig, shard: Shard, records: int, done: Any
) -> tuple[Iterator[InputRecord], int]:
    """The shard's records not yet in the output, and how many were skipped as done."""
    opts = config.run
    if done is None:
        return iter(SpanReader(shard.span, on_bad_line=opts.on_bad_line)), 0
    if opts.id_key is None:
        # Output is written in input order, so position-keyed resume skips a prefix.
        skip = min(done.count, records)
        return iter(SpanReader(shard.span, on_bad_line=opts.on_bad_line, start=skip)), skip

    # Two streaming passes (count, then filter) rather than holding the shard in memory.
    def shard_records() -> Iterator[InputRecord]:
        return iter(SpanReader(shard.span, on_bad_line=opts.on_bad_line))

    already = sum(1 for r in shard_records() if record_id(r, opts) in done.ids)
    return (r for r in shard_records() if record_id(r, opts) not in done.ids), already


def _tasks(
    records: Iterator[InputRecord],
    config: RunConfig,
    template: DiyVideoPrompt,
    base: Path,
    pending: deque[_Pending],
) -> Iterator[DecodeTask]:
    """Decide prompt, paths and skips in the main process; one decode task per record."""
    opts = config.run
    for record in records:
        paths = tuple(resolve_video_path(p, base) for p in video_paths(record.data, opts.input_video_key))
        entry = _Pending(record, paths)
        entry.skipped = not paths  # null or [] video: nothing to caption, whatever the prompt
        try:
            if paths:
                entry.prompt = resolve_prompt(record.data, template, opts.conversation_key)
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
        )


def _finish_batch(
    batch: list[tuple[_Pending, Any]],
    config: RunConfig,
    engine: CaptionEngine,
    writer: Any,
    stats: RunStats,
    progress: Progress,
) -> None:
    """Length-check, generate, assemble and write one batch, in input order."""
    opts = config.run
    results: dict[int, dict[str, Any]] = {}
    requests: dict[str, tuple[_Pending, CaptionRequest]] = {}
    videos = 0
    for entry, outcome in batch:
        data, index = entry.record.data, entry.record.index
        error = entry.error or outcome.error
        if entry.skipped and error is None:
            results[index] = output_record(data, opts, status="skipped", prompt=entry.prompt)
            stats.skipped += 1
            continue
        if error is None:
            request = CaptionRequest(
                request_id=str(index),
                prompt=entry.prompt or "",
                system_prompt=entry.system_prompt,
                videos=[
                    VideoInput(v.frames, v.plan.processor_metadata(), v.plan.video_tokens)
                    for v in outcome.result
                ],
            )
            videos += len(request.videos)
            stats.videos += len(request.videos)
            stats.frames += sum(v.plan.nframes for v in outcome.result)
            error = _length_problem(engine, request, config)
            if error is None:
                requests[request.request_id] = (entry, request)
                continue
        results[index] = output_record(data, opts, status="error", error=error, prompt=entry.prompt)
        stats.count_error(error, entry.paths)

    generate_started = time.monotonic()
    outputs = engine.generate([request for _, request in requests.values()]) if requests else []
    stats.generate_s += time.monotonic() - generate_started
    for output in outputs:
        entry, _ = requests[output.request_id]
        data, index = entry.record.data, entry.record.index
        stats.prompt_tokens += output.prompt_tokens
        stats.generated_tokens += output.generated_tokens
        value = (
            caption_value(output.texts, config.generation, raw_key=f"{opts.output_key}_raw")
            if output.error is None and output.texts is not None
            else None
        )
        error = output.error or (value.error if value else "the engine returned no text")
        if error is None and value is not None:
            results[index] = output_record(
                data, opts, status="ok", caption=value.caption, prompt=entry.prompt
            )
            stats.ok += 1
        else:
            extra = value.extra if value else None
            results[index] = output_record(
                data, opts, status="error", error=error, prompt=entry.prompt, extra=extra
            )
            stats.count_error(error, entry.paths)

    write_started = time.monotonic()
    writer.write_batch([results[entry.record.index] for entry, _ in batch])
    stats.write_s += time.monotonic() - write_started
    progress.advance(len(batch), videos=videos, errors=stats.error)


def _length_problem(engine: CaptionEngine, request: CaptionRequest, config: RunConfig) -> str | None:
    """Refuse, before generation, a prompt the engine cannot take (so it cannot abort a batch)."""
    limit = engine.max_model_len
    if limit is None:
        return None
    tokens = engine.count_prompt_tokens(request)
    if tokens < limit:
        return None
    return (
        f"prompt too long: {tokens} tokens ({request.video_tokens} visual) but the model takes "
        f"{limit} (--max-model-len); lower --fps, --max-frames or --max-pixels, or raise --max-model-len"
    )


class _SummaryWriter:
    """Writes the run's summary (with its fingerprint) beside the output, at start and at the end."""

    def __init__(
        self,
        config: RunConfig,
        output_path: Path,
        shard: Shard,
        records: int,
        fingerprint: dict[str, Any],
        started: float,
        started_at: str,
    ) -> None:
        self.config, self.output_path, self.shard, self.records = config, output_path, shard, records
        self.fingerprint, self.started, self.started_at = fingerprint, started, started_at

    def write(
        self, stats: RunStats, *, complete: bool, sampling: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Write the summary now; ``sampling``: the sampling values sent, once the engine knows them."""
        return write_summary(
            summary_path(self.output_path),
            config=self.config,
            input_path=self.shard.span.path,
            output_path=self.output_path,
            shard=self.shard,
            records_in_shard=self.records,
            fingerprint=self.fingerprint,
            stats=stats,
            elapsed_s=time.monotonic() - self.started,
            started_at=self.started_at,
            complete=complete,
            sampling=sampling,
        )
