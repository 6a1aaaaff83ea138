"""``vidcap report``: one self-contained HTML page of captions beside the frames they were made from."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from vidcap.cli.options import SAMPLING_FLAGS, Config, sampling_from, with_options

EPILOG = (
    "Examples:\n\n"
    "  vidcap report captions.jsonl                         # -> captions.report.html\n\n"
    "  vidcap report out/shard-*.jsonl --only error -o errors.html\n\n"
    "  vidcap report captions.jsonl --sample 200 -c configs/qwen2.5-vl-7b.toml"
)
FIELDS = "Record fields (as given to vidcap run)"


def _default_html(output: str) -> Path:
    """Beside a local output; in the current folder for an output URL."""
    from vidcap.io.object_store import is_url

    if is_url(output):
        return Path(Path(output.rsplit("/", 1)[1]).stem + ".report.html")
    return default_html_path(Path(output))


def default_html_path(output: Path) -> Path:
    """``captions.jsonl`` -> ``captions.report.html`` beside it."""
    return output.with_name(f"{output.stem}.report.html")


@with_options(("model", *SAMPLING_FLAGS))
def report_command(
    outputs: Annotated[
        list[str],
        typer.Argument(help="vidcap output files (.jsonl, .json, .parquet) or their URLs: one, or shards."),
    ],
    html: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The HTML file to write (default: OUTPUT.report.html)."),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only", help="Show only records with this status or flag (error, truncated, ...); repeatable."
        ),
    ] = None,
    sample: Annotated[
        int | None, typer.Option("--sample", help="Show a random sample of N records (seeded by --seed).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random sample.")] = 0,
    show_all: Annotated[
        bool,
        typer.Option("--all", help="Show every record (default: a sample of 1,000 when there are more)."),
    ] = False,
    frames: Annotated[int, typer.Option("--frames", help="At most this many thumbnails per video.")] = 12,
    video_root: Annotated[
        Path | None,
        typer.Option(
            "--video-root", help="Folder relative video paths start from (default: the run's input folder)."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--decode-workers", help="Decode processes (default: from the CPU count).")
    ] = None,
    video_key: Annotated[
        str | None, typer.Option("--input-video-key", help="The video path(s).", rich_help_panel=FIELDS)
    ] = None,
    output_key: Annotated[
        str | None, typer.Option("--output-key", help="The caption.", rich_help_panel=FIELDS)
    ] = None,
    status_key: Annotated[
        str | None,
        typer.Option("--status-key", help="The status (default: the run summary's).", rich_help_panel=FIELDS),
    ] = None,
    error_key: Annotated[
        str | None, typer.Option("--error-key", help="The error message.", rich_help_panel=FIELDS)
    ] = None,
    id_key: Annotated[
        str | None,
        typer.Option("--id-key", help="The record id shown (else its position).", rich_help_panel=FIELDS),
    ] = None,
    config: Config = None,
    *,
    options: dict[str, Any],
) -> None:
    """Write one HTML page (works offline) with each record's frames, caption, status and flags."""
    from vidcap.config import load_config_file
    from vidcap.io.staging import staged_outputs
    from vidcap.report.build import ReportOptions, build_report
    from vidcap.report.recorded import Sampling

    flags = {key: options[key] for key in SAMPLING_FLAGS}
    given = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v is not None]
    sampling = None  # as the run's summary records them, else vidcap run's defaults
    if config or given:
        source = " and ".join(p for p in (f"--config {config}" if config else "", ", ".join(given)) if p)
        sampling = Sampling(sampling_from(config, flags), source)
    model = options["model"]
    if model is None and config:
        model = load_config_file(config).get("model")
    names = dict(caption=output_key, status=status_key, error=error_key, video=video_key, id=id_key)
    # Outputs in object storage are read from local copies (their videos from the store).
    with staged_outputs(outputs) as local:
        options = ReportOptions(
            outputs=tuple(local),
            html=html or _default_html(outputs[0]),
            sampling=sampling,
            model=model,
            field_names={k: v for k, v in names.items() if v is not None},
            video_root=video_root,
            only=tuple(v.strip() for value in only or () for v in value.split(",") if v.strip()),
            sample=sample,
            seed=seed,
            show_all=show_all,
            frames=frames,
            workers=workers,
        )
        result = build_report(options)
    missing = f", {len(result.problems)} video(s) not readable" if result.problems else ""
    size = f"{result.bytes / 2**20:.1f} MB" if result.bytes >= 2**20 else f"{result.bytes / 2**10:.0f} KB"
    print(
        f"report: {result.shown:,} of {result.total:,} records{missing} -> {result.html} "
        f"({size}; open it in a browser, it needs no network)",
        file=sys.stderr,
    )
