"""``vidcap probe``: Typer wiring for ``vidcap.cli.probe_videos.probe_paths``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from vidcap.cli.options import SAMPLING_FLAGS, Config, sampling_from, with_options

EPILOG = (
    "Examples:\n\n"
    "  vidcap probe clip.mp4 videos/\n\n"
    "  vidcap probe data.jsonl --json -m Qwen/Qwen2.5-VL-7B-Instruct > plan.jsonl\n\n"
    "  vidcap probe long.mp4 --window 20 --fps 1   # the windows of run --window 20\n\n"
    "  vidcap probe raw.mp4 --split shots   # the shots of vidcap clips"
)


@with_options(("model", "family", "max_model_len", *SAMPLING_FLAGS))
def probe_command(
    paths: Annotated[
        list[str],
        typer.Argument(metavar="PATH", help="Video files, folders, or .json/.jsonl datasets."),
    ],
    json_lines: Annotated[
        bool, typer.Option("--json", help="JSON Lines on stdout, one object per video.")
    ] = False,
    config: Config = None,
    window: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Show each video cut into timed windows of this many seconds, as `vidcap run "
            "--window` captions them: each window's frames and tokens.",
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            metavar="shots",
            help="Show the shots `vidcap clips` cuts each video into instead (with --detector, --threshold).",
        ),
    ] = None,
    detector: Annotated[
        str, typer.Option(metavar="content|adaptive|transnetv2", help="Shot detector for --split shots.")
    ] = "content",
    threshold: Annotated[
        float | None,
        typer.Option(help="The detector's threshold (default: 27 content, 3.0 adaptive, 0.5 transnetv2)."),
    ] = None,
    *,
    options: dict[str, Any],
) -> None:
    """Show each video's metadata and frame plan, and totals to size --max-model-len and the job."""
    from vidcap.cli.probe_videos import probe_paths
    from vidcap.config import load_config_file

    if split is not None:
        from vidcap.cli.probe_shots import probe_shots_command

        if split != "shots":
            print(f"error: --split takes shots, not {split!r}", file=sys.stderr)
            sys.exit(2)
        sys.exit(probe_shots_command(paths, json_lines, detector, threshold))

    model, family, max_model_len = options["model"], options["family"], options["max_model_len"]
    sampling = sampling_from(config, {key: options[key] for key in SAMPLING_FLAGS})
    if config and (model is None or window is None or max_model_len is None or family is None):
        file_values = load_config_file(config)
        model = model if model is not None else file_values.get("model")
        window = window if window is not None else file_values.get("window")
        max_model_len = max_model_len if max_model_len is not None else file_values.get("max_model_len")
        family = family if family is not None else file_values.get("family")
    sys.exit(probe_paths(paths, json_lines, sampling, model, window, max_model_len, family))
