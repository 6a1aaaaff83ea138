"""The run summary written beside the output (``out.jsonl.summary.json``).

It says what the run did (counts by status, time, throughput, tokens, the sampling values
used and where each came from, the model family and the reference its frames follow:
``vision``) and what ``vidcap merge`` needs to join shards safely (which
shard, how many records it holds, complete or not), and carries the run's fingerprint
(:mod:`vidcap.pipeline.fingerprint`): which input, which span of it and which options the
output's records come from. The runner writes it once before the first record is appended
(``complete: false``) and again when it stops.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidcap.errors import VidcapError
from vidcap.families import vision_facts
from vidcap.io import staging
from vidcap.io.files import atomic_write
from vidcap.io.jsonio import dumps_pretty
from vidcap.version import __version__

if TYPE_CHECKING:
    from vidcap.config import RunConfig
    from vidcap.executors.array_share import Shard
    from vidcap.pipeline.stats import RunStats


def build_summary(
    *,
    config: RunConfig,
    input_path: Path,
    output_path: Path,
    shard: Shard,
    records_in_shard: int,
    fingerprint: dict[str, Any],
    stats: RunStats,
    elapsed_s: float,
    started_at: str,
    complete: bool,
    sampling: dict[str, Any] | None = None,
    interrupted: bool | None = None,
    failed: str | None = None,
    engines: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary as a dict (see module doc). ``sampling``: each sampling value sent and where
    it came from (``ResolvedSampling.summary()``; None when the engine never started).
    ``engines``: the engine's own statistics (``CaptionEngine.engine_stats``: one entry per
    engine with ``--data-parallel-size``), added to the ``engine`` object.

    ``interrupted``: a stop signal ended the run (default: not ``complete``); ``failed``: the
    one-line error that ended it (an engine that could not start, an error while stopping).
    """
    elapsed = max(elapsed_s, 1e-9)
    return {
        "vidcap_version": __version__,
        "input": str(input_path.resolve()),
        "output": str(output_path.resolve()),
        "shard": {"index": shard.index, "count": shard.count},
        "records_in_shard": records_in_shard,
        "records_written": stats.resumed + stats.processed,
        "complete": complete,
        "interrupted": (not complete) if interrupted is None else interrupted,
        "failed": failed,
        "status_counts": {"ok": stats.ok, "error": stats.error, "skipped": stats.skipped},
        "status_key": config.run.status_key,
        "flag_counts": dict(stats.flag_counts),
        "info_key": config.run.info_key,
        "id_key": config.run.id_key,
        "resumed": stats.resumed,
        "bad_lines_skipped": stats.bad_lines,
        "model": config.engine.model,
        "backend": config.engine.backend,
        # The model's family and the geometry the frames were planned with.
        "vision": vision_facts(config.sampling),
        "sampling": sampling,
        "seed": config.generation.seed,
        "num_captions": config.generation.num_captions,
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed_s, 3),
        "videos_per_s": round(stats.videos / elapsed, 4),
        "records_per_s": round(stats.processed / elapsed, 4),
        "prompt_tokens": stats.prompt_tokens,
        "generated_tokens": stats.generated_tokens,
        # Tries --retries dropped: their tokens are in no record's info, but the engine made them.
        "retried_prompt_tokens": stats.retried_prompt_tokens,
        "retried_generated_tokens": stats.retried_generated_tokens,
        "generated_tokens_per_s": round(
            (stats.generated_tokens + stats.retried_generated_tokens) / max(stats.generate_s, 1e-9), 2
        ),
        "engine": {**stats.engine_summary(), **(engines or {})},
        "stats": stats.as_dict(),
        "fingerprint": fingerprint,
    }


def write_summary(path: Path, **kwargs: Any) -> dict[str, Any]:
    """Build the summary and write it atomically to ``path``; returns it."""
    data = staging.publish_summary(path, build_summary(**kwargs))  # an output URL is named as such
    try:
        atomic_write(path, [dumps_pretty(data) + b"\n"])
    except OSError as e:
        raise VidcapError(f"cannot write summary: {path}: {e.strerror or e}") from None
    staging.put_summary(path)
    return data
