#!/usr/bin/env python
"""Data parallelism: N engines (``--data-parallel-size N``) against one, side by side, in one script.

Each size in ``--sizes`` starts its engine(s) on the same model, warms them up with two
requests, then captions the same ``--requests`` requests (synthetic frames of ``--width`` x
``--height``, ``--frames`` per video; every caption forced to ``--max-tokens`` tokens with
``min_tokens``, so all sizes do the same work) with one ``generate`` call. It prints start-up
and captioning seconds per size and the captioning speed-up over the first size.

On a GPU node, give it a real model (``--model``) and sizes up to the GPU count. Without a
model it builds the tiny random-weight Qwen2.5-VL of the tests in ``--workdir``: on a CPU
this measures the overhead of the wrapper (processes, shared memory, the cores split between
engines), not a speed-up, since N engines share the same cores.

    .venv/bin/python scripts/bench_data_parallel.py --sizes 1 2 --requests 32
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def make_requests(count: int, frames: int, width: int, height: int, max_tokens: int) -> list:
    """``count`` requests of one synthetic video each, at a size the model's patches divide."""
    import numpy as np

    from vidcap.engines.caption_engine import CaptionRequest, VideoInput

    rng = np.random.default_rng(0)
    requests = []
    for number in range(count):
        video = rng.integers(0, 255, size=(frames, height, width, 3), dtype=np.uint8)
        metadata = {
            "fps": 2.0,
            "duration": frames / 2.0,
            "total_num_frames": frames,
            "frames_indices": list(range(frames)),
            "video_backend": "pyav",
            "do_sample_frames": False,
        }
        tokens = (frames // 2) * (height // 28) * (width // 28)
        requests.append(
            CaptionRequest(
                str(number),
                "Describe the video.",
                [VideoInput(video, metadata, tokens)],
                sampling={"min_tokens": max_tokens},
            )
        )
    return requests


def measure(size: int, model: str, args: argparse.Namespace, requests: list) -> dict[str, float]:
    """Start-up and captioning seconds of ``size`` engines on ``requests``."""
    from vidcap.config import EngineConfig, RunConfig
    from vidcap.executors import executor_for
    from vidcap.generation import GenerationOptions

    config = EngineConfig(
        model=model,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        enforce_eager=True,
        data_parallel_size=size,
    )
    generation = GenerationOptions(max_tokens=args.max_tokens, temperature=0.7, seed=0)
    started = time.monotonic()
    with executor_for(RunConfig(engine=config, generation=generation)).engine() as engine:
        engine.start(max_videos_per_prompt=1)
        start_s = time.monotonic() - started
        engine.generate(requests[:2])  # warm-up: first-call allocations in every engine
        began = time.monotonic()
        outputs = engine.generate(requests)
        caption_s = time.monotonic() - began
    errors = [o.error for o in outputs if o.error]
    if errors:
        raise SystemExit(f"{len(errors)} requests failed with {size} engine(s): {errors[0]}")
    return {"start_s": start_s, "caption_s": caption_s}


def main() -> None:
    """Parse the options, run each size in turn, print the table."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--model", help="model folder or hub id (default: the tiny test model)")
    parser.add_argument("--workdir", default="/tmp/vidcap-bench-dp", help="where the tiny model is built")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--width", type=int, default=448)
    parser.add_argument("--height", type=int, default=252)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.1)
    args = parser.parse_args()

    model = args.model
    if model is None:
        from vidcap.tiny_model import build_tiny_model

        folder = Path(args.workdir) / "tiny-qwen2.5-vl"
        model = str(folder if (folder / "config.json").exists() else build_tiny_model(folder))
    requests = make_requests(args.requests, args.frames, args.width, args.height, args.max_tokens)
    results = {size: measure(size, model, args, requests) for size in args.sizes}

    base = results[args.sizes[0]]["caption_s"]
    shape = f"{args.frames} frames of {args.width}x{args.height}"
    print(f"{args.requests} requests, {shape}, {args.max_tokens} tokens each")
    print("| engines | start-up s | captioning s | requests/s | captioning time vs first |")
    print("|---|---|---|---|---|")
    for size, r in results.items():
        print(
            f"| {size} | {r['start_s']:.1f} | {r['caption_s']:.2f} | {args.requests / r['caption_s']:.2f} "
            f"| {r['caption_s'] / base:.2f}x |"
        )


if __name__ == "__main__":  # the engines' processes are spawned: they import this module again
    main()
