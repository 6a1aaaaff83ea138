"""The end-of-run lines on the terminal: counts by status, time, rates, where the files and
the failures are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vidcap.quiet import terminal_err


def print_summary(
    data: dict[str, Any], *, interrupted: bool, id_key: str | None = None, overwrite: bool = False
) -> None:
    """A few lines on the terminal: counts by status, time, rates, where the files and failures are.

    The captioning rate counts from the first record on, as the progress bar does; the
    overall rate also counts the checks and the model load.
    """
    counts = data["status_counts"]
    stats = data.get("stats", {})
    load_s, caption_s = stats.get("load_s", 0.0), stats.get("caption_s", 0.0)
    videos = stats.get("videos", 0)
    captioning = f"{videos / caption_s:.2f} videos/s captioning" if caption_s > 0 else "no captioning"
    lines = [
        f"{'Interrupted' if interrupted else 'Done'}: {counts['ok']} ok, {counts['error']} error, "
        f"{counts['skipped']} skipped" + (f", {data['resumed']} already done" if data["resumed"] else ""),
        f"  time:    {data['elapsed_s']:.1f} s in all, {load_s:.1f} s of it loading the model",
        f"  rate:    {captioning}, {data['videos_per_s']:.2f} videos/s overall",
        f"  tokens:  {data['prompt_tokens']} prompt + {data['generated_tokens']} generated "
        f"({data['generated_tokens_per_s']:.1f}/s while generating)",
        f"  output:  {data['output']}",
        f"  summary: {data['output']}.summary.json",
    ]
    engine = data.get("engine") or {}
    if engine.get("busy_fraction") is not None:  # the engine ran (not a run with nothing to do)
        lines.insert(
            4,
            f"  engine:  busy {engine['busy_fraction']:.0%} of the time, {engine['mean_in_flight']:.1f} "
            f"requests in flight on average (at most {engine['max_in_flight']}, "
            f"limit {engine['in_flight_limit']})",
        )
    retries = stats.get("retries", 0)
    if retries:  # --retries: the tries it dropped, whose tokens no record's info counts
        lines.insert(
            4,
            f"  retries: {retries} (their {data.get('retried_prompt_tokens', 0)} prompt + "
            f"{data.get('retried_generated_tokens', 0)} generated tokens are in no record)",
        )
    flag_counts = data.get("flag_counts") or {}
    if flag_counts:  # records with each quality flag (pipeline/assess.py); flags never fail a record
        lines.insert(4, "  flags:   " + ", ".join(f"{n} {flag}" for flag, n in _ordered_flags(flag_counts)))
    if counts["error"]:
        lines.append(f"  failed:  {_failed_records(Path(data['output']), data['status_key'], id_key)}")
    if interrupted:
        lines.append(
            "  rerun without --overwrite to resume" if overwrite else "  rerun the same command to resume"
        )
    print("\n".join(lines), file=terminal_err())


def _ordered_flags(counts: dict[str, int]) -> list[tuple[str, int]]:
    """The flag counts in the order pipeline/assess.py lists the flags, unknown ones after."""
    from vidcap.pipeline.assess import FLAGS

    order = [f for f in FLAGS if f in counts] + [f for f in counts if f not in FLAGS]
    return [(f, counts[f]) for f in order]


def _failed_records(output: Path, status_key: str, id_key: str | None, limit: int = 5) -> str:
    """Where the error records of ``output`` are: their first few ids (or lines), and how many."""
    from vidcap.io.records import iter_records

    found: list[str] = []
    total = 0
    for record in iter_records(output):
        if record.data.get(status_key) == "error":
            total += 1
            if len(found) < limit:
                found.append(str(record.data.get(id_key)) if id_key else str(record.line))
    from vidcap.io.formats import format_for

    # Rows of a Parquet or CSV output, elements of a JSON array, lines of JSON Lines.
    where = "ids" if id_key else f"{format_for(output, 'output').unit}s"
    more = f", ... ({total} in the file)" if total > len(found) else ""
    return f"{where} {', '.join(found)}{more} of {output.name} (see their 'error' field)"
