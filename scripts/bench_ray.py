#!/usr/bin/env python
"""The Ray executor's overhead: ``vidcap run --executor ray`` against the local executor, in one script.

Both runs caption the same ``--records`` records (generated clips, ``--seed 0``, the same model and
engine settings) with the real ``vidcap run`` command, one after the other on this machine. The
Ray run connects to ``--ray-address`` when given, else it starts a local Ray itself (one node: one
engine actor, decoding in Ray tasks), which is what it measures here: what Ray adds (actors, the
object store, tasks) on the same cores and the same single engine, not a speed-up. Each run's
summary gives its model load time and its captioning time (from the first record to the last
written); the script prints both, the ratio of captioning times, and checks that the two outputs
hold the same records.

Without ``--model`` it builds the tiny random-weight Qwen2.5-VL of the tests in ``--workdir``.

    .venv/bin/python scripts/bench_ray.py --records 48
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def make_input(workdir: Path, records: int) -> Path:
    """``records`` records over four generated clips of different sizes, rates and codecs."""
    from vidcap.video.synthetic import make_clip

    clips = workdir / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    specs = [
        ("a.mp4", {"seconds": 4.0, "fps": 24, "width": 320, "height": 240}),
        ("b.mp4", {"seconds": 3.0, "fps": 30, "width": 256, "height": 192}),
        ("c.avi", {"seconds": 4.0, "fps": 25, "width": 320, "height": 180, "codec": "mpeg4"}),
        ("d.mkv", {"seconds": 2.0, "fps": 12, "width": 192, "height": 256}),
    ]
    for name, spec in specs:
        if not (clips / name).exists():
            make_clip(clips / name, **spec)
    data = workdir / "data.jsonl"
    lines = [json.dumps({"id": f"{i:04d}", "video": f"clips/{specs[i % 4][0]}"}) for i in range(records)]
    data.write_text("\n".join(lines) + "\n")
    return data


def run(name: str, data: Path, model: str, args: argparse.Namespace, extra: list[str]) -> dict:
    """One ``vidcap run``; its summary's times and its records."""
    out = data.with_name(f"{name}.jsonl")
    command = [sys.executable, "-m", "vidcap", "run", str(data), "-o", str(out), "-m", model, "--overwrite"]
    command += ["--max-model-len", "4096", "--gpu-memory-utilization", str(args.gpu_memory_utilization)]
    command += ["--enforce-eager", "--max-tokens", str(args.max_tokens), "--seed", "0", "-q", *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{name} run failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    stats = summary["stats"]
    return {
        "load_s": stats["load_s"],
        "caption_s": stats["caption_s"],
        "elapsed_s": summary.get("elapsed_s", stats.get("elapsed_s")),
        "records": [json.loads(line) for line in out.read_text().splitlines()],
        "busy": summary["engine"].get("busy_fraction"),
    }


def main() -> None:
    """Parse the options, run local then Ray, print the table."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--model", help="model folder or hub id (default: the tiny test model)")
    parser.add_argument("--workdir", default="/tmp/vidcap-bench-ray")
    parser.add_argument("--records", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.05)
    parser.add_argument("--ray-address", help="a running cluster (default: a local Ray started by the run)")
    args = parser.parse_args()

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        from vidcap.tiny_model import build_tiny_model

        folder = workdir / "tiny-qwen2.5-vl"
        model = str(folder if (folder / "config.json").exists() else build_tiny_model(folder))
    data = make_input(workdir, args.records)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray_flags = ["--executor", "ray"] + (["--ray-address", args.ray_address] if args.ray_address else [])
    results = {
        "local": run("local", data, model, args, []),
        "ray": run("ray", data, model, args, ray_flags),
    }
    same = results["local"]["records"] == results["ray"]["records"]
    base = results["local"]["caption_s"]
    print(f"{args.records} records, --max-tokens {args.max_tokens}, seed 0; same records: {same}")
    print("| executor | model load s | captioning s | records/s captioning | engine busy | vs local |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['load_s']:.1f} | {r['caption_s']:.2f} | {args.records / r['caption_s']:.2f} "
            f"| {r['busy']} | {r['caption_s'] / base:.2f}x |"
        )
    if not same:
        raise SystemExit("the two runs wrote different records")


if __name__ == "__main__":
    main()
