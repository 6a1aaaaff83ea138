"""A job: one shard of one input file captioned into one output, and the run loop that strings
the steps together for it (an executor hands it the engine; see ``executors/base.py``).

Order of work, and why:
1. check every record, and that the output is not the input, before loading the model (a
   bad line at record 90,000 should cost seconds, not a GPU hour);
2. lock the output (one writer per output, ``io/lock.py``) for the rest of the run;
3. find what the output already holds (resume): if that is every record, stop there, else
   check the records to do (video files exist, prompt fields) and open the output;
4. start decoding in worker processes (bounded look-ahead), then the engine, so that the first
   records are decoded while the model loads: the frame plan needs only the engine's context,
   which it says before loading (a failure is an ``EngineStartError``, not an interruption);
5. stream the decoded records through the engine (``pipeline/feed.py``): requests enter as their
   frames are ready, captions come back as they finish, and records are written in input
   order, flushed to disk;
6. on a stop request (SIGTERM/SIGINT), submit nothing new, finish and write what is in flight
   and return.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vidcap.config import RunConfig, needs_video_model
from vidcap.engines.caption_engine import CaptionEngine
from vidcap.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RECORDS_FAILED,
    EngineStartError,
    RecordError,
    StopDuringStart,
    VidcapError,
    one_line,
)
from vidcap.executors.array_share import Shard, shard_numbers
from vidcap.io.columns import output_columns
from vidcap.io.formats import find_span
from vidcap.io.jsonio import loads
from vidcap.io.lock import OutputLock, acquire_output_lock, lock_path
from vidcap.io.records import InputRecord, SpanReader
from vidcap.io.resume import load_done
from vidcap.io.shards import default_output
from vidcap.io.sidecar import summary_path
from vidcap.io.writer import open_writer
from vidcap.pipeline.ahead import DecodeAhead
from vidcap.pipeline.assess import SeenCaptions
from vidcap.pipeline.check import (
    check_output_is_not_input,
    check_records,
    check_todo,
    record_id,
    todo_problems,
)
from vidcap.pipeline.decode_step import decode_record
from vidcap.pipeline.feed import Feed
from vidcap.pipeline.fingerprint import check_resumable, run_fingerprint
from vidcap.pipeline.requests import Pending, decode_tasks
from vidcap.pipeline.stats import RunStats
from vidcap.pipeline.summary import build_summary, write_summary
from vidcap.progress import NullProgress, Progress
from vidcap.prompts import DiyVideoPrompt, as_prompt_template
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


@dataclass(frozen=True)
class RunHooks:
    """What the caller gives a run besides the job and the engine.

    ``progress``: the progress display. ``should_stop``: true once a stop was asked (the feed
    then submits nothing new, finishes what is in flight and returns). ``on_engine_start`` is
    called with True as the engine starts loading and with False when it is loaded or failed:
    meanwhile the caller may end the start by raising ``StopDuringStart`` (from a signal
    handler); the run then ends interrupted, nothing captioned, as it does when ``should_stop``
    is true before the model loads.
    """

    progress: Progress = field(default_factory=NullProgress)
    should_stop: Callable[[], bool] = lambda: False
    on_engine_start: Callable[[bool], None] = lambda starting: None
    #: What decodes the records ahead of the engine: ``OrderedPool`` (worker processes here), or
    #: a pool with its constructor and ``imap`` (the Ray executor's decodes in Ray tasks).
    decode_pool: Callable[..., Any] = OrderedPool


class Job:
    """One shard of one input file captioned into one output, built once per run.

    ``plan`` works out what reads no record: the input, this task's shard numbers
    (``vidcap.executors.array_share``), the output path (the one place it is computed) and that
    it is not the input. ``locked`` holds the output's lock (one writer per output,
    ``io/lock.py``). ``run`` finds the shard's span of the input, checks its records, computes
    the fingerprint, then, locked, resumes, opens the writer, streams the records through the
    feed on the engine it is given and writes the summary; see the module doc.
    """

    def __init__(
        self,
        config: RunConfig,
        template: DiyVideoPrompt,
        input_path: Path,
        output_path: Path,
        shard_numbers: tuple[int, int, bool],
    ) -> None:
        self.config = config
        self.template = template
        self.input_path = input_path
        self.output_path = output_path
        self.shard_numbers = shard_numbers  # (index, count, explicit): see array_share.shard_numbers
        self.lock: OutputLock | None = None  # while ``locked`` holds it

    @classmethod
    def plan(cls, config: RunConfig, template: DiyVideoPrompt | str | None = None) -> Job:
        """The job of ``config`` (``template``: the prompt, default ``config.run.prompt``).

        Raises VidcapError for bad shard numbers (flags or SLURM's variables) and for an
        output that is the input; reads no file.
        """
        opts = config.run
        input_path = Path(opts.input)
        numbers = shard_numbers(opts.shard_index, opts.num_shards)
        index, count, explicit = numbers
        default = default_output(input_path, (index, count) if explicit else None)
        output_path = Path(opts.output) if opts.output else default
        check_output_is_not_input(input_path, output_path)
        template = as_prompt_template(template if template is not None else opts.prompt)
        return cls(config, template, input_path, output_path, numbers)

    @contextmanager
    def locked(self, lock: OutputLock | None = None) -> Iterator[OutputLock]:
        """Hold the output's lock in the body; a second run of the same output stops here
        (``OutputLockedError``). ``lock``: the output's lock, taken already by the caller; a
        lock this job holds already is used as it is."""
        if lock is not None and lock.path != lock_path(self.output_path):
            raise ValueError(f"output_lock is {lock.path}, not the lock of {self.output_path}")
        held = lock or self.lock
        with nullcontext(held) if held is not None else acquire_output_lock(self.output_path) as taken:
            previous, self.lock = self.lock, taken
            try:
                yield taken
            finally:
                self.lock = previous

    def run(self, engine: CaptionEngine, hooks: RunHooks | None = None) -> RunResult:
        """Caption the job's shard with ``engine``; see the module doc.

        Raises VidcapError (before any work) for bad input, ``OutputLockedError`` when another
        run holds the output, ``EngineStartError`` when the model cannot be started. The output
        is locked for the run unless ``locked`` holds it already.
        """
        hooks = hooks or RunHooks()
        started = time.monotonic()
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        config, opts = self.config, self.config.run
        # The shard's span of the input, found by a newline scan: the checks read only that.
        index, count, explicit = self.shard_numbers
        span = find_span(self.input_path, index, count)
        shard = Shard(index=index, count=count, span=span, explicit=explicit)

        log.info("checking the records in %s%s", self.input_path, _shard_note(shard))
        facts = check_records(shard.span, opts, whole_input=shard.count == 1)
        for bad in facts.bad_lines:
            log.warning("%s (skipped: --on-bad-line skip)", bad.message)
        if facts.bad_count > len(facts.bad_lines):
            log.warning("... and %d more bad lines skipped", facts.bad_count - len(facts.bad_lines))
        # The model's family and patch geometry (from its config, no engine needed) decide the
        # frame plan and the pixel defaults; a --no-video run's text model has neither.
        if needs_video_model(config):
            geometry = engine.vision_geometry()
            config = dataclasses.replace(config, sampling=geometry.apply(config.sampling))
            check_sampling(config.sampling)
        fingerprint = run_fingerprint(
            config, prompt=self.template.prompt_template, span=shard.span, digest=facts.digest
        )
        # One writer per output, from here to the end (io/lock.py); a second run stops here.
        with self.locked():
            run = _Run(
                config=config,
                engine=engine,
                template=self.template,
                input_path=self.input_path,
                output_path=self.output_path,
                shard=shard,
                records=facts.records,
                fingerprint=fingerprint,
                started=started,
                started_at=started_at,
                on_engine_start=hooks.on_engine_start,
                decode_pool=hooks.decode_pool,
            )
            return run.execute(facts, hooks.progress, hooks.should_stop)


def run_captioning(
    config: RunConfig,
    engine: CaptionEngine,
    *,
    template: DiyVideoPrompt | str | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    output_lock: OutputLock | None = None,
    on_engine_start: Callable[[bool], None] | None = None,
) -> RunResult:
    """Caption one shard of ``config.run.input`` into ``config.run.output`` with ``engine``: the
    job of ``config`` (``Job``) run on one engine, for a library caller that holds its engine.

    ``output_lock``: the output's lock, when the caller took it already (else it is taken
    here); ``progress``, ``should_stop``, ``on_engine_start``: see ``RunHooks``. Raises what
    ``Job.run`` raises.
    """
    job = Job.plan(config, template)
    hooks = RunHooks(
        progress=progress or NullProgress(),
        should_stop=should_stop,
        on_engine_start=on_engine_start or (lambda starting: None),
    )
    with job.locked(output_lock) if output_lock is not None else nullcontext():
        return job.run(engine, hooks)


@dataclass
class _Run:
    """One locked run: what to do, the engine, and where the summary goes."""

    config: RunConfig
    engine: CaptionEngine
    template: DiyVideoPrompt
    input_path: Path
    output_path: Path
    shard: Shard
    records: int  # in this shard
    fingerprint: dict[str, Any]  # what a resume must match (pipeline/fingerprint.py)
    started: float
    started_at: str
    stats: RunStats = field(default_factory=RunStats)
    summary_written: bool = False  # by this run, with its fingerprint
    sampling: dict[str, Any] | None = None  # the values sent and their sources, once the engine knows
    seen: SeenCaptions = field(default_factory=SeenCaptions)  # caption hashes, for the duplicate flag
    on_engine_start: Callable[[bool], None] = lambda starting: None
    decode_pool: Callable[..., Any] = OrderedPool  # RunHooks.decode_pool

    def execute(self, facts: Any, progress: Progress, should_stop: Callable[[], bool]) -> RunResult:
        """Resume, check the records to do, start the engine, caption; see the module doc."""
        opts = self.config.run
        self.stats.bad_lines = facts.bad_count
        done = None if opts.overwrite else load_done(self.output_path, id_key=opts.id_key)
        if done is not None:
            check_resumable(self.output_path, self.fingerprint, done)  # before any work or write
        todo, skipped_done = _records_to_do(self.config, self.shard, self.records, done)
        self.stats.resumed = skipped_done
        if skipped_done == self.records:
            return self._nothing_to_do()
        report = check_todo(todo(), self.input_path, opts, self.template)
        for line in todo_problems(report, on_missing_video=opts.on_missing_video):
            log.warning("%s", line)

        writer = open_writer(
            self.output_path, resume=not opts.overwrite, like=self.input_path, columns=self._columns()
        )
        # The fingerprint goes on disk before the first record is appended. With --overwrite the
        # records go aside first and the old output (and its summary) stay until the first batch
        # replaces them: the summary follows that batch (see _caption).
        if not opts.overwrite:
            self._summary(complete=False)
        interrupted = False
        caption_started: float | None = None
        try:
            log.info("%d records ok; loading the model %s", facts.records, self.config.engine.model)
            with ExitStack() as decoding:
                # Decoding starts now, while the model loads: the plan needs only the engine's
                # context, which the engine says before loading, as it will resolve it.
                self._plan_for_context(self._planned_context())
                ahead = decoding.enter_context(self._decode_ahead(todo()))
                if self._load(facts.max_videos_per_record, should_stop, progress):
                    replan = needs_video_model(self.config)  # a --no-video run plans no frames
                    if replan and self.engine.max_model_len != self.config.sampling.model_seq_len:
                        # Another context than foreseen: decode again from the first record.
                        log.debug("engine context %s: planning again", self.engine.max_model_len)
                        decoding.close()
                        self._plan_for_context(self.engine.max_model_len)
                        ahead = decoding.enter_context(self._decode_ahead(todo()))
                    self._loaded(skipped_done)
                    caption_started = time.monotonic()
                    description = f"captioning {self.input_path.name}"
                    progress.start(self.records, done=skipped_done, description=description)
                    interrupted = self._caption(ahead, writer, progress, should_stop)
                else:  # stopped before or while the model loaded: nothing was captioned
                    interrupted = True
        except BaseException as exc:
            writer.close(complete=False)
            if writer.touched_output or self.summary_written:  # else the old output and summary stay
                failed = one_line(exc) if not isinstance(exc, KeyboardInterrupt) else None
                self._summary(complete=False, interrupted=should_stop(), failed=failed)
            raise
        finally:
            if caption_started is not None:  # a failed engine start has no "0/0 records" line to print
                progress.stop()
        if caption_started is not None:
            self.stats.caption_s = time.monotonic() - caption_started
        complete = not interrupted
        writer.close(complete=complete)
        # An --overwrite run stopped before its first batch left the old output in place: its
        # summary (and fingerprint) must stay with it, or a resume would take the old records
        # for this run's.
        data = self._summary(complete=complete, write=writer.touched_output or self.summary_written)
        return self._result(complete, data)

    def _columns(self) -> dict[str, Any]:
        """vidcap's own fields and their types, the same in every output of this run's options."""
        return output_columns(self.fingerprint["options"])

    def _load(self, max_videos_per_record: int, should_stop: Callable[[], bool], progress: Progress) -> bool:
        """Start the engine; False when a stop came before it, or ended it (``StopDuringStart``
        from the caller's signal handler, or a start that failed once a stop was asked: the
        job's signal reaches the engine's processes too)."""
        if should_stop():  # asked during the checks: the model need not load
            return False
        started = time.monotonic()
        _waiting(progress, "loading the model")  # minutes for a large model: show it is alive
        try:
            self._start_engine(max_videos_per_record)
        except StopDuringStart:
            return False
        except EngineStartError:
            if should_stop():
                return False
            raise
        finally:
            _done_waiting(progress)
        self.stats.load_s = time.monotonic() - started
        log.info("model loaded in %.1f s", self.stats.load_s)
        return True

    def _loaded(self, skipped_done: int) -> None:
        """What the started engine decides (the sampling values; the pixel budget was planned for
        its context before), and the lines said before the progress display starts (which would
        print them through its bar)."""
        self.sampling = self.engine.sampling().summary()
        if skipped_done:
            log.info("resuming after %d records already done in %s", skipped_done, self.output_path)
        log.info("up to %d requests in flight (--max-in-flight)", self._in_flight_limit())

    def _start_engine(self, max_videos_per_record: int) -> None:
        """Load the model; any failure is an EngineStartError (a failure, not an interruption)."""
        try:
            self.on_engine_start(True)
            self.engine.start(max_videos_per_prompt=max_videos_per_record)
        except VidcapError as exc:
            raise EngineStartError(str(exc)) from exc
        except Exception as exc:
            backend = self.config.engine.backend
            raise EngineStartError(f"cannot start the {backend} engine: {one_line(exc)}") from exc
        finally:
            self.on_engine_start(False)

    def _planned_context(self) -> int | None:
        """The engine's context as it says before loading (an unreadable model config is an
        EngineStartError, as it would be in ``start``)."""
        try:
            return self.engine.planned_max_model_len()
        except VidcapError as exc:
            raise EngineStartError(str(exc)) from exc

    def _plan_for_context(self, context: int | None) -> None:
        """The default pixel budget fits the engine's context (``model_seq_len``; None: unknown)."""
        sampling = dataclasses.replace(self.config.sampling, model_seq_len=context or None)
        self.config = dataclasses.replace(self.config, sampling=sampling)

    @contextmanager
    def _decode_ahead(self, todo: Iterator[InputRecord]) -> Iterator[DecodeAhead]:
        """Decode ``todo`` in worker processes ahead of the engine, with the current plan
        (``DecodeAhead``); the workers stop when it is left."""
        opts = self.config.run
        workers = opts.decode_workers if opts.decode_workers is not None else default_workers()
        if opts.no_video:  # nothing to decode: no worker processes to start
            workers = 0
        # Decoding ahead of the feed, by one batch and two records per worker: the feed takes a
        # record as soon as the engine has room, so more would only hold more frames in memory
        # (and while the model loads, no more than that is decoded).
        lookahead = opts.batch_size + 2 * max(workers, 1)
        pending: deque[Pending] = deque()
        video_root = Path(opts.video_root) if opts.video_root else self.input_path.parent
        tasks = decode_tasks(todo, self.config, self.template, video_root, pending)
        with self.decode_pool(
            decode_record,
            workers=workers,
            max_pending=lookahead,
            timeout_s=opts.decode_timeout,
            error_types=(RecordError,),  # anything else is a bug: its message keeps its type name
        ) as pool:
            decoded = ((pending.popleft(), outcome) for outcome in pool.imap(tasks))
            with DecodeAhead(decoded, size=max(workers, 2)) as ahead:
                yield ahead

    def _caption(
        self, ahead: DecodeAhead, writer: Any, progress: Progress, should_stop: Callable[[], bool]
    ) -> bool:
        """Stream the decoded records through the engine (``pipeline/feed.py``); True if a stop
        ended it early."""
        feed = Feed(
            engine=self.engine,
            config=self.config,
            writer=writer,
            stats=self.stats,
            progress=progress,
            seen=self.seen,
            max_in_flight=self._in_flight_limit(),
            on_write=lambda: self._first_batch_written(writer),
        )
        return feed.run(ahead, should_stop)

    def _in_flight_limit(self) -> int:
        """``--max-in-flight``, or the engine's default for it (known once the engine started)."""
        opts = self.config.run
        return opts.max_in_flight or self.engine.max_in_flight(opts.batch_size)

    def _first_batch_written(self, writer: Any) -> None:
        """With --overwrite, the summary (with this run's fingerprint) follows the first write."""
        if not self.summary_written and writer.touched_output:
            self._summary(complete=False)

    def _nothing_to_do(self) -> RunResult:
        """Every record of the shard is in the output already: finish without the engine."""
        log.info(
            "%s: all %d records of this shard are already done; nothing to do (--overwrite starts over)",
            self.output_path,
            self.records,
        )
        # A .json output killed after its last batch still has to become an array (and an
        # empty shard with --overwrite leaves an empty output).
        overwrite = self.config.run.overwrite
        open_writer(self.output_path, resume=not overwrite, columns=self._columns()).close(complete=True)
        previous = _read_summary(summary_path(self.output_path))
        # A finished run's summary keeps its statistics; one that is missing or says
        # "incomplete" (killed after the last batch) is written anew.
        keep = not overwrite and previous is not None and previous.get("complete") is True
        data = self._summary(complete=True, write=not keep)
        return self._result(True, data)

    def _result(self, complete: bool, data: dict[str, Any]) -> RunResult:
        return RunResult(
            output=self.output_path,
            summary=summary_path(self.output_path),
            stats=self.stats,
            records_in_shard=self.records,
            complete=complete,
            interrupted=not complete,
            elapsed_s=time.monotonic() - self.started,
            summary_data=data,
        )

    def _summary(
        self,
        *,
        complete: bool,
        interrupted: bool | None = None,
        failed: str | None = None,
        write: bool = True,
    ) -> dict[str, Any]:
        values = dict(
            config=self.config,
            input_path=self.input_path,
            output_path=self.output_path,
            shard=self.shard,
            records_in_shard=self.records,
            fingerprint=self.fingerprint,
            stats=self.stats,
            elapsed_s=time.monotonic() - self.started,
            started_at=self.started_at,
            complete=complete,
            sampling=self.sampling,
            interrupted=interrupted,
            failed=failed,
            engines=self.engine.engine_stats(),
        )
        if not write:
            return build_summary(**values)
        self.summary_written = True
        return write_summary(summary_path(self.output_path), **values)


def _shard_note(shard: Shard) -> str:
    """`` (shard 1 of 4: lines 26-50 of 100)`` for a run of one shard of the input, else ``""``."""
    if not shard.explicit:
        return ""
    span = shard.span
    which = f"{span.unit}s {span.start + 1}-{span.stop}" if span.stop > span.start else f"no {span.unit}s"
    return f" (shard {shard.index} of {shard.count}: {which} of {span.units})"


# A Progress that a library caller wrote may lack waiting/done_waiting (they came later).
def _waiting(progress: Progress, message: str) -> None:
    if hasattr(progress, "waiting"):
        progress.waiting(message)


def _done_waiting(progress: Progress) -> None:
    if hasattr(progress, "done_waiting"):
        progress.done_waiting()


def _read_summary(path: Path) -> dict[str, Any] | None:
    """An existing summary as a dict, or None when absent or unreadable."""
    try:
        data = loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _records_to_do(
    config: RunConfig, shard: Shard, records: int, done: Any
) -> tuple[Callable[[], Iterator[InputRecord]], int]:
    """The shard's records not yet in the output (a function giving a fresh pass over them each
    call: the pre-model check reads them once, the run again), and how many were skipped as done.

    Only the shard's span of the input is read (``SpanReader``)."""
    opts = config.run

    def shard_records(skip: int = 0) -> Iterator[InputRecord]:
        return iter(SpanReader(shard.span, on_bad_line=opts.on_bad_line, start=skip))

    if done is None:
        return shard_records, 0
    if opts.id_key is None:
        # Output is written in input order, so position-keyed resume skips a prefix.
        skip = min(done.count, records)
        return (lambda: shard_records(skip)), skip

    # Streaming passes (count, then filter) rather than holding the shard in memory.
    already = sum(1 for r in shard_records() if record_id(r, opts) in done.ids)
    return (lambda: (r for r in shard_records() if record_id(r, opts) not in done.ids)), already
