"""Build test videos with known shot boundaries, for the shot tests and ``scripts/bench_shots.py``.

Each shot is a stretch of one of FFmpeg's test sources (``testsrc2``, ``mandelbrot``,
``smptebars``, ``rgbtestsrc``, ``cellauto``, ``life``...) read through PyAV's lavfi device, at
a different offset each time; shots are joined with a hard cut, a dissolve or a fade through
black, and encoded with PyAV. The true boundaries come back as :class:`Transition` records.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

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
) -> list[Transition]:
    """Write an H.264 (else MPEG-4) video of ``shots`` shots to ``path``; return its transitions.

    Consecutive shots come from different sources. A ``gradual`` share of the transitions are
    dissolves or fades (``gradual_frames`` long: 0.5-1 s at 25 fps); the rest are hard cuts.
    """
    rng = random.Random(seed)
    pieces: list[np.ndarray] = []
    previous = ""
    for _ in range(shots):
        name = rng.choice([s for s in SOURCES if s != previous])
        previous = name
        pieces.append(source_frames(name, rng.randint(*shot_frames), width, height, fps, rng.randint(0, 200)))
    frames: list[np.ndarray] = list(pieces[0])
    transitions: list[Transition] = []
    for piece in pieces[1:]:
        if rng.random() < gradual:
            span = rng.randint(*gradual_frames)
            kind = rng.choice(["dissolve", "fade"])
            tail = frames[-span:]
            start = len(frames) - span
            for j in range(span):
                alpha = (j + 1) / (span + 1)
                if kind == "dissolve":
                    mix = (1 - alpha) * tail[j] + alpha * piece[j]
                else:  # out to black over the first half, in from black over the second
                    mix = tail[j] * max(0.0, 1 - 2 * alpha) if alpha < 0.5 else piece[j] * (2 * alpha - 1)
                frames[start + j] = mix.astype(np.uint8)
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
