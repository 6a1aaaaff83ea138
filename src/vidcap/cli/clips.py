"""``vidcap clips``: split each input video into shots (or fixed clips), one record per clip.

The output is an input for ``vidcap run``: each record keeps the input record's fields and adds
``video_start``/``video_end`` (seconds), ``shot_id`` and ``shot_kind``. A record whose video
cannot be read is written once, as it came, with a ``clips_error`` field; the run goes on and
exits 1 at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vidcap.errors import EXIT_OK, EXIT_RECORDS_FAILED, RecordError, VidcapError

if TYPE_CHECKING:
    from vidcap.pipeline.shot_clips import SplitOptions

EPILOG = (
    "Examples:\n\n"
    "  vidcap clips videos.jsonl -o shots.jsonl\n\n"
    "  vidcap run shots.jsonl -o captions.jsonl --id-key shot_id -m MODEL\n\n"
    "  vidcap clips long.mp4 -o shots.jsonl --min-shot 2 --max-shot 15\n\n"
    "  vidcap clips videos.jsonl -o clips.jsonl --split interval --every 10"
)

SPLIT = "Splitting"


def clips_command(
    input: Annotated[
        str,
        typer.Argument(metavar="INPUT", help="A .jsonl/.json/.parquet/.csv dataset, or one video file."),
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Clips file to write (.jsonl, .json or .parquet).")
    ],
    split: Annotated[
        str,
        typer.Option(
            metavar="shots|interval",
            help="Cut at shot boundaries, or every --every seconds.",
            rich_help_panel=SPLIT,
        ),
    ] = "shots",
    detector: Annotated[
        str,
        typer.Option(
            metavar="content|adaptive",
            help="content: HSV difference from the previous frame over --threshold (default 27); "
            "adaptive: that difference over --threshold times its neighbours' (default 3.0).",
            rich_help_panel=SPLIT,
        ),
    ] = "content",
    threshold: Annotated[
        float | None, typer.Option(help="The detector's threshold.", rich_help_panel=SPLIT)
    ] = None,
    min_shot: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Merge shots shorter than this into the shot before (the first into the next).",
            rich_help_panel=SPLIT,
        ),
    ] = 0.0,
    short_shots: Annotated[
        str,
        typer.Option(
            metavar="merge|drop",
            help="What --min-shot does with a short shot: merge it, or drop it (no record).",
            rich_help_panel=SPLIT,
        ),
    ] = "merge",
    max_shot: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Split longer shots evenly.", rich_help_panel=SPLIT),
    ] = None,
    every: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Clip length for --split interval.", rich_help_panel=SPLIT),
    ] = None,
    trim_start: Annotated[
        float,
        typer.Option(metavar="SECONDS", help="Leave out each video's first seconds.", rich_help_panel=SPLIT),
    ] = 0.0,
    trim_end: Annotated[
        float,
        typer.Option(metavar="SECONDS", help="Leave out each video's last seconds.", rich_help_panel=SPLIT),
    ] = 0.0,
    input_video_key: Annotated[str, typer.Option(help="Field holding the video path.")] = "video",
    id_key: Annotated[
        str | None,
        typer.Option(help="Input id field: shot ids are ID-N (default: input line number-N)."),
    ] = None,
    decode_workers: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Videos split at once, each in its own process (0: in this one; default: CPUs - 1).",
        ),
    ] = None,
    decode_timeout: Annotated[
        float,
        typer.Option(metavar="SECONDS", help="A video not split in this time fails; the others go on."),
    ] = 1800.0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output (clips does not resume yet).")
    ] = False,
) -> None:
    """Split videos into shots: one record per shot, ready for `vidcap run`."""
    sys.exit(
        _clips(
            input,
            output,
            split=split,
            detector=detector,
            threshold=threshold,
            min_shot=min_shot,
            drop_short=_short_shots(short_shots),
            max_shot=max_shot,
            every=every,
            trim_start=trim_start,
            trim_end=trim_end,
            video_key=input_video_key,
            id_key=id_key,
            overwrite=overwrite,
            workers=decode_workers,
            timeout=decode_timeout,
        )
    )


def _clips(input: str, output: str, *, overwrite: bool, workers: int | None, timeout: float, **values) -> int:
    from vidcap.cli.probe_videos import VIDEO_EXTENSIONS
    from vidcap.io.formats import format_for
    from vidcap.io.records import iter_records, scan_input
    from vidcap.io.writer import open_writer
    from vidcap.pipeline.check import check_output_is_not_input
    from vidcap.pipeline.shot_clips import ERROR_KEY, ClipTask, SplitOptions, clip_task
    from vidcap.video.pool import OrderedPool, default_workers
    from vidcap.video.shots import DETECTORS

    opts = SplitOptions(**values)
    _check_options(opts, DETECTORS)
    if workers is not None and workers < 0:
        raise VidcapError(f"--decode-workers must be 0 or more, got {workers}")
    if not timeout > 0:
        raise VidcapError(f"--decode-timeout must be more than 0 seconds, got {timeout}")
    input_path, output_path = Path(input), Path(output)
    if output_path.suffix.lower() == ".csv":
        # vidcap reads CSV cells as text, and `vidcap run` takes video_start/video_end as numbers only.
        raise VidcapError(
            f"{output_path}: a clips file cannot be CSV (vidcap run reads its cells as text, not "
            "seconds); use .jsonl, .json or .parquet"
        )
    one_video = input_path.suffix.lower() in VIDEO_EXTENSIONS
    if one_video:
        if not input_path.is_file():
            raise VidcapError(f"video not found: {input_path}")
        records: Iterable[tuple[int, dict]] = [(1, {opts.video_key: input_path.name})]
    else:
        scan_input(input_path)  # every line valid before anything is written
        records = ((r.line, r.data) for r in iter_records(input_path))
        check_output_is_not_input(input_path, output_path)

    def where(line: int) -> str:
        """How an error line names the record: ``file:line`` (or the video given as INPUT)."""
        return str(input_path) if one_video else format_for(input_path, "input").location(input_path, line)

    if output_path.exists() and not overwrite:
        raise VidcapError(f"{output_path} exists; pass --overwrite to replace it (clips does not resume yet)")
    started = time.monotonic()
    videos = shots = failed = 0
    workers = default_workers() if workers is None else workers
    tasks = (ClipTask(line, data, input_path.parent, output_path.parent, opts) for line, data in records)
    writer = open_writer(output_path, resume=False, like=None if one_video else input_path)
    complete = False
    try:
        with OrderedPool(
            clip_task,
            workers=workers,
            max_pending=2 * max(workers, 1),
            timeout_s=timeout,
            error_types=(RecordError,),  # anything else is a bug: its message keeps its type name
        ) as pool:
            for outcome in pool.imap(tasks):
                videos += 1
                task = outcome.task
                if outcome.error is not None:
                    failed += 1
                    print(f"error: {where(task.line)}: {outcome.error}", file=sys.stderr)
                    batch = [{**task.data, ERROR_KEY: outcome.error}]
                else:
                    batch = outcome.result or []
                    shots += len(batch)
                writer.write_batch(batch)
        complete = True
    finally:
        writer.close(complete=complete)
    took = time.monotonic() - started
    print(
        f"vidcap: {videos} video(s) -> {shots} clip(s), {failed} failed, in {took:.1f} s: {output_path}",
        file=sys.stderr,
    )
    return EXIT_RECORDS_FAILED if failed else EXIT_OK


def _short_shots(value: str) -> bool:
    """``--short-shots``: True to drop short shots, False to merge them."""
    if value not in ("merge", "drop"):
        raise VidcapError(f"--short-shots must be merge or drop, not {value!r}")
    return value == "drop"


def _check_options(opts: SplitOptions, detectors: tuple[str, ...]) -> None:
    """Refuse option values that cannot work, naming the option."""
    if opts.split not in ("shots", "interval"):
        raise VidcapError(f"--split must be shots or interval, not {opts.split!r}")
    if opts.detector not in detectors:
        raise VidcapError(f"--detector must be one of {', '.join(detectors)}, not {opts.detector!r}")
    if opts.split == "interval" and (opts.every is None or not opts.every > 0):
        raise VidcapError("--split interval needs --every SECONDS (more than 0)")
    if opts.split == "shots" and opts.every is not None:
        raise VidcapError("--every goes with --split interval")
    for name, value in (("--min-shot", opts.min_shot), ("--trim-start", opts.trim_start)):
        if not value >= 0:
            raise VidcapError(f"{name} must be 0 or more seconds, got {value}")
    if not opts.trim_end >= 0:
        raise VidcapError(f"--trim-end must be 0 or more seconds, got {opts.trim_end}")
    if opts.max_shot is not None and not opts.max_shot > max(opts.min_shot, 0):
        raise VidcapError(f"--max-shot ({opts.max_shot}) must be more than --min-shot ({opts.min_shot})")
    if opts.threshold is not None and not opts.threshold > 0:
        raise VidcapError(f"--threshold must be more than 0, got {opts.threshold}")
