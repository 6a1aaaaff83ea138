#!/usr/bin/env python
"""The host ceiling: how many videos and visual tokens per second one vidcap process can feed an engine.

Runs the real vLLM engine on the tiny random-weight Qwen2.5-VL with ``max_tokens=1``, so the engine
does almost nothing and what is left is the main process's own work per video:

- transfer: receiving decoded frames from a pool worker (pickled through a pipe, or mapped from
  shared memory), side by side on the same frames. The worker returns frames it decoded once, so
  only the transport is timed: the wall time per video as the consumer sees it, and the CPU time
  of the pool's dispatcher thread (the part the main process pays). The consumer touches every
  page of the frames, so a mapping's first-touch faults are counted.
- build: the CaptionRequest and its prompt-length check (what the runner does per record).
- process: vLLM's input processing of one request, the HF video processor included
  (``VllmEngine.inspect``: the same path as ``generate`` up to the engine core).
- pipeline: the main-process path fed by 1 and 2 real decode workers, pipe vs shared memory:
  decode_record in the pool, request building, vLLM's input processing; videos/s and visual
  tokens/s. Not ``generate``: on CPU even the tiny model's vision encoder and prefill take seconds
  per video (the engine core, a process of its own), which would time the engine, not the host.
  What ``generate`` adds in the main process (content hashing for vLLM's processor cache, sending
  to the engine core) is left out.
- threads: the HF video processor on 2 threads vs 1 (does it release the GIL?).

    PYTHONPATH=src .venv/bin/python scripts/bench_host_ceiling.py          # ~4 min on 2 busy cores
    PYTHONPATH=src .venv/bin/python scripts/bench_host_ceiling.py --quick  # ~3 min (the engine's start)

Results and their reading: BENCHMARKS.md, "Host ceiling".
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

SIZES = {"720p": (1280, 720), "480p": (854, 480)}
_CACHE: dict[tuple[str, float], Any] = {}  # a transfer worker's decoded videos


def decode_cached(task: Any) -> Any:
    """Pool function for the transfer timing: decode each (video, fps) once, then return it again."""
    from vidcap.pipeline.decode_step import decode_record

    key = (task.paths[0], task.options.fps)
    if key not in _CACHE:
        _CACHE[key] = decode_record(task)
    return _CACHE[key]


def touch(frames: np.ndarray) -> int:
    """Read one byte of every page, as the HF processor will (a fresh mapping faults them in)."""
    flat = frames.reshape(-1)
    return int(flat[::4096].sum())


def dispatcher_cpu_s() -> float:
    """CPU seconds used so far by this process's pool dispatcher threads."""
    import psutil

    ids = {t.native_id for t in threading.enumerate() if t.name == "vidcap-pool"}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in ids)


def time_transfer(task: Any, count: int, shared_memory: bool) -> tuple[float, float]:
    """(wall s, dispatcher CPU s) per video for ``count`` results of ``task`` from one worker."""
    from vidcap.video.pool import OrderedPool

    with OrderedPool(decode_cached, workers=1, max_pending=2, shared_memory=shared_memory) as pool:
        [warm] = pool.imap([task])  # the worker decodes (and caches) the video
        assert warm.error is None, warm.error
        cpu0, start = dispatcher_cpu_s(), time.perf_counter()
        for outcome in pool.imap([task] * count):
            touch(outcome.result[0].frames)
        wall = time.perf_counter() - start
        cpu = dispatcher_cpu_s() - cpu0
    return wall / count, cpu / count


def build_request(index: int, videos: list[Any], engine: Any) -> Any:
    """What the runner does with a decoded record: a CaptionRequest and its length check."""
    from vidcap.engines.caption_engine import CaptionRequest, VideoInput

    request = CaptionRequest(
        request_id=str(index),
        prompt="Describe this video in detail.",
        videos=[VideoInput(v.frames, v.plan.processor_metadata(), v.plan.video_tokens) for v in videos],
    )
    engine.request_problem(request)
    engine.count_prompt_tokens(request)
    return request


def per_video(fn: Any, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        fn(i)
    return (time.perf_counter() - start) / count


def time_pipeline(engine: Any, tasks: list[Any], workers: int, shared_memory: bool) -> float:
    """Wall seconds for the main-process path over ``tasks`` fed by ``workers`` decode workers."""
    from vidcap.pipeline.decode_step import decode_record
    from vidcap.video.pool import OrderedPool

    start = time.perf_counter()
    with OrderedPool(
        decode_record, workers=workers, max_pending=4 + 2 * workers, shared_memory=shared_memory
    ) as pool:
        for outcome in pool.imap(tasks):
            assert outcome.error is None, outcome.error
            engine.inspect(build_request(outcome.task.index, outcome.result, engine))
    return time.perf_counter() - start


def time_threads(processor: Any, frames: np.ndarray, threads: int, rounds: int) -> float:
    """Wall seconds per video for ``rounds`` videos per thread through the HF video processor."""
    size = {"shortest_edge": frames.shape[1] * frames.shape[2], "longest_edge": (len(frames) + 1) * 10**8}

    def work() -> None:
        for _ in range(rounds):
            processor.video_processor(videos=[frames], do_sample_frames=False, size=size, return_tensors="pt")

    pool = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return (time.perf_counter() - start) / (threads * rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="clip length (default: %(default)s)")
    parser.add_argument("--fps", default="1,2", help="sampling fps values (default: %(default)s)")
    parser.add_argument("--sizes", default="720p,480p", help=f"of {','.join(SIZES)} (default: %(default)s)")
    parser.add_argument("--count", type=int, default=4, help="videos per timed stage (default: %(default)s)")
    parser.add_argument(
        "--pipeline-videos", type=int, default=8, help="per pipeline run (default: %(default)s)"
    )
    parser.add_argument("--quick", action="store_true", help="720p at 2 fps only, fewer videos")
    parser.add_argument("--folder", type=Path, help="keep the model and clips here (default: a temp dir)")
    args = parser.parse_args()
    fps_values = [float(f) for f in args.fps.split(",")]
    sizes = args.sizes.split(",")
    if args.quick:
        fps_values, sizes, args.count, args.pipeline_videos = [2.0], ["720p"], 3, 4

    from vidcap.config import EngineConfig
    from vidcap.engines.caption_engine import GenerationOptions
    from vidcap.engines.vllm_engine import VllmEngine
    from vidcap.model.processor import load_processor
    from vidcap.pipeline.decode_step import DecodeTask, decode_record
    from vidcap.tiny_model import build_tiny_model
    from vidcap.video.synthetic import make_clip
    from vidcap.video.types import SamplingOptions

    folder = args.folder or Path(tempfile.mkdtemp(prefix="vidcap-bench-host-"))
    model = build_tiny_model(folder / "tiny-qwen2.5-vl")
    max_model_len = 32768
    config = EngineConfig(
        model=str(model), max_model_len=max_model_len, gpu_memory_utilization=0.1, enforce_eager=True
    )
    engine = VllmEngine(config, GenerationOptions(max_tokens=1, temperature=0.0))  # generates nothing here
    started = time.perf_counter()
    engine.start(max_videos_per_prompt=1)
    print(f"engine started in {time.perf_counter() - started:.0f} s", file=sys.stderr)

    rows = []
    for name in sizes:
        width, height = SIZES[name]
        clip = folder / f"{name}-{args.seconds:g}s.mp4"
        if not clip.exists():
            make_clip(clip, seconds=args.seconds, fps=30, width=width, height=height)
        for fps in fps_values:
            options = SamplingOptions(fps=fps, model_seq_len=max_model_len)
            task = DecodeTask(0, (str(clip),), options, threads=1)
            videos = decode_record(task)
            plan, frames = videos[0].plan, videos[0].frames
            row: dict[str, Any] = {"video": f"{name} {args.seconds:g}s @{fps:g}fps", "frames": plan.nframes}
            row["size"] = f"{plan.resized_width}x{plan.resized_height}"
            row["tokens"], row["mb"] = plan.video_tokens, frames.nbytes / 1e6
            row["pipe"], row["pipe_cpu"] = time_transfer(task, args.count, shared_memory=False)
            row["shm"], row["shm_cpu"] = time_transfer(task, args.count, shared_memory=True)
            row["build"] = per_video(lambda i, v=videos: build_request(i, v, engine), args.count)
            request = build_request(0, videos, engine)
            engine.inspect(request)  # warm
            row["process"] = per_video(lambda i, r=request: engine.inspect(r), args.count)
            rows.append(row)
            print(f"measured {row['video']}", file=sys.stderr)

    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (affinity "
          f"{len(os.sched_getaffinity(0))}), python {platform.python_version()}")  # fmt: skip
    print("\nper video, main process (ms; (cpu): the pool dispatcher thread's CPU time);"
          " tok/s: visual tokens/s of the processing stage alone")  # fmt: skip
    head = ["video", "frames", "size", "tokens", "MB", "pipe", "(cpu)", "shm", "(cpu)", "pipe/shm",
            "build", "process", "tok/s"]  # fmt: skip
    print(" | ".join(head))
    for r in rows:
        ms = {k: r[k] * 1000 for k in ("pipe", "pipe_cpu", "shm", "shm_cpu", "build", "process")}
        print(" | ".join([
            r["video"], str(r["frames"]), r["size"], str(r["tokens"]), f"{r['mb']:.0f}",
            f"{ms['pipe']:.1f}", f"{ms['pipe_cpu']:.1f}", f"{ms['shm']:.1f}", f"{ms['shm_cpu']:.1f}",
            f"{r['pipe'] / r['shm']:.1f}x", f"{ms['build']:.1f}", f"{ms['process']:.0f}",
            f"{r['tokens'] / r['process']:,.0f}",
        ]))  # fmt: skip

    # The whole path, on the clip nearest the example (720p at 2 fps if measured).
    name, fps = ("720p" if "720p" in sizes else sizes[0]), (2.0 if 2.0 in fps_values else fps_values[0])
    width, height = SIZES[name]
    clip = folder / f"{name}-{args.seconds:g}s.mp4"
    options = SamplingOptions(fps=fps, model_seq_len=max_model_len)
    tokens = decode_record(DecodeTask(0, (str(clip),), options))[0].plan.video_tokens
    print(f"\npipeline: {args.pipeline_videos} videos of {name} {args.seconds:g}s @{fps:g}fps, {tokens} tok:"
          " decode_record in the pool, request, vLLM input processing")  # fmt: skip
    print("workers | transport | videos/s | visual tokens/s")
    for workers in (1, 2):
        for shared_memory in (False, True):
            tasks = [DecodeTask(i, (str(clip),), options, threads=1) for i in range(args.pipeline_videos)]
            wall = time_pipeline(engine, tasks, workers, shared_memory)
            rate = args.pipeline_videos / wall
            print(f"{workers} | {'shm' if shared_memory else 'pipe'} | {rate:.2f} | {rate * tokens:,.0f}")

    processor = load_processor(config)
    frames = decode_record(DecodeTask(0, (str(clip),), options))[0].frames
    import torch

    print(f"\nHF video processor alone ({name} @{fps:g}fps, {len(frames)} frames), ms per video:")
    print("torch threads | 1 thread | 2 threads | speed-up")
    for torch_threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(torch_threads)
        time_threads(processor, frames, 1, 1)  # warm
        one = time_threads(processor, frames, 1, 2)
        two = time_threads(processor, frames, 2, 1)
        print(f"{torch_threads} | {one * 1000:.0f} | {two * 1000:.0f} | {one / two:.2f}x")
    engine.close()
    print(f"\ntotal {statistics.fsum([time.perf_counter() - started]):.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
