"""Per-run counters, kept by each step and added up across batches (and shards, with ``+``)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_MAX_KIND = 80


@dataclass
class RunStats:
    """What a run did. Times are wall-clock seconds spent in each step by the main process,
    except ``decode_worker_s`` (the decode workers' own time, added up over workers) and the
    engine's clock (``engine_s``, ``generate_s``, ``in_flight_s``: see ``InFlightClock``)."""

    ok: int = 0
    error: int = 0
    skipped: int = 0
    resumed: int = 0  # records found already done in the output and not redone
    bad_lines: int = 0  # input lines that are not records, skipped with --on-bad-line skip
    videos: int = 0
    frames: int = 0
    prompt_tokens: int = 0  # of the records written: what their info objects add up to
    generated_tokens: int = 0
    retries: int = 0  # captions --fail-on failed and tried again with a new seed (--retries)
    retried_prompt_tokens: int = 0  # of those tries, which no record keeps
    retried_generated_tokens: int = 0
    decode_wait_s: float = 0.0  # time the main loop waited for decoded videos
    decode_worker_s: float = 0.0  # the workers' own time decoding (records that decoded)
    request_s: float = 0.0  # building requests: prompt templates, token counts
    submit_s: float = 0.0  # handing requests to the engine (vLLM's processor runs in it)
    collect_s: float = 0.0  # taking finished outputs from the engine (and waiting for them)
    assess_s: float = 0.0  # info, flags and output records, in input order
    generate_s: float = 0.0  # the engine had at least one request in flight
    write_s: float = 0.0
    engine_s: float = 0.0  # from the engine's first chance at a request to the feed's end
    in_flight_s: float = 0.0  # requests in flight integrated over time (request-seconds)
    max_in_flight: int = field(default=0, metadata={"merge": max})  # the most at once
    in_flight_limit: int = field(default=0, metadata={"merge": max})  # --max-in-flight, as resolved
    load_s: float = 0.0  # starting the engine (loading the model)
    caption_s: float = 0.0  # from the first record to the last: what the progress bar's rate counts
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    flag_counts: dict[str, int] = field(default_factory=dict)  # records with each quality flag

    @property
    def processed(self) -> int:
        """Records this run wrote (not counting resumed ones)."""
        return self.ok + self.error + self.skipped

    def count_error(self, message: str, paths: Iterable[str] = ()) -> None:
        """Count an error record under its kind (``error_kind``); ``paths``: the record's videos."""
        self.error += 1
        kind = error_kind(message, paths)
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1

    def count_flags(self, flags: Iterable[str]) -> None:
        """Count one record's quality flags (``pipeline/assess.py``)."""
        for flag in flags:
            self.flag_counts[flag] = self.flag_counts.get(flag, 0) + 1

    def __add__(self, other: RunStats) -> RunStats:
        merged = RunStats()
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if "merge" in f.metadata:
                setattr(merged, f.name, f.metadata["merge"](mine, theirs))
            elif isinstance(mine, dict):
                combined = dict(mine)
                for key, value in theirs.items():
                    combined[key] = combined.get(key, 0) + value
                setattr(merged, f.name, combined)
            else:
                setattr(merged, f.name, mine + theirs)
        return merged

    def as_dict(self) -> dict:
        """A JSON-ready dict of every counter."""
        return dataclasses.asdict(self)

    def engine_summary(self) -> dict[str, Any]:
        """The summary's ``engine`` object: how busy the engine was kept, and where time went.

        ``busy_fraction``: the share of ``engine_s`` with at least one request in flight (from
        its submission until the feed collected its output); ``mean_in_flight``: requests in
        flight averaged over that time; ``stages_s``: seconds per stage, the decode workers'
        own time included (it overlaps with the others: the workers run beside the main process).
        """
        span = self.engine_s
        return {
            "busy_fraction": round(self.generate_s / span, 4) if span > 0 else None,
            "mean_in_flight": round(self.in_flight_s / span, 2) if span > 0 else None,
            "max_in_flight": self.max_in_flight,
            "in_flight_limit": self.in_flight_limit,
            "seconds": round(span, 3),
            "busy_s": round(self.generate_s, 3),
            "stages_s": {
                "decode_workers": round(self.decode_worker_s, 3),
                "decode_wait": round(self.decode_wait_s, 3),
                "requests": round(self.request_s, 3),
                "submit": round(self.submit_s, 3),
                "collect": round(self.collect_s, 3),
                "assess": round(self.assess_s, 3),
                "write": round(self.write_s, 3),
            },
        }


class InFlightClock:
    """Integrates the engine's in-flight count over time into ``stats`` (``engine_s``,
    ``generate_s``: time with at least one in flight, ``in_flight_s``, ``max_in_flight``).

    Call ``update`` after each submit and collect with the engine's count, ``stop`` at the end.
    """

    def __init__(self, stats: RunStats, now: float | None = None) -> None:
        self.stats = stats
        self._last = time.monotonic() if now is None else now
        self._level = 0

    def update(self, level: int, now: float | None = None) -> None:
        """The count is ``level`` from now on."""
        now = time.monotonic() if now is None else now
        elapsed = max(0.0, now - self._last)
        stats = self.stats
        stats.engine_s += elapsed
        stats.in_flight_s += self._level * elapsed
        if self._level > 0:
            stats.generate_s += elapsed
        stats.max_in_flight = max(stats.max_in_flight, level)
        self._last, self._level = now, level

    def stop(self, now: float | None = None) -> None:
        """Count the time up to now; nothing is in flight any more."""
        self.update(0, now)


def error_kind(message: str, paths: Iterable[str] = ()) -> str:
    """A short name for the kind of an error, the same for every record it strikes.

    The record's video paths become ``{video}`` ("corrupt video {video}", whatever the file),
    then the message is cut at its first ": ", after which come the details (a decoder's
    words, token counts): "video not found", "prompt too long". A kind still longer than 80
    characters ends at a word, with "...".
    """
    for path in sorted({p for p in paths if p}, key=len, reverse=True):
        message = message.replace(path, "{video}")
    kind = message.split(": ", 1)[0]
    if len(kind) <= _MAX_KIND:
        return kind
    # Too long for a key: cut at the last space that fits, never inside a word, and say it is cut.
    cut = kind[: _MAX_KIND - 3]
    return f"{cut.rsplit(' ', 1)[0] if ' ' in cut else cut}..."
