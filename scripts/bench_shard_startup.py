#!/usr/bin/env python
"""Shard start-up on a large input: before (every task checks the whole input) vs after (its span).

What an array task does before its first record can be captioned, timed in one process on
one generated JSON Lines file:

* before: the start-up of vidcap 0.1 (rebuilt from the same primitives it used): parse and
  check every record of the input (``iter_records`` + ``record_problem``), with ``--id-key``
  a second full pass for id uniqueness (``check_unique_ids``), then stream records from the
  start of the input up to the shard's first record (``iter_records(start=...)``);
* after: ``resolve_shard`` (a newline scan of the file, no parsing) and ``check_records``
  on the shard's span only (ids checked within it in the same pass), then its first record.

Both sides run alternately, ``--repeat`` times each, on the shards ``--indexes`` (default:
the first, the middle one and the last of ``--shards``); medians of wall-clock and CPU
seconds (this process's, so less sensitive to other load on the machine) are printed as a
Markdown table. The input is generated in ``--workdir`` (not committed) and reused.

    .venv/bin/python scripts/bench_shard_startup.py --records 1000000 --shards 100 --workdir /tmp/vc-shards
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def make_input(path: Path, records: int) -> Path:
    """``records`` JSONL records of a realistic shape (~190 bytes each)."""
    if path.exists() and sum(1 for _ in path.open("rb")) == records:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for i in range(records):
            record = {
                "id": f"clip-{i:08d}",
                "video": f"videos/{i // 1000:04d}/{i:08d}.mp4",
                "conversation": [{"from": "human", "value": "<video>\nDescribe the video."}],
                "meta": {"source": "bench", "duration": 12.5 + i % 7, "tags": ["a", "b"]},
            }
            f.write(json.dumps(record) + "\n")
    return path


def before(path: Path, opts, index: int, count: int) -> None:
    """vidcap 0.1's start-up for shard ``index`` of ``count``, up to the shard's first record."""
    from vidcap.errors import VidcapError
    from vidcap.io.records import iter_records
    from vidcap.io.resume import check_unique_ids
    from vidcap.io.shards import shard_range
    from vidcap.pipeline.check import record_problem

    total = 0
    for record in iter_records(path, on_bad_line=opts.on_bad_line):
        problem = record_problem(record.data, opts)
        if problem:
            raise VidcapError(f"{path}:{record.line}: {problem}")
        total += 1
    if opts.id_key is not None:
        check_unique_ids(path, opts.id_key, opts.on_bad_line)
    r = shard_range(total, index, count)
    next(iter(iter_records(path, on_bad_line=opts.on_bad_line, start=r.start, stop=r.stop)))


def after(path: Path, opts, index: int, count: int) -> None:
    """This version's start-up for shard ``index`` of ``count``, up to the shard's first record."""
    from vidcap.executors.array_share import resolve_shard
    from vidcap.io.records import SpanReader
    from vidcap.pipeline.check import check_records

    shard = resolve_shard(index, count, path)
    check_records(shard.span, opts, whole_input=count == 1)
    next(iter(SpanReader(shard.span, on_bad_line=opts.on_bad_line)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--indexes", help="comma-separated shard indexes (default: first,middle,last)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/vc-shards"))
    args = parser.parse_args()

    from vidcap.config import RunOptions
    from vidcap.io.formats import find_span

    path = make_input(args.workdir / f"data-{args.records}.jsonl", args.records)
    size_mb = path.stat().st_size / 1e6
    print(f"input: {path} ({args.records} records, {size_mb:.0f} MB), shard i of {args.shards}\n")
    scans = [_timed(find_span, path, args.shards - 1, args.shards) for _ in range(args.repeat)]
    wall, cpu = (statistics.median(t[i] for t in scans) for i in (0, 1))
    print(f"newline scan alone (find_span): {wall:.3f} s wall, {cpu:.3f} s CPU\n")
    header = "| id check | shard | before wall s | after wall s | speed-up | before CPU s | after CPU s |"
    print(header + " speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    indexes = [0, args.shards // 2, args.shards - 1]
    if args.indexes:
        indexes = [int(i) for i in args.indexes.split(",")]
    for id_key in (None, "id"):
        opts = RunOptions(input=str(path), id_key=id_key)
        for index in indexes:
            times: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
            for _ in range(args.repeat):  # alternate the sides so drift in machine load hits both
                times["before"].append(_timed(before, path, opts, index, args.shards))
                times["after"].append(_timed(after, path, opts, index, args.shards))
            bw, bc = (statistics.median(t[i] for t in times["before"]) for i in (0, 1))
            aw, ac = (statistics.median(t[i] for t in times["after"]) for i in (0, 1))
            label = "--id-key id" if id_key else "none"
            wall_row = f"{bw:.2f} | {aw:.3f} | {bw / aw:.0f}x"
            cpu_row = f"{bc:.2f} | {ac:.3f} | {bc / ac:.0f}x"
            print(f"| {label} | {index} | {wall_row} | {cpu_row} |", flush=True)


def _timed(fn, *args) -> tuple[float, float]:
    """Wall-clock and CPU seconds of ``fn(*args)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


if __name__ == "__main__":
    main()
