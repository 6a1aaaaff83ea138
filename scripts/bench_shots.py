"""Measure shot-boundary detection: precision and recall per detector, and frames per CPU second.

Builds videos of FFmpeg test sources joined at known frames (``vidcap.shot_corpus``): one set
with hard cuts only, one whose transitions are all dissolves or fades of 0.5-1 s. A detected
cut matches a hard cut within 2 frames, a gradual transition anywhere from its first blended
frame to the first frame after it; each true transition matches at most one detection.

    python scripts/bench_shots.py [--videos 8] [--shots 12] [--folder DIR] [--scenedetect CLI]
        [--size 320x240]

``--scenedetect``: PySceneDetect's ``scenedetect`` command (installed in a venv of its own: it
pulls OpenCV), run on the same files with ``detect-content`` and ``detect-adaptive`` (its
defaults); its CPU time is the child processes', start-up included, which is also shown alone.
"""

from __future__ import annotations

import argparse
import csv
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from vidcap.shot_corpus import Transition, build_video
from vidcap.video.shots import DETECTORS, find_cuts, scan_video


def match(found: list[int], truth: list[Transition]) -> int:
    """True transitions matched by a detection (greedy, each detection used once)."""
    used: set[int] = set()
    hits = 0
    for t in truth:
        low, high = (t.first - 2, t.first + 2) if t.kind == "cut" else (t.first, t.last + 1)
        pick = next((c for c in found if low <= c <= high and c not in used), None)
        if pick is not None:
            used.add(pick)
            hits += 1
    return hits


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def scenedetect_cuts(cli: str, video: Path, command: str, out: Path) -> list[int]:
    """Cut frames (0-based: each scene's first frame after the first) found by PySceneDetect's CLI."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [cli, "-q", "-i", str(video), "-o", str(out), command, "list-scenes", "-q"],
        check=True,
        capture_output=True,
    )
    with open(out / f"{video.stem}-Scenes.csv", newline="") as f:
        rows = list(csv.reader(f))[2:]  # a timecode line, then the header
    return [int(row[1]) - 1 for row in rows[1:]]


def report(name: str, label: str, results: list[tuple[list[int], list[Transition]]]) -> None:
    found_total = sum(len(found) for found, _ in results)
    true_total = sum(len(truth) for _, truth in results)
    hits = sum(match(found, truth) for found, truth in results)
    precision = hits / found_total if found_total else 1.0
    print(
        f"{name:16} {label:22} transitions {true_total:4}  detected {found_total:4}  "
        f"precision {precision:.3f}  recall {hits / true_total:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8, help="videos per set")
    parser.add_argument("--shots", type=int, default=12, help="shots per video")
    parser.add_argument("--folder", type=Path, default=None, help="keep the videos here")
    parser.add_argument("--scenedetect", default=None, help="PySceneDetect's CLI, to compare with")
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the videos")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench-shots-"))
    folder.mkdir(parents=True, exist_ok=True)
    width, height = (int(n) for n in args.size.split("x"))
    sets = {"hard cuts": 0.0, "dissolves/fades": 1.0}
    startup = 0.0
    if args.scenedetect:
        tiny = folder / "tiny.mp4"
        build_video(tiny, 1, shot_frames=(2, 2), width=width, height=height)
        before = children_cpu()
        for _ in range(3):
            scenedetect_cuts(args.scenedetect, tiny, "detect-content", folder / "scenedetect")
        startup = (children_cpu() - before) / 3
        print(f"scenedetect start-up (a 2-frame video): {startup:.2f} CPU s per run")
    print(f"{args.videos} videos x {args.shots} shots per set, {width}x{height} 25 fps H.264, in {folder}")
    for name, gradual in sets.items():
        videos = []
        for v in range(args.videos):
            path = folder / f"{'gradual' if gradual else 'hard'}-{v}.mp4"
            seed = 100 * v + int(gradual)
            transitions = build_video(
                path, args.shots, seed=seed, gradual=gradual, width=width, height=height
            )
            videos.append((path, transitions))
        frames = 0
        cpu = 0.0
        scans = []
        for path, truth in videos:
            started = time.process_time()
            scan = scan_video(str(path))
            cpu += time.process_time() - started
            frames += scan.frames
            scans.append((scan, truth))
        for detector in DETECTORS:
            report(name, f"vidcap {detector}", [(find_cuts(s, detector, None, 15), t) for s, t in scans])
        print(f"{name:16} vidcap: {frames} frames in {cpu:.1f} CPU s = {frames / cpu:.0f} frames/CPU s")
        if args.scenedetect:
            for command in ("detect-content", "detect-adaptive"):
                before = children_cpu()
                found = [
                    (scenedetect_cuts(args.scenedetect, path, command, folder / "scenedetect"), truth)
                    for path, truth in videos
                ]
                sd_cpu = children_cpu() - before
                report(name, f"scenedetect {command[7:]}", found)
                work = sd_cpu - startup * len(videos)
                print(
                    f"{name:16} scenedetect {command}: {frames / sd_cpu:.0f} frames/CPU s "
                    f"({sd_cpu:.1f} CPU s), {frames / work:.0f} less start-up; "
                    f"vidcap {sd_cpu / cpu:.2f}x faster, {work / cpu:.2f}x less start-up"
                )


if __name__ == "__main__":
    main()
