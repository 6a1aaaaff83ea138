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
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vidcap.config import RunConfig, needs_video_model
from vidcap.engines.caption_engine import CaptionEngine
from vidcap.executors.array_share import Shard, shard_numbers
from vidcap.executors.job_run import JobRun, RunResult
from vidcap.io.formats import find_span
from vidcap.io.lock import OutputLock, acquire_output_lock, lock_path
from vidcap.io.shards import default_output
from vidcap.pipeline.check import check_output_is_not_input, check_records
from vidcap.pipeline.fingerprint import run_fingerprint
from vidcap.progress import NullProgress, Progress
from vidcap.prompts import DiyVideoPrompt, as_prompt_template
from vidcap.video.plan import check_sampling
from vidcap.video.pool import OrderedPool

log = logging.getLogger(__name__)


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
    #: a pool with its constructor and ``imap`` (an executor that decodes elsewhere).
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
            run = JobRun(
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


def _shard_note(shard: Shard) -> str:
    """`` (shard 1 of 4: lines 26-50 of 100)`` for a run of one shard of the input, else ``""``."""
    if not shard.explicit:
        return ""
    span = shard.span
    which = f"{span.unit}s {span.start + 1}-{span.stop}" if span.stop > span.start else f"no {span.unit}s"
    return f" (shard {shard.index} of {shard.count}: {which} of {span.units})"


# A Progress that a library caller wrote may lack waiting/done_waiting (they came later).
