"""One ``vidcap clips`` run over a dataset (or one video): shard, resume, write, progress, summary.

It reuses ``vidcap run``'s pieces: the shard's span of the input (``executors/array_share.py``), the
crash-safe writers and their resume (``io/writer.py``, ``io/resume.py``), the output lock, the
run fingerprint check (``pipeline/fingerprint.check_resumable``), the progress display and the
summary sidecar that ``vidcap merge`` reads (``io/merge_outputs.py`` documents its fields).

Resume: the output is in input order and every input record gives one record or more (its
shots, or one error record), so a rerun walks the done records beside the input to find the
records already done. The last input with shot records written may have been cut off by a
kill: it is split again and only its shots not yet written are appended, so each shot is
written once (detection is deterministic).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vidcap.errors import EXIT_OK, EXIT_RECORDS_FAILED, RecordError, VidcapError
from vidcap.executors.array_share import resolve_shard, shard_numbers
from vidcap.io.files import atomic_write
from vidcap.io.formats import format_for
from vidcap.io.jsonio import dumps_pretty
from vidcap.io.lock import acquire_output_lock
from vidcap.io.records import SpanReader
from vidcap.io.resume import load_done
from vidcap.io.shards import InputSpan
from vidcap.io.sidecar import FINGERPRINT_VERSION, summary_path
from vidcap.io.writer import open_writer
from vidcap.pipeline.check import check_output_is_not_input
from vidcap.pipeline.fingerprint import check_resumable
from vidcap.pipeline.shot_clips import ERROR_KEY, ClipTask, SplitOptions, clip_task, source_id
from vidcap.progress import Progress, make_progress
from vidcap.version import __version__
from vidcap.video.pool import OrderedPool, default_workers

ID_KEY = "shot_id"  # what tells clip records apart: the merge checks it is unique across shards

CLIP_COLUMNS: dict[str, Any] = {
    "video_start": "float",
    "video_end": "float",
    "shot_id": "str",
    "shot_kind": "str",
    ERROR_KEY: "str",
}
"""The fields ``vidcap clips`` adds and their types, fixed in a typed (Parquet) output."""


@dataclass(frozen=True)
class ClipsJob:
    """What one ``vidcap clips`` command does."""

    input: Path
    output: Path
    opts: SplitOptions
    one_video: bool = False  # INPUT is a video file, not a dataset
    overwrite: bool = False
    workers: int | None = None
    timeout: float = 1800.0
    shard_index: int | None = None
    num_shards: int | None = None


@dataclass
class _Counts:
    videos: int = 0
    shots: int = 0
    failed: int = 0
    written: int = 0


def default_clips_output(input_path: Path, shard_index: int | None, num_shards: int | None) -> Path:
    """Where ``vidcap clips`` writes without ``--output``: ``INPUT.clips.EXT`` beside the input,
    or for a shard (flags or SLURM) ``INPUT.clips.shard-I-of-N.EXT``."""
    index, count, explicit = shard_numbers(shard_index, num_shards)
    name = f"clips.shard-{index}-of-{count}" if explicit else "clips"
    return input_path.with_name(f"{input_path.stem}.{name}{input_path.suffix}")


def clips_fingerprint(span: InputSpan, digest: str | None, opts: SplitOptions) -> dict[str, Any]:
    """What a clips output's records depend on: the input, the shard's span and the split options
    (a resume with any other is refused; ``vidcap merge`` reads the input and span)."""
    return {
        "version": FINGERPRINT_VERSION,
        "input": {
            "path": str(span.path.resolve()),
            "size": span.size,
            "format": span.format,
            "units": span.units,
        },
        "span": {"start": span.start, "stop": span.stop, "digest": digest},
        "options": {"command": "clips", **asdict(opts)},
    }


def _video_span(path: Path) -> InputSpan:
    """One video given as INPUT: a one-unit input of its own."""
    return InputSpan(path, "video", path.stat().st_size, 1, 0, 1, 0, 0)


def _input_records(job: ClipsJob, span: InputSpan, start: int = 0) -> Iterator[tuple[int, dict]]:
    """``(line, record)`` of the shard's input records from the ``start``-th on."""
    if job.one_video:
        if start == 0:
            yield 1, {job.opts.video_key: job.input.name}
        return
    for record in SpanReader(span, start=start):
        yield record.line, record.data


def _check_span(job: ClipsJob, span: InputSpan) -> tuple[int, str | None]:
    """Read the shard's span once before anything is written: every line valid, ``--id-key``
    values present and unique; returns its record count and content digest."""
    if job.one_video:
        return 1, None
    reader = SpanReader(span, digest=True)
    fmt = format_for(span.path, "input")
    seen: dict[str, int] = {}
    count = 0
    for record in reader:
        count += 1
        if job.opts.id_key is None:
            continue
        value = record.data.get(job.opts.id_key)
        where = fmt.location(span.path, record.line)
        if value is None or isinstance(value, dict | list):
            raise VidcapError(f"{where}: record has no '{job.opts.id_key}' value (--id-key needs one)")
        first = seen.setdefault(str(value), record.line)
        if first != record.line:
            raise VidcapError(f"{where}: duplicate id {str(value)!r} (first at {fmt.unit} {first})")
    if count == 0 and span.stop > span.start:
        raise VidcapError(f"{span.path}: no records in lines {span.start + 1}-{span.stop}")
    return count, reader.digest


def resume_point(done: list[dict], inputs: Iterator[tuple[int, dict]], opts: SplitOptions) -> tuple[int, int]:
    """``(inputs done, shots of the next input already written)`` from the done records.

    Walks the done records beside the input records: an input's records are its error record,
    or its shots ``SOURCE-1``, ``SOURCE-2``... The last input with shots written counts as not
    done (a kill may have cut it short): it is split again and its first shots passed over.
    VidcapError if the done records do not follow the input.
    """
    position = 0
    finished = 0
    partial = 0
    for line, data in inputs:
        if position >= len(done):
            break
        record = done[position]
        if record.get(ERROR_KEY) is not None:
            position += 1
            finished += 1
            continue
        source = source_id(data, line, opts)
        n = 0
        while position < len(done) and done[position].get(ID_KEY) == f"{source}-{n + 1}":
            n += 1
            position += 1
        if n == 0:
            break
        if position == len(done):
            partial = n  # the last input written: perhaps cut short
            break
        finished += 1
    if position < len(done):
        raise VidcapError(
            f"done record {position + 1} (shot_id {done[position].get(ID_KEY)!r}) does not follow the "
            "input's records; use --overwrite to start over"
        )
    return finished, partial


def _write_summary(
    job: ClipsJob, path: Path, fingerprint: dict, shard: tuple[int, int], counts: _Counts, **facts: Any
) -> None:
    """The summary sidecar: what the run did, and what ``vidcap merge`` checks."""
    data = {
        "vidcap_version": __version__,
        "command": "clips",
        "input": str(job.input.resolve()),
        "output": str(job.output.resolve()),
        "shard": {"index": shard[0], "count": shard[1]},
        "records_in_shard": counts.written,  # clip records in the output: what the merge counts
        "id_key": ID_KEY,
        "videos_split": counts.videos,
        "clips": counts.shots,
        "failed_videos": counts.failed,
        **facts,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fingerprint": fingerprint,
    }
    try:
        atomic_write(path, [dumps_pretty(data) + b"\n"])
    except OSError as e:
        raise VidcapError(f"cannot write summary: {path}: {e.strerror or e}") from None


def run_clips(job: ClipsJob, *, progress: Progress | None = None) -> int:
    """Split the shard's input records into clip records, resuming a killed run's output.

    Returns the exit code: 0, or 1 when a video could not be split (an error record)."""
    opts = job.opts
    if job.one_video:
        if job.shard_index is not None or job.num_shards is not None:
            raise VidcapError("--shard-index/--num-shards split a dataset; INPUT is one video")
        span, shard = _video_span(job.input), (0, 1)
    else:
        check_output_is_not_input(job.input, job.output)
        resolved = resolve_shard(job.shard_index, job.num_shards, job.input)
        span, shard = resolved.span, (resolved.index, resolved.count)
    total, digest = _check_span(job, span)
    fingerprint = clips_fingerprint(span, digest, opts)
    progress = progress or make_progress(enabled=False)
    where_fmt = None if job.one_video else format_for(job.input, "input")

    def where(line: int) -> str:
        return str(job.input) if where_fmt is None else where_fmt.location(job.input, line)

    with acquire_output_lock(job.output):
        skip, partial, done_count = 0, 0, 0
        if not job.overwrite:
            done = load_done(job.output, id_key=None)
            check_resumable(job.output, fingerprint, done)
            done_count = done.count
            if done_count:
                fmt = format_for(job.output, "output")
                written = [r for _, r in fmt.done_records(job.output)]
                skip, partial = resume_point(written, _input_records(job, span), opts)
        counts = _Counts(written=done_count)
        summary = summary_path(job.output)
        started, started_at = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")

        def facts(complete: bool) -> dict[str, Any]:
            took = time.monotonic() - started
            return {
                "complete": complete,
                "interrupted": not complete,
                "failed": counts.failed > 0,
                "records_in_input_shard": total,
                "resumed_videos": skip,
                "started_at": started_at,
                "elapsed_s": round(took, 3),
                "videos_per_s": round(counts.videos / max(took, 1e-9), 4),
            }

        _write_summary(job, summary, fingerprint, shard, counts, **facts(False))
        workers = default_workers() if job.workers is None else job.workers
        tasks = (
            ClipTask(line, data, job.input.parent, job.output.parent, opts)
            for line, data in _input_records(job, span, skip)
        )
        writer = open_writer(
            job.output,
            resume=done_count > 0,
            like=None if job.one_video else job.input,
            columns=CLIP_COLUMNS,
        )
        complete = False
        progress.start(total, done=skip, description="splitting")
        try:
            with OrderedPool(
                clip_task,
                workers=workers,
                max_pending=2 * max(workers, 1),
                timeout_s=job.timeout,
                error_types=(RecordError,),  # anything else is a bug: its message keeps its type name
            ) as pool:
                for outcome in pool.imap(tasks):
                    counts.videos += 1
                    task = outcome.task
                    if outcome.error is not None:
                        counts.failed += 1
                        print(f"error: {where(task.line)}: {outcome.error}", file=sys.stderr)
                        batch = [{**task.data, ERROR_KEY: outcome.error}]
                    else:
                        batch = outcome.result or []
                        if partial and counts.videos == 1:
                            # The input a kill may have cut short: only its shots not yet written.
                            if len(batch) < partial:
                                raise VidcapError(
                                    f"{where(task.line)}: split again into {len(batch)} shots, fewer than "
                                    f"the {partial} already written; use --overwrite to start over"
                                )
                            batch = batch[partial:]
                        counts.shots += len(batch)
                    writer.write_batch(batch)
                    counts.written += len(batch)
                    progress.advance(1, videos=1, errors=counts.failed)
            complete = True
        finally:
            progress.stop()
            writer.close(complete=complete)
            _write_summary(job, summary, fingerprint, shard, counts, **facts(complete))
    took = time.monotonic() - started
    resumed = f" ({skip} done before)" if skip else ""
    print(
        f"vidcap: {counts.videos} video(s){resumed} -> {counts.shots} clip(s), {counts.failed} failed, "
        f"in {took:.1f} s: {job.output}",
        file=sys.stderr,
    )
    return EXIT_RECORDS_FAILED if counts.failed else EXIT_OK
