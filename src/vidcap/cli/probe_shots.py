"""``vidcap probe --split shots``: the shots ``vidcap clips`` would cut each video into."""

from __future__ import annotations

import json
import sys
from typing import Any

from vidcap.cli.probe_videos import expand_paths
from vidcap.errors import EXIT_OK, EXIT_RECORDS_FAILED, EXIT_USAGE, RecordError, VidcapError
from vidcap.video.shots import DEFAULT_THRESHOLD, DETECTORS, cut_kind, find_cuts, scan_video, shots_from_cuts
from vidcap.video.transnet import check_available


def shots_of(path: str, detector: str, threshold: float | None) -> dict[str, Any]:
    """One video's shots as ``vidcap clips`` cuts them (no --min-shot/--max-shot/trims)."""
    scan = scan_video(path, transnet=detector == "transnetv2")
    cuts = find_cuts(scan, detector, threshold, 15)
    kinds = [cut_kind(scan, cut) for cut in cuts]
    shots = shots_from_cuts(scan.times, scan.end, cuts, fps=scan.fps, kinds=kinds)
    return {
        "video": path,
        "fps": scan.fps,
        "frames": scan.frames,
        "detector": detector,
        "threshold": DEFAULT_THRESHOLD[detector] if threshold is None else threshold,
        "shots": [
            {
                "start": shot.start,
                "end": shot.end,
                "first_frame": shot.first,
                "frames": shot.stop - shot.first,
                "kind": shot.kind,
                "score": round(float(scan.scores[shot.first]), 1) if shot.first in cuts else None,
            }
            for shot in shots
        ],
        "notes": list(scan.notes),
    }


def _print(row: dict[str, Any]) -> None:
    shots = row["shots"]
    print(
        f"{row['video']}: {row['frames']} frames at {row['fps']:g} fps, {len(shots)} shot(s) "
        f"({row['detector']}, threshold {row['threshold']:g})"
    )
    print(f"  {'shot':>4}  {'start s':>10}  {'end s':>10}  {'frames':>6}  kind      score")
    for number, shot in enumerate(shots, 1):
        score = "" if shot["score"] is None else f"{shot['score']:g}"
        print(
            f"  {number:>4}  {shot['start']:>10.3f}  {shot['end']:>10.3f}  {shot['frames']:>6}  "
            f"{shot['kind']:<8}  {score}".rstrip()
        )
    for note in row["notes"]:
        print(f"  note: {note}")


def probe_shots_command(paths: list[str], json_lines: bool, detector: str, threshold: float | None) -> int:
    """Print each video's shots; 0 when every video was read, 1 when some were not, 2 for a
    usage error (an unknown detector, no videos)."""
    videos = failed = 0
    try:
        if detector not in DETECTORS:
            raise VidcapError(f"--detector must be one of {', '.join(DETECTORS)}, not {detector!r}")
        if detector == "transnetv2":
            check_available()
        if threshold is not None and not threshold > 0:
            raise VidcapError(f"--threshold must be more than 0, got {threshold}")
        for item in expand_paths(paths):
            videos += 1
            try:
                row = shots_of(item.path, detector, threshold)
            except RecordError as exc:
                failed += 1
                row = {"video": item.shown, "error": str(exc)}
                print(f"error: {exc}", file=sys.stderr)
                if json_lines:
                    print(json.dumps(row, ensure_ascii=False), flush=True)
                continue
            if json_lines:
                print(json.dumps(row, ensure_ascii=False), flush=True)
            else:
                _print(row)
    except VidcapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if videos == 0:
        print(f"error: no videos found in {' '.join(paths)}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_RECORDS_FAILED if failed else EXIT_OK
