#!/usr/bin/env python
"""End-to-end benchmark on the tiny model: vidcap's pipelined run vs decode-everything-then-generate.

Side A is the real ``vidcap run`` (decode workers ahead of the engine, batch by batch).
Side B is the DataFlow-style path: qwen-vl-utils ``process_vision_info`` on every record
first (decord backend, as DataFlow does), then one ``LLM.generate`` over all of them.
Both use the same engine settings, the same clips and the same frame plan (fps 2). Each
side runs in a fresh process; the peak RSS of its whole process tree (main process, engine
core, decode workers) is sampled every 50 ms. The sides alternate over ``--repeat`` rounds.

Then memory scaling: peak RSS of ``vidcap run`` on 8 and on 64 records.

    .venv/bin/python scripts/bench_pipeline.py --records 240 --repeat 2

The tiny model's captions are noise; this measures the plumbing (decode, transfer,
scheduling), which is what the pipeline changes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ENGINE = {"max_model_len": 4096, "gpu_memory_utilization": 0.1, "enforce_eager": True, "max_tokens": 16}
CLIPS = [  # (name, seconds, fps, width, height): short real h264 clips
    ("c0.mp4", 4.0, 24, 320, 240),
    ("c1.mp4", 6.0, 30, 480, 270),
    ("c2.mp4", 3.0, 25, 256, 256),
    ("c3.mp4", 5.0, 24, 360, 640),
]


def make_dataset(folder: Path, records: int) -> Path:
    from vidcap.video.synthetic import make_clip

    folder.mkdir(parents=True, exist_ok=True)
    for name, seconds, fps, width, height in CLIPS:
        if not (folder / name).exists():
            make_clip(folder / name, seconds=seconds, fps=fps, width=width, height=height)
    data = folder / f"data-{records}.jsonl"
    with data.open("w") as f:
        for i in range(records):
            f.write(json.dumps({"id": i, "video": CLIPS[i % len(CLIPS)][0]}) + "\n")
    return data


def peak_tree_rss(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run ``cmd``; return (wall seconds, peak RSS of its process tree in MiB, exit code)."""
    import psutil

    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, stderr = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode != 0:
        print(stderr[-2000:], file=sys.stderr)
    return time.monotonic() - start, peak / 2**20, proc.returncode


def vidcap_cmd(model: Path, data: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "vidcap", "run", "-i", str(data), "-o", str(out), "-m", str(model),
        "--overwrite", "--quiet", "--batch-size", "32", "--fps", "2",
        "--max-model-len", str(ENGINE["max_model_len"]),
        "--gpu-memory-utilization", str(ENGINE["gpu_memory_utilization"]),
        "--enforce-eager", "--max-tokens", str(ENGINE["max_tokens"]),
        "--temperature", "0.7", "--top-p", "0.9", "--seed", "0",
    ]  # fmt: skip


def baseline_main(model: str, data: str) -> None:
    """Side B, in its own process: decode every record with qwen-vl-utils, then generate all."""
    os.environ["FORCE_QWENVL_VIDEO_READER"] = "decord"
    from qwen_vl_utils import process_vision_info
    from transformers import AutoProcessor
    from vllm import LLM, SamplingParams

    llm = LLM(
        model,
        max_model_len=ENGINE["max_model_len"],
        gpu_memory_utilization=ENGINE["gpu_memory_utilization"],
        enforce_eager=True,
        limit_mm_per_prompt={"video": 1, "image": 0},
        # As vidcap does for seeded runs on vLLM's CPU build (its engine dies on chunked,
        # seeded prefills): both sides run the same engine settings.
        enable_chunked_prefill=False,
    )
    processor = AutoProcessor.from_pretrained(model)
    folder = Path(data).parent
    inputs = []
    for line in Path(data).read_text().splitlines():
        record = json.loads(line)
        messages = [
            {
                "role": "user",
                "content": [
                    {"type": "video", "video": str(folder / record["video"]), "fps": 2.0},
                    {"type": "text", "text": "Please describe the video in detail."},
                ],
            }
        ]
        prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        _, videos, _ = process_vision_info(messages, return_video_kwargs=True, return_video_metadata=True)
        video, metadata = videos[0]
        metadata = {**metadata, "frames_indices": list(metadata["frames_indices"]), "do_sample_frames": False}
        inputs.append({"prompt": prompt, "multi_modal_data": {"video": (video, metadata)}})
    # The same sampling as side A (greedy decoding makes the random model stop at once).
    params = SamplingParams(max_tokens=ENGINE["max_tokens"], temperature=0.7, top_p=0.9, seed=0)
    outputs = llm.generate(inputs, params, use_tqdm=False)
    assert len(outputs) == len(inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=240)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--baseline", nargs=2, metavar=("MODEL", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        baseline_main(*args.baseline)
        return

    from vidcap.tiny_model import build_tiny_model

    work = args.workdir or Path(tempfile.mkdtemp(prefix="vidcap-bench-"))
    model = work / "tiny-model"
    if not (model / "config.json").exists():
        build_tiny_model(model)
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "ERROR", "TOKENIZERS_PARALLELISM": "false"}
    data = make_dataset(work / "clips", args.records)

    results: dict[str, list[tuple[float, float]]] = {"vidcap": [], "baseline": []}
    for round_ in range(args.repeat):
        order = ["vidcap", "baseline"] if round_ % 2 == 0 else ["baseline", "vidcap"]
        for side in order:
            if side == "vidcap":
                cmd = vidcap_cmd(model, data, work / "out.jsonl")
            else:
                cmd = [sys.executable, __file__, "--baseline", str(model), str(data)]
            wall, rss, code = peak_tree_rss(cmd, env)
            if code != 0:
                sys.exit(f"{side} failed with exit code {code}")
            results[side].append((wall, rss))
            print(f"round {round_ + 1} {side}: {wall:.1f} s, peak RSS {rss:.0f} MiB", file=sys.stderr)

    scaling = {}
    for n in (8, 64):
        cmd = vidcap_cmd(model, make_dataset(work / "clips", n), work / "s.jsonl")
        wall, rss, code = peak_tree_rss(cmd, env)
        if code != 0:
            sys.exit(f"vidcap on {n} records failed")
        scaling[n] = rss
        print(f"scaling {n} records: {wall:.1f} s, peak RSS {rss:.0f} MiB", file=sys.stderr)

    def med(side: str, i: int) -> float:
        return statistics.median(r[i] for r in results[side])

    vw, vr, bw, br = med("vidcap", 0), med("vidcap", 1), med("baseline", 0), med("baseline", 1)
    print(f"\nEnd to end, {args.records} clips, tiny model, median of {args.repeat} (lower is better):\n")
    print("| side | wall time (s) | peak RSS, whole process tree (MiB) |")
    print("|---|---|---|")
    print(f"| vidcap run (pipelined) | {vw:.1f} | {vr:.0f} |")
    print(f"| decode everything, then generate (qwen-vl-utils + LLM.generate) | {bw:.1f} | {br:.0f} |")
    print(f"| **ratio baseline / vidcap** | **{bw / vw:.2f}x** | **{br / vr:.2f}x** |")
    print(f"\nMemory scaling: peak RSS with 8 records {scaling[8]:.0f} MiB, with 64 {scaling[64]:.0f} MiB:")
    print(f"64/8 = **{scaling[64] / scaling[8]:.3f}x** (target <= 1.25x)")


if __name__ == "__main__":
    main()
