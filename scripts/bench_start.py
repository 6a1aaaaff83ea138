#!/usr/bin/env python
"""The start of a run and vLLM's input processing, side by side in one run on a real vLLM engine
(CPU build, the tiny random-weight Qwen2.5-VL). Each side runs in a fresh process of its own
(its own engine start, its own peak RSS), sides alternating from round to round:

1. **busy fraction** of a generation-bound run (``--busy-records`` short clips, ``--busy-tokens``
   forced tokens a caption), from a cold engine: *decode-after-load* starts the engine, then
   runs (the decode pool starts once the model is up: vidcap's order before decoding started
   while the model loads); *decode-while-loading* lets the run start the engine (the order now).
2. **vLLM's multimodal processor cache**, ``mm_processor_cache_gb`` 4 (vLLM's default) against 0,
   on ``--mm-records`` distinct videos (each a clip of its own size, so no two share a hash),
   4 tokens a caption so input processing dominates: the run's wall, the main process's CPU
   seconds, and the peak RSS of the main process and of the engine core during the run.

    PYTHONPATH=src .venv/bin/python scripts/bench_start.py --rounds 1

Captions of the tiny random-weight model are noise; this measures scheduling and plumbing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_feed, beside this script


def status_kib(pid: int | str, key: str) -> int:
    """A ``/proc/<pid>/status`` value in KiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak(pid: int | str) -> None:
    """Start VmHWM again from the current RSS (``clear_refs`` 5), so the peak is the run's."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def engine_core_pids(engine: Any) -> list[int]:
    """The engine core process(es) of a started ``VllmEngine`` (none for an in-process core)."""
    client = getattr(engine._llm.llm_engine, "engine_core", None)
    manager = getattr(getattr(client, "resources", None), "engine_manager", None)
    return [p.pid for p in getattr(manager, "processes", None) or [] if getattr(p, "pid", None)]


def distinct_clips(folder: Path, count: int) -> Path:
    """``count`` clips of distinct sizes (distinct frames, so distinct content hashes) and a
    JSON Lines input naming them."""
    from vidcap.video.synthetic import make_clip

    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"distinct-{count}.jsonl"
    with data.open("w") as f:
        for i in range(count):
            clip = folder / f"d{i}.mp4"
            if not clip.exists():
                make_clip(clip, seconds=4.0, fps=10, width=448 + 16 * (i % 8), height=336 + 16 * (i // 8))
            f.write(json.dumps({"id": i, "video": clip.name}) + "\n")
    return data


def child(args: argparse.Namespace) -> None:
    """One side, in this fresh process; prints its measurements as one JSON line."""
    from bench_feed import bench_engine_class, make_dataset

    from vidcap.config import EngineConfig, build_config
    from vidcap.engines.caption_engine import GenerationOptions
    from vidcap.executors.job import run_captioning

    work = args.workdir
    kind, _, value = args.child.partition(":")
    if kind == "busy":
        data = make_dataset(work / "clips", f"busy-{args.busy_records}", args.busy_records)
        tokens, kwargs = args.busy_tokens, {}
    else:
        data = distinct_clips(work / "distinct", args.mm_records)
        tokens, kwargs = 4, {"mm_processor_cache_gb": float(value)}
    engine = bench_engine_class()(
        EngineConfig(
            model=str(work / "tiny-model"),
            max_model_len=4096,
            gpu_memory_utilization=0.05,
            enforce_eager=True,
            engine_kwargs={"max_num_seqs": args.batch_size, **kwargs},
        ),
        GenerationOptions(max_tokens=tokens, temperature=0.7, seed=0),
    )
    engine.lengths = {str(i): tokens for i in range(max(args.busy_records, args.mm_records))}
    config = build_config(
        {},
        {
            "input": str(data),
            "output": str(work / f"out-{kind}-{value}-{os.getpid()}.jsonl"),
            "model": engine.config.model,
            "decode_workers": args.decode_workers,
            "batch_size": args.batch_size,
            "fps": 2.0,
            "overwrite": True,
        },
    )
    started = time.monotonic()
    if value == "after-load" or kind == "mm":  # the engine is up before the run (and its pool) starts
        engine.start(max_videos_per_prompt=1)
    cores = engine_core_pids(engine) if engine._llm is not None else []
    for pid in [os.getpid(), *cores]:
        reset_peak(pid)
    rss = {pid: status_kib(pid, "VmRSS") for pid in [os.getpid(), *cores]}
    run_started, cpu = time.monotonic(), time.process_time()
    result = run_captioning(config, engine)
    run_wall, main_cpu = time.monotonic() - run_started, time.process_time() - cpu
    cores = cores or engine_core_pids(engine)
    summary = result.summary_data
    out = {
        "side": args.child,
        "start_to_end_s": round(time.monotonic() - started, 2),
        "run_wall_s": round(run_wall, 2),
        "load_s": round(result.stats.load_s, 2),
        "caption_s": round(result.stats.caption_s, 2),
        "main_cpu_s": round(main_cpu, 2),
        "main_peak_mib": round(status_kib(os.getpid(), "VmHWM") / 1024),
        "main_growth_mib": round((status_kib(os.getpid(), "VmHWM") - rss[os.getpid()]) / 1024),
        "core_peak_mib": round(sum(status_kib(p, "VmHWM") for p in cores) / 1024) if cores else None,
        # Engine core: its peak over its RSS when the run began (None when the run started it).
        "core_growth_mib": (
            round(sum(status_kib(p, "VmHWM") - rss[p] for p in cores) / 1024)
            if cores and set(cores) <= set(rss)
            else None
        ),
        "ok": summary["stats"]["ok"],
        "records": result.records_in_shard,
        "engine": summary["engine"],
    }
    engine.close()
    print(json.dumps(out), flush=True)


def run_side(side: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", side, *args.passthrough]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"side"')]
    if done.returncode != 0 or not lines:
        sys.exit(f"side {side} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1])
    print(f"{side}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy-records", type=int, default=32)
    parser.add_argument("--busy-tokens", type=int, default=64)
    parser.add_argument("--mm-records", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--decode-workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--parts", default="busy,mm", help="which parts: busy, mm or both")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from vidcap.tiny_model import build_tiny_model

    args.workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vidcap-bench-start-"))
    if not (args.workdir / "tiny-model" / "config.json").exists():
        build_tiny_model(args.workdir / "tiny-model")
    args.passthrough = [
        *("--busy-records", str(args.busy_records), "--busy-tokens", str(args.busy_tokens)),
        *("--mm-records", str(args.mm_records), "--batch-size", str(args.batch_size)),
        *("--decode-workers", str(args.decode_workers), "--workdir", str(args.workdir)),
    ]
    sides = []
    if "busy" in args.parts:
        sides += ["busy:after-load", "busy:while-loading"]
    if "mm" in args.parts:
        sides += ["mm:4", "mm:0"]
    results: dict[str, list[dict]] = {side: [] for side in sides}
    for round_ in range(args.rounds):
        for side in sides if round_ % 2 == 0 else list(reversed(sides)):
            results[side].append(run_side(side, args))

    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for r in results[side])

    print(f"\nmedians of {args.rounds} round(s); load average at the end {os.getloadavg()}")
    if "busy" in args.parts:
        print(f"\nbusy: {args.busy_records} records x {args.busy_tokens} tokens, cold engine")
        print("| side | busy_fraction | engine idle s | engine s | load s | run wall s |")
        print("|---|---|---|---|---|---|")
        for side in ("busy:after-load", "busy:while-loading"):
            for r in results[side]:
                eng = r["engine"]
                idle = eng["seconds"] - eng["busy_s"]
                print(
                    f"| {side} | {eng['busy_fraction']} | {idle:.2f} | {eng['seconds']:.2f} | "
                    f"{r['load_s']} | {r['run_wall_s']} |"
                )
    if "mm" in args.parts:
        print(f"\nmm processor cache: {args.mm_records} distinct videos, 4 tokens a caption")
        columns = ["mm_processor_cache_gb", "run wall s", "main CPU s", "main peak MiB", "main growth MiB"]
        print("| " + " | ".join([*columns, "core peak MiB", "core growth MiB"]) + " |")
        print("|---|---|---|---|---|---|---|")
        for side in ("mm:4", "mm:0"):
            for r in results[side]:
                print(
                    f"| {side[3:]} | {r['run_wall_s']} | {r['main_cpu_s']} | {r['main_peak_mib']} | "
                    f"{r['main_growth_mib']} | {r['core_peak_mib']} | {r['core_growth_mib']} |"
                )
        for key in ("run_wall_s", "main_cpu_s", "main_peak_mib", "core_peak_mib", "core_growth_mib"):
            print(f"{key}: cache 0 / cache 4 = {med('mm:0', key) / med('mm:4', key):.2f}")


if __name__ == "__main__":
    main()
