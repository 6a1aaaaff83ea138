"""Measure shot-boundary detection: precision and recall per detector, and frames per CPU second.

Builds videos of FFmpeg test sources joined at known frames (``vidcap.shot_corpus``): one set
with hard cuts only, one whose transitions are all dissolves or fades of 0.5-1 s. A detected
cut matches a hard cut within 2 frames, a gradual transition anywhere from its first blended
frame to the first frame after it; each true transition matches at most one detection.

    python scripts/bench_shots.py [--videos 8] [--shots 12] [--folder DIR]
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8, help="videos per set")
    parser.add_argument("--shots", type=int, default=12, help="shots per video")
    parser.add_argument("--folder", type=Path, default=None, help="keep the videos here")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench-shots-"))
    folder.mkdir(parents=True, exist_ok=True)
    sets = {"hard cuts": 0.0, "dissolves/fades": 1.0}
    print(f"{args.videos} videos x {args.shots} shots per set, 320x240 25 fps H.264, in {folder}")
    for name, gradual in sets.items():
        videos = []
        for v in range(args.videos):
            path = folder / f"{'gradual' if gradual else 'hard'}-{v}.mp4"
            videos.append((path, build_video(path, args.shots, seed=100 * v + int(gradual), gradual=gradual)))
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
            found_total = hits = true_total = 0
            for scan, truth in scans:
                found = find_cuts(scan, detector, None, 15)
                found_total += len(found)
                true_total += len(truth)
                hits += match(found, truth)
            precision = hits / found_total if found_total else 1.0
            recall = hits / true_total
            print(
                f"{name:16} {detector:9} transitions {true_total:4}  detected {found_total:4}  "
                f"precision {precision:.3f}  recall {recall:.3f}"
            )
        print(f"{name:16} decode+score: {frames} frames in {cpu:.1f} CPU s = {frames / cpu:.0f} frames/CPU s")


if __name__ == "__main__":
    main()
