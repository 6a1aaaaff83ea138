"""``vidcap merge``: join shard outputs into one file, in input order, with a combined summary."""

from __future__ import annotations

import glob
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from vidcap.cli.options import RECORD_FORMATS
from vidcap.errors import VidcapError

EPILOG = (
    "Examples:\n\n"
    "  vidcap merge data.jsonl   # data.captions.shard-*.jsonl -> data.captions.jsonl\n\n"
    "  vidcap merge 'out/shard-*.jsonl' --output captions.jsonl"
)


def merge_command(
    shards: Annotated[
        list[str],
        typer.Argument(
            metavar="SHARD_OUTPUT_OR_INPUT",
            help="Shard outputs (each with its .summary.json), globs of them, or the input file, "
            "whose shard outputs INPUT.captions.shard-I-of-N.EXT are then found beside it.",
            show_default=False,
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help=f"The merged file: {RECORD_FORMATS} (default, given the input: INPUT.captions.EXT).",
        ),
    ] = None,
) -> None:
    """Join complete shard outputs into one file in input order; refuses gaps, overlaps and other inputs."""
    from vidcap.io.staging import staged_merge

    # Shards and output in object storage are merged from local copies (io/staging.py).
    with staged_merge([str(s) for s in shards], output) as (args, local_output, output_url):
        line, written = _merge(args, local_output)
    print(f"{line} -> {output_url or written}", file=sys.stderr)


def _merge(args: list[str], output: str | None) -> tuple[str, str]:
    """Merge the (local) shard outputs ``args`` into ``output``: the line to print, the output."""
    from vidcap.io.merge_outputs import merge_outputs
    from vidcap.io.shards import default_output

    shard_outputs, input_path = find_shard_outputs(args)
    if output is None:
        if input_path is None:
            raise VidcapError("merge: give --output (or the input file, to merge to INPUT.captions.EXT)")
        output = str(default_output(input_path))
    report = merge_outputs(shard_outputs, Path(output), input_path=input_path)
    summary = write_merged_summary(shard_outputs, report)
    counts = ", ".join(f"{n} {status}" for status, n in summary["status_counts"].items())
    return f"vidcap: merged {report.shards} shards, {report.records} records ({counts})", output


_NOT_SHARDS = (".summary.json", ".partial.jsonl")  # sidecars a broad glob also matches


def find_shard_outputs(args: list[str]) -> tuple[list[Path], Path | None]:
    """The shard outputs named by ``args``, and the input file if one was given.

    Each argument is a shard output (it has a summary), a glob pattern (expanded here, for
    patterns the shell left alone), or an input file: the shard outputs that runs without
    ``--output`` wrote beside it (``INPUT.captions.shard-I-of-N.EXT``). VidcapError for an
    argument that is none of these.
    """
    from vidcap.io.shards import default_shard_outputs
    from vidcap.io.sidecar import summary_path

    found: list[Path] = []
    inputs: list[Path] = []
    for arg in args:
        path = Path(arg)
        if summary_path(path).exists():
            found.append(path)
        elif path.is_file():
            outputs = default_shard_outputs(path)
            if not outputs:
                raise VidcapError(
                    f"{path}: no summary {summary_path(path).name} (not a shard output) and no shard outputs "
                    f"beside it named {path.stem}.captions.shard-I-of-N{path.suffix} (not an input of shards)"
                )
            inputs.append(path)
            found.extend(outputs)
        elif glob.has_magic(arg):
            matches = sorted(Path(p) for p in glob.glob(arg) if not p.endswith(_NOT_SHARDS))
            if not matches:
                raise VidcapError(f"merge: no file matches {arg}")
            found.extend(matches)
        else:
            raise VidcapError(f"{path}: no such file")
    if len(set(inputs)) > 1:
        raise VidcapError(f"merge: give one input file, not {len(set(inputs))}")
    return list(dict.fromkeys(found)), (inputs[0] if inputs else None)


def write_merged_summary(shard_outputs: list[Path], report: Any) -> dict[str, Any]:
    """``OUTPUT.summary.json`` for the merged file.

    Status and flag counts come from the merged records themselves (a shard's own summary
    describes only its last run, not what earlier, interrupted runs wrote); the other counters
    are the shards' last-run stats added up. A duplicate flag says the caption repeats another
    of its own shard's run, not of the whole merged file.
    """
    from vidcap.io.files import atomic_write
    from vidcap.io.jsonio import dumps_pretty, loads
    from vidcap.io.records import iter_records
    from vidcap.io.sidecar import summary_path
    from vidcap.pipeline.stats import RunStats
    from vidcap.version import __version__

    shard_summaries = [loads(summary_path(Path(p)).read_bytes()) for p in shard_outputs]
    status_key = shard_summaries[0].get("status_key", "status")
    info_key = shard_summaries[0].get("info_key", "info")
    statuses: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    for record in iter_records(report.output):
        statuses[str(record.data.get(status_key))] += 1
        info = record.data.get(info_key)
        if isinstance(info, dict) and isinstance(info.get("flags"), list):
            flags.update(f for f in dict.fromkeys(info["flags"]) if isinstance(f, str))
    last_runs = sum((_last_run(s) for s in shard_summaries), RunStats())
    summary = {
        "vidcap_version": __version__,
        "input": report.input,
        "output": str(Path(report.output).resolve()),
        "shards": report.shards,
        "records": report.records,
        "records_per_shard": list(report.records_per_shard),
        "complete": True,
        "status_counts": {k: statuses.get(k, 0) for k in ("ok", "error", "skipped")},
        "status_key": status_key,
        "flag_counts": dict(flags),
        "info_key": info_key,
        "shards_last_runs": last_runs.as_dict(),
    }
    atomic_write(summary_path(Path(report.output)), [dumps_pretty(summary) + b"\n"])
    return summary


def _last_run(summary: dict[str, Any]) -> Any:
    """A shard's last-run stats; counters this version does not know, or of the wrong type, are left out
    (a summary from another version is read as far as it can be, never a traceback)."""
    import dataclasses

    from vidcap.pipeline.stats import RunStats

    stats = summary.get("stats")
    defaults = RunStats()
    values: dict[str, Any] = {}
    for f in dataclasses.fields(RunStats):
        value = stats.get(f.name) if isinstance(stats, dict) else None
        default = getattr(defaults, f.name)
        if isinstance(default, dict):
            if isinstance(value, dict) and all(isinstance(v, int) for v in value.values()):
                values[f.name] = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            values[f.name] = type(default)(value)
    return RunStats(**values)
