#!/usr/bin/env python
"""The streaming feed, measured side by side in one process on one real vLLM engine (CPU build).

One engine instance, one prepared workload (short real clips; every record's caption length
forced with ``min_tokens = max_tokens = n``, n drawn from a seeded log-normal, clipped), and:

1. **streaming vs batch-synchronous**, on requests whose frames were decoded beforehand (so only
   the scheduling differs): *batch-sync* submits ``--batch-size`` requests and waits until all
   have finished before the next batch (vidcap's ``engine.generate(batch)`` before the feed);
   *streaming* keeps ``max_in_flight`` requests in the engine and refills as each finishes
   (``engine.submit`` / ``engine.collect``, what the feed does). Both run on an engine whose
   scheduler holds at most ``--max-num-seqs`` sequences at once, ``--batch-size`` by default:
   neither side may run more sequences at a time than the other; what differs is only whether a
   finished sequence's place is refilled at once or when its whole batch is done.
2. **vidcap vs the ideal**: the ideal is every record's frames decoded beforehand and one
   ``LLM.generate`` over all of them (vLLM's own batching; decoding not timed); vidcap is the real
   run path (``run_captioning``: decode workers, the feed, the writer) on the same records.
3. **busy fraction** of a generation-bound vidcap run (short clips, ``--busy-tokens`` each), read
   from the run summary's ``engine`` object.

The forced lengths reach vidcap's own run through a thin subclass of the engine that adds them
to each request's ``sampling`` by request id (the record's index): the feed itself is untouched.

    PYTHONPATH=src .venv/bin/python scripts/bench_feed.py --records 128 --rounds 1

Captions of the tiny random-weight model are noise; this measures scheduling and plumbing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CLIPS = [  # (name, seconds, fps, width, height): short, small real h264 clips
    ("c0.mp4", 2.0, 10, 160, 120),
    ("c1.mp4", 3.0, 24, 176, 144),
    ("c2.mp4", 2.0, 25, 128, 96),
    ("c3.mp4", 2.5, 12, 96, 160),
]


def make_dataset(folder: Path, name: str, records: int) -> Path:
    """Clips in ``folder`` and a JSON Lines input of ``records`` records cycling over them."""
    from vidcap.video.synthetic import make_clip

    folder.mkdir(parents=True, exist_ok=True)
    for clip, seconds, fps, width, height in CLIPS:
        if not (folder / clip).exists():
            make_clip(folder / clip, seconds=seconds, fps=fps, width=width, height=height)
    data = folder / f"{name}.jsonl"
    with data.open("w") as f:
        for i in range(records):
            f.write(json.dumps({"id": i, "video": CLIPS[i % len(CLIPS)][0]}) + "\n")
    return data


def draw_lengths(count: int, *, median: float, sigma: float, low: int, high: int, seed: int) -> list[int]:
    """Caption lengths from a seeded log-normal (long tail to the right), clipped to [low, high]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    drawn = rng.lognormal(mean=np.log(median), sigma=sigma, size=count)
    return [int(min(high, max(low, round(x)))) for x in drawn]


def forced(n: int) -> dict[str, int]:
    """Per-request sampling that makes a caption exactly ``n`` tokens long."""
    return {"min_tokens": n, "max_tokens": n}


def bench_engine_class() -> type:
    """``VllmEngine`` with forced caption lengths by request id, keeping what it was given."""
    from vidcap.engines.vllm_engine import VllmEngine

    class BenchEngine(VllmEngine):
        """Adds ``lengths[request_id]`` to a request's sampling (when it has none of its own)."""

        lengths: dict[str, int]
        captured: list[Any] | None = None
        first_submit: float | None = None  # time.monotonic() of the first submit since reset

        def submit(self, requests: list[Any]) -> list[Any]:
            if self.first_submit is None:
                self.first_submit = time.monotonic()
            changed = []
            for request in requests:
                n = self.lengths.get(request.request_id)
                if n is not None and not request.sampling:
                    request = dataclasses.replace(request, sampling=forced(n))
                if self.captured is not None:
                    self.captured.append(request)
                changed.append(request)
            return super().submit(changed)

    return BenchEngine


def run_vidcap(engine: Any, data: Path, out: Path, args: argparse.Namespace) -> tuple[float, dict]:
    """The real run path in this process, with ``engine``; (wall seconds, summary)."""
    from vidcap.config import build_config
    from vidcap.executors.job import run_captioning

    config = build_config(
        {},
        {
            "input": str(data),
            "output": str(out),
            "model": engine.config.model,
            "decode_workers": args.decode_workers,
            "batch_size": args.batch_size,
            "fps": 2.0,
            "overwrite": True,
        },
    )
    engine.first_submit = None
    started, cpu = time.monotonic(), time.process_time()
    result = run_captioning(config, engine)
    wall = time.monotonic() - started
    # CPU of this process (main thread, feed, decode pool's threads; not the workers, not the
    # engine core): what the main process takes from the cores the others need.
    result.summary_data["main_cpu_s"] = time.process_time() - cpu
    # Until the first request reaches the engine: checks, spawning the decode worker, first decode.
    result.summary_data["first_submit_s"] = (engine.first_submit or started) - started
    # Every record answered; an error record here is the assessment's (random weights can give an
    # empty caption), not the engine's: the forced token counts are checked by the caller.
    stats = result.stats
    if not result.complete or stats.processed != result.records_in_shard:
        sys.exit(f"vidcap run on {data.name} did not finish: {stats.processed} records written")
    return wall, result.summary_data


def batch_sync(engine: Any, requests: list[Any], batch_size: int) -> tuple[float, int]:
    """Batch by batch: each waits for its last caption (vidcap's ``generate(batch)`` before)."""
    started = time.monotonic()
    tokens = 0
    for i in range(0, len(requests), batch_size):
        outputs = engine.generate(requests[i : i + batch_size])
        tokens += sum(check(o).generated_tokens for o in outputs)
    return time.monotonic() - started, tokens


def streaming(engine: Any, requests: list[Any], max_in_flight: int) -> tuple[float, int]:
    """Up to ``max_in_flight`` in the engine, refilled as each finishes (what the feed does)."""
    started = time.monotonic()
    todo = list(reversed(requests))
    tokens = 0
    while todo or engine.in_flight:
        room = max_in_flight - engine.in_flight
        if todo and room > 0:
            batch = [todo.pop() for _ in range(min(room, len(todo)))]
            for refused in engine.submit(batch):
                check(refused)
        for output in engine.collect(wait=True):
            tokens += check(output).generated_tokens
    return time.monotonic() - started, tokens


def ideal(engine: Any, requests: list[Any]) -> tuple[float, int]:
    """Frames decoded beforehand (``requests``), then one ``LLM.generate`` over everything."""
    from vllm import SamplingParams

    from vidcap.engines.chat import fixed_size_kwargs, render_prompt
    from vidcap.model.processor import load_processor

    processor = load_processor(engine.config)
    base = {"n": 1, "seed": engine.generation.seed, **engine.sampling().values}
    prompts, params = [], []
    for request in requests:  # the prompt vidcap's engine sends (VllmEngine._prompt)
        prompts.append(
            {
                "prompt": render_prompt(processor, request),
                "multi_modal_data": {"video": [(v.frames, v.metadata) for v in request.videos]},
                "mm_processor_kwargs": fixed_size_kwargs(request),
            }
        )
        params.append(SamplingParams(**{**base, **request.sampling}))
    llm = engine._llm  # the same vllm.LLM instance (no public accessor; a benchmark's liberty)
    started = time.monotonic()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    wall = time.monotonic() - started
    return wall, sum(len(c.token_ids) for o in outputs for c in o.outputs)


def decode_scaling(engine: Any, seqs: int, tokens: int = 128) -> tuple[float, float]:
    """Seconds per decode step with 1 and with ``seqs`` sequences running (text-only prompts,
    ``tokens`` forced tokens each): how much a step's cost grows with the sequences in it."""
    from vidcap.engines.caption_engine import CaptionRequest

    steps = []
    for count in (1, seqs):
        sampling = forced(tokens)
        batch = [
            CaptionRequest(f"scale-{count}-{i}", "Describe.", [], sampling=sampling) for i in range(count)
        ]
        started = time.monotonic()
        for output in engine.generate(batch):
            check(output)
        steps.append((time.monotonic() - started) / tokens)
    return steps[0], steps[1]


def check(output: Any) -> Any:
    if output.error is not None:
        sys.exit(f"request {output.request_id} failed: {output.error}")
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=128, help="records of the varied-length workload")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-num-seqs", type=int, default=None, help="vLLM's; default: --batch-size")
    parser.add_argument("--max-in-flight", type=int, default=None, help="streaming; default: vidcap's")
    parser.add_argument("--median-tokens", type=float, default=24.0)
    parser.add_argument("--sigma", type=float, default=1.0, help="log-normal sigma of the lengths")
    parser.add_argument("--min-tokens", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--busy-records", type=int, default=64, help="records of the busy-fraction run")
    parser.add_argument("--busy-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the four sides, order alternating")
    parser.add_argument("--decode-workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    from vidcap.config import EngineConfig
    from vidcap.engines.caption_engine import GenerationOptions
    from vidcap.tiny_model import build_tiny_model

    work = args.workdir or Path(tempfile.mkdtemp(prefix="vidcap-bench-feed-"))
    model = work / "tiny-model"
    if not (model / "config.json").exists():
        build_tiny_model(model)
    clips = work / "clips"
    data = make_dataset(clips, f"varied-{args.records}", args.records)
    busy_data = make_dataset(clips, f"busy-{args.busy_records}", args.busy_records)
    lengths = draw_lengths(
        args.records,
        median=args.median_tokens,
        sigma=args.sigma,
        low=args.min_tokens,
        high=args.max_tokens,
        seed=args.seed,
    )
    seqs = args.max_num_seqs or args.batch_size
    engine = bench_engine_class()(
        EngineConfig(
            model=str(model),
            max_model_len=4096,
            gpu_memory_utilization=0.1,
            enforce_eager=True,
            engine_kwargs={"max_num_seqs": seqs},
        ),
        GenerationOptions(max_tokens=args.max_tokens, temperature=0.7, top_p=0.9, seed=args.seed),
    )
    started = time.monotonic()
    engine.start(max_videos_per_prompt=1)
    print(f"engine started in {time.monotonic() - started:.1f} s (max_num_seqs {seqs})", file=sys.stderr)
    limit = args.max_in_flight or engine.max_in_flight(args.batch_size)

    # Warm-up, and the requests exactly as vidcap builds them (frames decoded by its workers):
    # a vidcap run with every caption one token long.
    engine.lengths = {str(i): 1 for i in range(args.records)}
    engine.captured = []
    run_vidcap(engine, data, work / "warmup.jsonl", args)
    captured = sorted(engine.captured, key=lambda r: int(r.request_id))
    engine.captured = None
    requests = [dataclasses.replace(r, sampling=forced(n)) for r, n in zip(captured, lengths, strict=True)]
    expected = sum(lengths)

    walls: dict[str, list[float]] = {"batch-sync": [], "streaming": [], "ideal": [], "vidcap": []}
    summaries: list[dict] = []
    for round_ in range(args.rounds):
        order = list(walls) if round_ % 2 == 0 else list(reversed(walls))
        for side in order:
            if side == "batch-sync":
                wall, tokens = batch_sync(engine, requests, args.batch_size)
            elif side == "streaming":
                wall, tokens = streaming(engine, requests, limit)
            elif side == "ideal":
                wall, tokens = ideal(engine, requests)
            else:
                engine.lengths = {str(i): n for i, n in enumerate(lengths)}
                wall, summary = run_vidcap(engine, data, work / "varied.jsonl", args)
                tokens = summary["stats"]["generated_tokens"]
                summaries.append(summary)
            if tokens != expected:
                sys.exit(f"{side}: {tokens} tokens generated, {expected} forced: the lengths did not hold")
            walls[side].append(wall)
            print(f"round {round_ + 1} {side}: {wall:.2f} s", file=sys.stderr)

    # Where the time goes on this engine: the same prompts with one generated token each (the
    # prefill, vision encoder and input processing, nearly no decoding), one LLM.generate.
    prefill_wall, _ = ideal(engine, [dataclasses.replace(r, sampling=forced(1)) for r in requests])
    prompt_tokens = summaries[-1]["prompt_tokens"]
    step_1, step_n = decode_scaling(engine, seqs)
    engine.lengths = {str(i): args.busy_tokens for i in range(args.busy_records)}
    busy_wall, busy = run_vidcap(engine, busy_data, work / "busy.jsonl", args)
    engine.close()

    med = {side: statistics.median(v) for side, v in walls.items()}
    print(
        f"\n{args.records} records, caption lengths log-normal (median {args.median_tokens:g}, sigma "
        f"{args.sigma:g}, clipped to [{args.min_tokens}, {args.max_tokens}]): {expected} tokens, mean "
        f"{expected / args.records:.1f}, max {max(lengths)}; batch {args.batch_size}, max_num_seqs {seqs}, "
        f"streaming max_in_flight {limit}; median of {args.rounds} round(s)\n"
    )
    print("| side | wall s | tokens/s |")
    print("|---|---|---|")
    for side, wall in med.items():
        print(f"| {side} | {wall:.2f} | {expected / wall:.0f} |")
    print(f"\nstreaming vs batch-sync: **{med['batch-sync'] / med['streaming']:.2f}x** (target >= 1.3x)")
    print(f"vidcap / ideal: **{med['vidcap'] / med['ideal']:.2f}x** (target <= 1.15x)")
    print(f"streaming (engine only) / ideal: {med['streaming'] / med['ideal']:.2f}x")
    for i in range(args.rounds):  # the load of a shared machine moves single rounds: show them
        print(
            f"round {i + 1}: streaming vs batch-sync {walls['batch-sync'][i] / walls['streaming'][i]:.2f}x, "
            f"vidcap / ideal {walls['vidcap'][i] / walls['ideal'][i]:.2f}x"
        )
    print(
        f"prefill only ({prompt_tokens} prompt tokens, 1 generated token a record, one LLM.generate): "
        f"{prefill_wall:.2f} s = {prefill_wall / med['ideal']:.0%} of the ideal's wall"
    )
    print(
        f"decode step, text-only: {step_1 * 1000:.1f} ms with 1 sequence, "
        f"{step_n * 1000:.1f} ms with {seqs}: "
        f"{seqs} sequences step {step_n / step_1:.1f}x slower ({seqs * step_1 / step_n:.1f}x the tokens/s)"
    )
    for i, summary in enumerate(summaries, start=1):
        stages = summary["engine"]["stages_s"]
        print(
            f"vidcap round {i}: decode workers {stages['decode_workers']:.2f} s; ideal + that decoding, "
            f"serially: {med['ideal'] + stages['decode_workers']:.2f} s"
        )
        print(
            f"vidcap round {i}: first request submitted {summary['first_submit_s']:.2f} s into the run; "
            f"main process CPU {summary['main_cpu_s']:.2f} s"
        )
        print(f"vidcap round {i} engine: {json.dumps(summary['engine'])}")
    eng = busy["engine"]
    print(
        f"\nbusy run: {args.busy_records} records x {args.busy_tokens} tokens in {busy_wall:.2f} s: "
        f"busy_fraction **{eng['busy_fraction']}** (target >= 0.9)"
    )
    idle = eng["seconds"] - eng["busy_s"]
    print(
        f"busy run: engine idle {idle:.2f} s of {eng['seconds']:.2f} s; first request submitted "
        f"{busy['first_submit_s']:.2f} s into the run"
    )
    print(f"busy run engine: {json.dumps(eng)}")


if __name__ == "__main__":
    main()
