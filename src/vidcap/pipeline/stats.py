"""Per-run counters, kept by each step and added up across batches (and shards, with ``+``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

_MAX_KIND = 80


@dataclass
class RunStats:
    """What a run did. Times are wall-clock seconds spent in each step by the main process,
    except ``decode_s``, which adds up the time worker processes spent decoding."""

    ok: int = 0
    error: int = 0
    skipped: int = 0
    resumed: int = 0  # records found already done in the output and not redone
    bad_lines: int = 0  # input lines that are not records, skipped with --on-bad-line skip
    videos: int = 0
    frames: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    decode_wait_s: float = 0.0  # time the main loop waited for decoded videos
    generate_s: float = 0.0
    write_s: float = 0.0
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
            if isinstance(mine, dict):
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


def error_kind(message: str, paths: Iterable[str] = ()) -> str:
    """A short name for the kind of an error, the same for every record it strikes.

    The record's video paths become ``{video}`` ("corrupt video {video}", whatever the file),
    then the message is cut at its first ": ", after which come the details (a decoder's
    words, token counts): "video not found", "prompt too long".
    """
    for path in sorted({p for p in paths if p}, key=len, reverse=True):
        message = message.replace(path, "{video}")
    return message.split(": ", 1)[0][:_MAX_KIND]
