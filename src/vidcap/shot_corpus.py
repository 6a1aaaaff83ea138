"""Build test videos with known shot boundaries, for the shot tests and ``scripts/bench_shots.py``.

Each shot is a stretch of one source at a random offset: one of FFmpeg's test sources
(``testsrc2``, ``mandelbrot``, ``smptebars``...) read through PyAV's lavfi device, or a real
video (:func:`real_sources`: clips that Debian packages ship, :func:`debian_videos`). Shots are
joined with a hard cut, or with FFmpeg's ``xfade`` filter (through PyAV's filter graph): a
dissolve (``xfade=fade``) or a fade through black (``xfade=fadeblack``); the result is encoded
with PyAV. The true boundaries come back as :class:`Transition` records.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation

SOURCES = (
    "testsrc2",
    "mandelbrot",
    "smptebars",
    "rgbtestsrc",
    "cellauto",
    "life",
    "testsrc",
    "smptehdbars",
)


@dataclass(frozen=True)
class Transition:
    """A boundary between two shots: hard cut at ``first`` (``first == last``), or a gradual one
    whose blended frames are ``first..last`` (inclusive)."""

    kind: str  # "cut", "dissolve" or "fade"
    first: int
    last: int


def source_frames(name: str, count: int, width: int, height: int, fps: int, skip: int = 0) -> np.ndarray:
    """``count`` RGB frames of the lavfi source ``name``, after skipping ``skip`` frames."""
    # life and cellauto start from a random pattern: seeded (by the offset), the corpus repeats.
    extra = {"cellauto": f":rule=30:seed={skip}", "life": f":seed={skip}"}.get(name, "")
    spec = f"{name}=size={width}x{height}:rate={fps}{extra}"
    frames = []
    with av.open(spec, format="lavfi") as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= skip:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= count:
                break
    return np.stack(frames)


# The Debian packages whose real videos make the real corpus, and the videos used: a city at
# night (MPEG-2, 720x405, two shots: a cut at frame 116), a cartoon (Indeo 3), a 3D render
# (Motion JPEG) and a webcam clip (Motion JPEG, 15 fps).
DEBIAN_PACKAGES = ("python-kivy-examples", "gem-doc", "kphotoalbum")
DEBIAN_VIDEOS = {
    "city": "usr/share/kivy-examples/widgets/cityCC0.mpg",
    "homer": "usr/share/doc/gem-doc/examples/data/homer.avi",
    "render": "usr/share/doc/gem-doc/examples/data/anim-1.mov",
    "webcam": "usr/share/kphotoalbum/demo/movie.avi",
}
CITY_CUT = 116  # the city video's own cut (a one-frame change 8x any other of its frames)

XFADE = {"dissolve": "fade", "fade": "fadeblack"}  # transition kind -> FFmpeg xfade transition


def debian_videos(folder: Path | None = None) -> dict[str, Path]:
    """The real videos of :data:`DEBIAN_VIDEOS`, fetched once into ``folder`` with ``apt-get
    download`` and ``dpkg -x`` (nothing is installed). RuntimeError if they cannot be had.

    ``folder``: default ``$VIDCAP_VIDEO_CACHE``, else ``~/.cache/vidcap/debian-videos``, so
    that test sessions fetch them once.
    """
    if folder is None:
        default = Path.home() / ".cache" / "vidcap" / "debian-videos"
        folder = Path(os.environ.get("VIDCAP_VIDEO_CACHE") or default)
    folder.mkdir(parents=True, exist_ok=True)
    root = folder / "root"
    paths = {name: root / relative for name, relative in DEBIAN_VIDEOS.items()}
    if all(p.is_file() for p in paths.values()):
        return paths
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        raise RuntimeError("apt-get and dpkg are needed to fetch the real test videos")
    try:
        subprocess.run(["apt-get", "download", *DEBIAN_PACKAGES], cwd=folder, check=True, capture_output=True)
        for deb in folder.glob("*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True, capture_output=True)
    except subprocess.CalledProcessError as e:
        raise RuntimeError(
            f"cannot fetch the real test videos: {e.stderr.decode(errors='replace')}"
        ) from None
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise RuntimeError(f"the Debian packages lack {', '.join(missing)}")
    return paths


def video_frames(path: Path, width: int, height: int) -> np.ndarray:
    """Every frame of ``path`` as RGB at ``width`` x ``height``."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            small = frame.reformat(
                width=width, height=height, format="rgb24", interpolation=Interpolation.AREA
            )
            frames.append(small.to_ndarray())
    return np.stack(frames)


def real_sources(videos: dict[str, Path], width: int, height: int) -> dict[str, np.ndarray]:
    """The real shots of :func:`debian_videos` as frame arrays (the city video as its two shots)."""
    sources = {name: video_frames(path, width, height) for name, path in videos.items()}
    city = sources.pop("city")
    return {"city-1": city[:CITY_CUT], "city-2": city[CITY_CUT:], **sources}


def xfade(tail: np.ndarray, head: np.ndarray, kind: str, fps: int) -> np.ndarray:
    """The ``len(tail)`` frames of FFmpeg's ``xfade`` from ``tail`` into ``head`` (``kind``:
    ``dissolve`` or ``fade``), through PyAV's filter graph."""
    height, width = tail.shape[1:3]
    graph = av.filter.Graph()
    args = f"video_size={width}x{height}:pix_fmt=rgb24:time_base=1/{fps}:frame_rate={fps}/1:pixel_aspect=1/1"
    a, b = graph.add("buffer", args), graph.add("buffer", args)
    blend = graph.add("xfade", f"transition={XFADE[kind]}:duration={len(tail) / fps}:offset=0")
    sink = graph.add("buffersink")
    a.link_to(blend, 0, 0)
    b.link_to(blend, 0, 1)
    blend.link_to(sink)
    graph.configure()
    for source, frames in ((a, tail), (b, head)):
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            source.push(frame)
        source.push(None)
    out = []
    while len(out) < len(tail):
        out.append(sink.pull().to_ndarray(format="rgb24"))
    return np.stack(out)


def build_video(
    path: Path,
    shots: int,
    *,
    seed: int = 0,
    width: int = 320,
    height: int = 240,
    fps: int = 25,
    shot_frames: tuple[int, int] = (30, 90),
    gradual: float = 0.0,
    gradual_frames: tuple[int, int] = (12, 25),
    sources: dict[str, np.ndarray] | None = None,
) -> list[Transition]:
    """Write an H.264 (else MPEG-4) video of ``shots`` shots to ``path``; return its transitions.

    Shots come from FFmpeg's test sources, or from ``sources`` (frame arrays at ``width`` x
    ``height``, e.g. :func:`real_sources`; a shot is at most its source's length); consecutive
    shots from different sources. A ``gradual`` share of the transitions are dissolves or fades
    through FFmpeg's ``xfade`` (``gradual_frames`` long: 0.5-1 s at 25 fps); the rest are hard
    cuts. A gradual transition's frames run from the last unblended frame of the shot before.
    """
    rng = random.Random(seed)
    pieces: list[np.ndarray] = []
    previous = ""
    names = sorted(sources) if sources is not None else list(SOURCES)
    for _ in range(shots):
        name = rng.choice([s for s in names if s != previous])
        previous = name
        count = rng.randint(*shot_frames)
        if sources is None:
            pieces.append(source_frames(name, count, width, height, fps, rng.randint(0, 200)))
        else:
            frames_of = sources[name]
            count = min(count, len(frames_of))
            offset = rng.randint(0, len(frames_of) - count)
            pieces.append(frames_of[offset : offset + count])
    frames: list[np.ndarray] = list(pieces[0])
    transitions: list[Transition] = []
    for piece in pieces[1:]:
        shot_so_far = len(frames) - (transitions[-1].last + 1 if transitions else 0)
        if rng.random() < gradual:
            # A short shot keeps some frames of its own on each side of its transitions.
            span = min(rng.randint(*gradual_frames), len(piece) // 2, shot_so_far // 2)
            kind = rng.choice(["dissolve", "fade"])
            start = len(frames) - span
            frames[start:] = list(xfade(np.stack(frames[start:]), piece[:span], kind, fps))
            frames.extend(piece[span:])
            transitions.append(Transition(kind, start, start + span - 1))
        else:
            transitions.append(Transition("cut", len(frames), len(frames)))
            frames.extend(piece)
    _encode(path, frames, fps)
    return transitions


def _encode(path: Path, frames: list[np.ndarray], fps: int) -> None:
    with av.open(str(path), "w") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "23"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
