"""``vidcap merge``: join shard outputs into one file, in input order."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

EPILOG = "Example:\n\n  vidcap merge out/shard-*.jsonl --output captions.jsonl"


def merge_command(
    shard_outputs: Annotated[
        list[Path], typer.Argument(help="The shard outputs (each with its .summary.json).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The merged .jsonl or .json file.")],
) -> None:
    """Join complete shard outputs into one file in input order; refuses missing or unfinished shards."""
    from vidcap.io.merge import merge_outputs

    report = merge_outputs(list(shard_outputs), output)
    print(f"merged {report.shards} shards, {report.records} records -> {output}", file=sys.stderr)
