"""Benchmark vidcap's ``load_video`` against qwen-vl-utils' ``fetch_video`` (decord backend).

Both sides get the same videos and make the same frame plan (asserted: frame indices, count
and size). Each measurement runs in a fresh subprocess, so that peak RSS belongs to one
decode; a tiny warm-up clip is decoded first in that process, so one-time library start-up
is not timed. Sides alternate within each repeat to spread machine noise; medians are
reported.

    .venv/bin/python scripts/bench_decode.py                 # 720p 30 s + 1080p 20 s, 3 repeats
    .venv/bin/python scripts/bench_decode.py --clips 720:10 --repeats 1   # a quick look
    # vidcap from another source tree beside this one (before/after a change), on AVI/MPEG-4:
    .venv/bin/python scripts/bench_decode.py --baseline-src /tmp/main/src --codec mpeg4 --ext avi

Clips are synthetic (``vidcap.video.synthetic.make_clip``: by default h264, default libx264 settings,
30 fps) and are generated into a temporary folder (``--workdir`` keeps and reuses them).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {"720": (1280, 720), "1080": (1920, 1080)}


def _rss_mb() -> float:
    """Peak RSS of this process in MiB.

    VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child forked from a parent that
    just encoded clips would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(side: str, path: str, warmup: str, threads: int, args: argparse.Namespace) -> None:
    """One measurement, printed as JSON: runs in its own process."""
    fps, resize, save = args.fps, args.resize, args.save
    kept: list = []
    if side == "vidcap":
        from vidcap.video.load import load_video
        from vidcap.video.types import SamplingOptions

        options = SamplingOptions(fps=fps)

        def run(video: str) -> tuple[tuple[int, ...], list[int]]:
            loaded = load_video(video, options, threads=threads, resize=resize)  # type: ignore[arg-type]
            kept[:] = [loaded.frames]
            return tuple(loaded.frames.shape), list(loaded.plan.frame_indices)

    else:
        os.environ["FORCE_QWENVL_VIDEO_READER"] = "decord"
        import decord
        import torch
        from qwen_vl_utils import vision_process

        if threads:
            # What can be capped: decord's decoder threads and torch's intra-op threads.
            # decord still runs its decoder in a thread of its own beside the caller's.
            torch.set_num_threads(threads)
            reader = decord.VideoReader

            def capped(*args, **kwargs):
                kwargs.setdefault("num_threads", threads)
                return reader(*args, **kwargs)

            decord.VideoReader = capped  # type: ignore[misc]

        def run(video: str) -> tuple[tuple[int, ...], list[int]]:
            frames, meta = vision_process.fetch_video(
                {"video": video, "fps": fps}, return_video_metadata=True
            )
            t, c, h, w = frames.shape
            kept[:] = [frames]
            return (t, h, w, c), [int(i) for i in meta["frames_indices"]]

    run(warmup)
    baseline = _rss_mb()
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    shape, indices = run(path)
    seconds = time.perf_counter() - start
    result = {
        "seconds": seconds,
        "cpu": _cpu_seconds() - cpu_before,
        "shape": shape,
        "indices": indices,
        "rss_mb": _rss_mb(),
        "base_mb": baseline,
    }
    print(json.dumps(result))
    if save:  # after timing: the frames as uint8 (N, H, W, 3), for a pixel comparison
        import numpy as np

        frames = kept[0]
        if side != "vidcap":
            frames = frames.clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()
        np.save(save, np.ascontiguousarray(frames))


def _measure(
    side: str, clip: Path, warmup: Path, threads: int, args: argparse.Namespace, save: Path | None
) -> dict:
    worker_side = "vidcap" if side == "baseline" else side
    command = [sys.executable, __file__, "--worker", worker_side, str(clip), str(warmup), str(threads)]
    command += ["--fps", str(args.fps), "--resize", args.resize]
    command += ["--save", str(save)] if save else []
    env = dict(os.environ, FORCE_QWENVL_VIDEO_READER="decord")
    if side == "baseline":  # the same worker, importing vidcap from the other tree
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.baseline_src, env.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{side} worker failed on {clip}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _make_clips(workdir: Path, specs: list[str], args: argparse.Namespace) -> list[Path]:
    from vidcap.video.synthetic import make_clip

    clips = []
    name = {"libx264": "h264"}.get(args.codec, args.codec)
    options = {"bf": "2"} if args.codec == "mpeg4" else None  # FFmpeg's mpeg4 defaults to no B-frames
    for spec in specs:
        size, seconds = spec.split(":")
        width, height = SIZES[size]
        path = workdir / f"{name}_{size}p_{seconds}s.{args.ext}"
        if not path.exists():
            start = time.perf_counter()
            partial = path.with_suffix(f".part.{args.ext}")
            encoder = {"codec": args.codec, "options": options}
            make_clip(partial, seconds=float(seconds), fps=30, width=width, height=height, **encoder)
            partial.rename(path)
            print(f"made {path.name} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        clips.append(path)
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", default="720:30,1080:20", help="SIZE:SECONDS,... (SIZE 720 or 1080)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2, help="vidcap decoder threads (default run)")
    parser.add_argument(
        "--single-thread-clip", default="1080", help="also run threads=1 on this size ('' skips)"
    )
    parser.add_argument("--resize", default="reference", choices=["reference", "fast"])
    parser.add_argument("--save", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help="keep clips here and reuse them (default: a temp folder)")
    parser.add_argument(
        "--codec", default="libx264", help="encoder of the synthetic clips (mpeg4: with B-frames)"
    )
    parser.add_argument("--ext", default="mp4", help="container of the synthetic clips, by extension")
    parser.add_argument(
        "--baseline-src",
        help="also time vidcap imported from this source folder (e.g. main's src/), side by side",
    )
    parser.add_argument(
        "--worker", nargs=4, metavar=("SIDE", "CLIP", "WARMUP", "THREADS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        side, clip, warmup, threads = args.worker
        worker(side, clip, warmup, int(threads), args)
        return

    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(args.workdir) if args.workdir else Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        from vidcap.video.synthetic import make_clip

        warmup = workdir / "warmup.mp4"
        if not warmup.exists():
            make_clip(warmup, seconds=1.0, fps=30, width=320, height=240)
        clips = _make_clips(workdir, args.clips.split(","), args)

        # (clip, label, vidcap threads, reference threads: 0 = its defaults)
        runs = [(clip, "default", args.threads, 0) for clip in clips]
        runs += [
            (c, "1 thread", 1, 1)
            for c in clips
            if args.single_thread_clip and f"_{args.single_thread_clip}p_" in c.name
        ]
        results: dict[tuple[str, str, str], list[dict]] = {}
        for repeat in range(args.repeats):
            for clip, label, ours, theirs in runs:
                sides = [("vidcap", ours), ("qwen-vl-utils", theirs)]
                if args.baseline_src:
                    sides.insert(1, ("baseline", ours))
                for side, threads in sides if repeat % 2 == 0 else sides[::-1]:
                    which = {"vidcap": "vidcap", "baseline": "baseline"}.get(side, "reference")
                    save = (
                        workdir / f"{clip.stem}.{which}.npy" if repeat == 0 and label == "default" else None
                    )
                    result = _measure(which, clip, warmup, threads, args, save)
                    results.setdefault((clip.name, label, side), []).append(result)
                    print(f"{clip.name} {label} {side}: {result['seconds']:.2f} s", file=sys.stderr)

        _report(runs, results, args)
        if args.baseline_src:
            print("\nvidcap wall time / baseline wall time (medians; < 1 is faster):")
            for clip, label, _, _ in runs:
                mine = statistics.median(r["seconds"] for r in results[(clip.name, label, "vidcap")])
                base = statistics.median(r["seconds"] for r in results[(clip.name, label, "baseline")])
                print(f"  {clip.stem} {label}: {mine / base:.3f}")
        print()
        for clip in clips:  # how close the pictures are, not just how fast
            import numpy as np

            ours = np.load(workdir / f"{clip.stem}.vidcap.npy").astype(np.int16)
            theirs = np.load(workdir / f"{clip.stem}.reference.npy").astype(np.int16)
            diff = np.abs(ours - theirs)
            print(
                f"{clip.stem}: vidcap vs qwen-vl-utils pixels: mean abs diff {diff.mean():.3f}, "
                f"p99 {np.percentile(diff, 99):.0f}, max {diff.max()} (of 255)"
            )


def _report(runs: list, results: dict, args: argparse.Namespace) -> None:
    """Markdown table of medians; speed-up = reference time / vidcap time (wall and CPU)."""
    print(f"\nfps={args.fps}, resize={args.resize}, medians of {args.repeats} runs\n")
    print(
        "| clip | threads | decoder | frames | wall s | frames/s | speed-up | CPU s "
        "| CPU speed-up | peak RSS MiB | RSS growth MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for clip, label, _, _ in runs:
        ours = results[(clip.name, label, "vidcap")]
        ref = results[(clip.name, label, "qwen-vl-utils")]
        # Same plan on both sides, or the comparison means nothing.
        assert ours[0]["shape"] == ref[0]["shape"], (ours[0]["shape"], ref[0]["shape"])
        assert ours[0]["indices"] == ref[0]["indices"], "frame plans differ"
        frames = ours[0]["shape"][0]
        ref_wall = statistics.median(r["seconds"] for r in ref)
        ref_cpu = statistics.median(r["cpu"] for r in ref)
        sides = [("vidcap", ours), ("qwen-vl-utils", ref)]
        if args.baseline_src:
            base = results[(clip.name, label, "baseline")]
            assert base[0]["indices"] == ours[0]["indices"], "baseline frame plan differs"
            sides.insert(1, ("baseline", base))
        for side, rows in sides:
            wall = statistics.median(r["seconds"] for r in rows)
            cpu = statistics.median(r["cpu"] for r in rows)
            rss = statistics.median(r["rss_mb"] for r in rows)
            grown = statistics.median(r["rss_mb"] - r["base_mb"] for r in rows)
            ours_side = side in ("vidcap", "baseline")
            speed = f"**{ref_wall / wall:.2f}x**" if ours_side else "1x"
            cpu_speed = f"{ref_cpu / cpu:.2f}x" if ours_side else "1x"
            print(
                f"| {clip.stem} | {label} | {side} | {frames} | {wall:.2f} | {frames / wall:.1f} "
                f"| {speed} | {cpu:.2f} | {cpu_speed} | {rss:.0f} | {grown:.0f} |"
            )


if __name__ == "__main__":
    main()
