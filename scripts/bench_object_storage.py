#!/usr/bin/env python
"""Decoding videos from an S3 server vs from local files: frames per CPU second, bytes read.

One process, one run: a local S3-compatible server (moto's standalone server, started here as
the tests start it) holds copies of generated clips; each clip is loaded as ``vidcap run``
loads it (``load_video``: probe with a packet scan, plan, then decode the planned frames),
alternately from the local file and from ``s3://``, ``--repeat`` times each. Printed, as a
Markdown table per clip: CPU seconds of this process (``time.process_time``: decoding plus
fsspec's I/O threads; the server's own CPU is not counted), frames per CPU second, wall
seconds, and the bytes fetched from the server against the file's size, with vidcap's block
cache kept across a record's opens (what a run does) and without it (every open fetches anew).

    .venv/bin/python scripts/bench_object_storage.py --workdir /tmp/vc-s3bench
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLIPS = {  # name: (seconds, fps, width, height, codec)
    "h264-720p-20s.mp4": (20.0, 30, 1280, 720, "libx264"),
    "h264-360p-60s.mp4": (60.0, 25, 640, 360, "libx264"),
    "mpeg4-480p-20s.avi": (20.0, 25, 854, 480, "mpeg4"),
    "h264-360p-30s.mkv": (30.0, 30, 640, 360, "libx264"),
}


def make_clips(folder: Path) -> list[Path]:
    from vidcap.video.synthetic import make_clip

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (seconds, fps, width, height, codec) in CLIPS.items():
        path = folder / name
        if not path.exists():
            make_clip(path, seconds=seconds, fps=fps, width=width, height=height, codec=codec)
        paths.append(path)
    return paths


class Counter:
    """Bytes and requests fetched by s3fs' range reads (wraps ``S3File._fetch_range``)."""

    def __init__(self) -> None:
        import s3fs.core

        self.bytes = self.requests = 0
        original = s3fs.core.S3File._fetch_range
        counter = self

        def fetch(self, start: int, end: int):  # type: ignore[no-untyped-def]
            data = original(self, start, end)
            counter.bytes += len(data)
            counter.requests += 1
            return data

        s3fs.core.S3File._fetch_range = fetch


def load(path: str, options) -> tuple[int, float, float]:
    """(frames, CPU s, wall s) of one ``load_video``."""
    from vidcap.io import object_store
    from vidcap.video.load import load_video

    object_store.close_videos()  # each load starts cold, as a new record does
    cpu, wall = time.process_time(), time.perf_counter()
    loaded = load_video(path, options)
    return len(loaded.frames), time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/vc-s3bench"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fps", type=float, default=2.0, help="frames per second of video planned")
    args = parser.parse_args()

    from tests.s3_server import s3_env, s3_server
    from vidcap.config import SamplingOptions
    from vidcap.io import object_store

    clips = make_clips(args.workdir / "clips")
    options = SamplingOptions(fps=args.fps)
    with s3_server(args.workdir / "moto.log") as endpoint:
        os.environ.update(s3_env(endpoint))
        import s3fs

        fs = s3fs.S3FileSystem()
        fs.mkdir("bench")
        for clip in clips:
            fs.put_file(str(clip), f"bench/{clip.name}")
        counter = Counter()
        print(f"S3 server: moto_server at {endpoint}; {args.repeat} loads each, alternating; medians\n")
        print(
            "| clip | size | frames | local CPU s | S3 CPU s | frames/CPU s local / S3 | local wall s "
            "| S3 wall s | bytes read / size (cache kept) | requests | bytes read / size (no reuse) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for clip in clips:
            url = f"s3://bench/{clip.name}"
            size = clip.stat().st_size
            load(str(clip), options), load(url, options)  # warm-up: imports, the server's first answers
            local, remote, fetched, requests = [], [], [], []
            for _ in range(args.repeat):
                local.append(load(str(clip), options))
                before_bytes, before_requests = counter.bytes, counter.requests
                remote.append(load(url, options))
                fetched.append(counter.bytes - before_bytes)
                requests.append(counter.requests - before_requests)
            # Without the cache across opens: the probe's and the decode's opens each fetch anew.
            keep = object_store._OPEN_VIDEOS
            object_store._OPEN_VIDEOS = 0
            try:
                before_bytes = counter.bytes
                load(url, options)
                no_reuse = counter.bytes - before_bytes
            finally:
                object_store._OPEN_VIDEOS = keep
            frames = local[0][0]
            assert all(r[0] == frames for r in remote + local)
            cpu_l = statistics.median(r[1] for r in local)
            cpu_s = statistics.median(r[1] for r in remote)
            wall_l = statistics.median(r[2] for r in local)
            wall_s = statistics.median(r[2] for r in remote)
            print(
                f"| {clip.name} | {size / 2**20:.1f} MiB | {frames} | {cpu_l:.3f} | {cpu_s:.3f} "
                f"| {frames / cpu_l:.0f} / {frames / cpu_s:.0f} ({cpu_l / cpu_s:.2f}x) | {wall_l:.3f} "
                f"| {wall_s:.3f} | {statistics.median(fetched) / size:.2f} "
                f"| {statistics.median(requests):.0f} | {no_reuse / size:.2f} |"
            )
        object_store.close_videos()


if __name__ == "__main__":
    main()
