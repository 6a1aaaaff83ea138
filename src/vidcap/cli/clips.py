"""``vidcap clips``: split each input video into shots (or fixed clips), one record per clip.

The output is an input for ``vidcap run``: each record keeps the input record's fields and adds
``video_start``/``video_end`` (seconds), ``shot_id`` and ``shot_kind``. A record whose video
cannot be read is written once, as it came, with a ``clips_error`` field; the run goes on and
exits 1 at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vidcap.errors import VidcapError
from vidcap.video.transnet import check_available

if TYPE_CHECKING:
    from vidcap.pipeline.shot_clips import SplitOptions

EPILOG = (
    "Examples:\n\n"
    "  vidcap clips videos.jsonl -o shots.jsonl\n\n"
    "  vidcap run shots.jsonl -o captions.jsonl --id-key shot_id -m MODEL\n\n"
    "  vidcap clips long.mp4 -o shots.jsonl --min-shot 2 --max-shot 15\n\n"
    "  vidcap clips videos.jsonl -o clips.jsonl --split interval --every 10\n\n"
    "  vidcap clips videos.jsonl --shard-index 0 --num-shards 4   # one of 4 shards\n\n"
    "  vidcap merge 'videos.clips.shard-*.jsonl' -o videos.clips.jsonl"
)

SPLIT = "Splitting"


# The longer option declarations, named (the command's signature stays readable).
ClipsOutput = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        help="Clips file to write (.jsonl, .json, .parquet or .csv; default: INPUT.clips.EXT, "
        "or for a shard INPUT.clips.shard-I-of-N.EXT).",
    ),
]
Split = Annotated[
    str,
    typer.Option(
        metavar="shots|interval",
        help="Cut at shot boundaries, or every --every seconds.",
        rich_help_panel=SPLIT,
    ),
]
Detector = Annotated[
    str,
    typer.Option(
        metavar="content|adaptive|transnetv2",
        help="content: HSV difference from the previous frame over --threshold (default 27); "
        "adaptive: that difference over --threshold times its neighbours' (default 3.0); "
        "transnetv2: TransNetV2's transition probability over --threshold (default 0.5; needs "
        "the transnetv2 extra).",
        rich_help_panel=SPLIT,
    ),
]
MinShot = Annotated[
    float,
    typer.Option(
        metavar="SECONDS",
        help="Merge shots shorter than this into the shot before (the first into the next).",
        rich_help_panel=SPLIT,
    ),
]
ShortShots = Annotated[
    str,
    typer.Option(
        metavar="merge|drop",
        help="What --min-shot does with a short shot: merge it, or drop it (no record).",
        rich_help_panel=SPLIT,
    ),
]
DecodeWorkers = Annotated[
    int | None,
    typer.Option(
        metavar="N",
        help="Videos split at once, each in its own process (0: in this one; default: CPUs - 1).",
    ),
]
DecodeTimeout = Annotated[
    float,
    typer.Option(metavar="SECONDS", help="A video not split in this time fails; the others go on."),
]


def clips_command(
    input: Annotated[
        str,
        typer.Argument(metavar="INPUT", help="A .jsonl/.json/.parquet/.csv dataset, or one video file."),
    ],
    output: ClipsOutput = None,
    split: Split = "shots",
    detector: Detector = "content",
    threshold: Annotated[
        float | None, typer.Option(help="The detector's threshold.", rich_help_panel=SPLIT)
    ] = None,
    min_shot: MinShot = 0.0,
    short_shots: ShortShots = "merge",
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
    decode_workers: DecodeWorkers = None,
    decode_timeout: DecodeTimeout = 1800.0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start the output afresh (default: resume it).")
    ] = False,
    shard_index: Annotated[
        int | None, typer.Option(help="This shard's index (default: from SLURM_ARRAY_TASK_ID, or 0).")
    ] = None,
    num_shards: Annotated[
        int | None, typer.Option(help="Number of shards (default: SLURM_ARRAY_TASK_COUNT or 1).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
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
            shard_index=shard_index,
            num_shards=num_shards,
            quiet=quiet,
        )
    )


def _clips(
    input: str,
    output: str | None,
    *,
    overwrite: bool,
    workers: int | None,
    timeout: float,
    shard_index: int | None,
    num_shards: int | None,
    quiet: bool,
    **values,
) -> int:
    from vidcap.cli.probe_videos import VIDEO_EXTENSIONS
    from vidcap.pipeline.clip_batch import ClipsJob, default_clips_output, run_clips
    from vidcap.pipeline.shot_clips import SplitOptions
    from vidcap.progress import make_progress
    from vidcap.video.shots import DETECTORS

    opts = SplitOptions(**values)
    _check_options(opts, DETECTORS)
    if workers is not None and workers < 0:
        raise VidcapError(f"--decode-workers must be 0 or more, got {workers}")
    if not timeout > 0:
        raise VidcapError(f"--decode-timeout must be more than 0 seconds, got {timeout}")
    input_path = Path(input)
    one_video = input_path.suffix.lower() in VIDEO_EXTENSIONS
    if one_video and not input_path.is_file():
        raise VidcapError(f"video not found: {input_path}")
    if output is None:
        if one_video:
            raise VidcapError("give --output/-o for a video INPUT (a dataset INPUT has a default)")
        output_path = default_clips_output(input_path, shard_index, num_shards)
    else:
        output_path = Path(output)
    job = ClipsJob(
        input=input_path,
        output=output_path,
        opts=opts,
        one_video=one_video,
        overwrite=overwrite,
        workers=workers,
        timeout=timeout,
        shard_index=shard_index,
        num_shards=num_shards,
    )
    return run_clips(job, progress=make_progress(enabled=not quiet))


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
    if opts.detector == "transnetv2":
        check_available()  # before any video: one line saying how to install it
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
