"""``vidcap merge``: join shard outputs into one file, in input order, with a combined summary."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

EPILOG = "Example:\n\n  vidcap merge out/shard-*.jsonl --output captions.jsonl"


def merge_command(
    shard_outputs: Annotated[
        list[Path],
        typer.Argument(metavar="SHARD_OUTPUT", help="The shard outputs (each with its .summary.json)."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="FILE", help="The merged .jsonl or .json file.")
    ],
) -> None:
    """Join complete shard outputs into one file in input order; refuses missing or unfinished shards."""
    from vidcap.io.merge import merge_outputs

    report = merge_outputs(list(shard_outputs), output)
    summary = write_merged_summary(list(shard_outputs), report)
    counts = ", ".join(f"{n} {status}" for status, n in summary["status_counts"].items())
    print(
        f"vidcap: merged {report.shards} shards, {report.records} records ({counts}) -> {output}",
        file=sys.stderr,
    )


def write_merged_summary(shard_outputs: list[Path], report: Any) -> dict[str, Any]:
    """``OUTPUT.summary.json`` for the merged file.

    Status counts come from the merged records themselves (a shard's own summary describes
    only its last run, not what earlier, interrupted runs wrote); the other counters are the
    shards' last-run stats added up.
    """
    from vidcap import __version__
    from vidcap.io._files import atomic_write
    from vidcap.io.jsonio import dumps_pretty, loads
    from vidcap.io.merge import summary_path
    from vidcap.io.records import iter_records
    from vidcap.pipeline.stats import RunStats

    shard_summaries = [loads(summary_path(Path(p)).read_bytes()) for p in shard_outputs]
    status_key = shard_summaries[0].get("status_key", "status")
    statuses = Counter(str(r.data.get(status_key)) for r in iter_records(report.output))
    last_runs = sum((RunStats(**s["stats"]) for s in shard_summaries if "stats" in s), RunStats())
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
        "shards_last_runs": last_runs.as_dict(),
    }
    atomic_write(summary_path(Path(report.output)), [dumps_pretty(summary) + b"\n"])
    return summary
