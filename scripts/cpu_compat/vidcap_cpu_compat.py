"""Work-arounds for running the CPU build of vLLM beside CUDA-only torchvision/torchcodec wheels.

Installed into a CPU development virtualenv by ``scripts/setup.sh`` (with a ``.pth`` file
so that every Python process of the venv, including vLLM's spawned engine processes,
gets it). A GPU install has consistent wheels and never installs this file.

Both fixes are lazy: nothing is imported until something imports torchvision or torchcodec.

1. torchvision's ``_C.so`` links ``libtorch_cuda.so`` and cannot load beside the CPU torch,
   so ``import torchvision`` fails registering ``torchvision::nms``. Defining the two operator
   schemas first lets the pure-Python transforms (all that the video processors use) import.
2. ``import torchcodec`` raises ``OSError`` (missing ``libnvrtc``), which vLLM does not catch,
   and ``import torchaudio`` raises ``OSError`` (its ``_torchaudio.so`` needs ``libc10_cuda``),
   which transformers does not catch; turning both into ``ImportError`` makes vLLM and
   transformers fall back as if they were absent (they are used for audio only).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys

_TORCHVISION_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor qdets, Tensor qscores, float iou_threshold) -> Tensor",
)
_DISABLED = frozenset({"torchcodec", "torchaudio"})
_library = None  # keeps the torch.library.Library alive for the life of the process


class _CompatFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision":
            _define_torchvision_ops()
        return None  # let the normal finders import the module


def _define_torchvision_ops() -> None:
    global _library
    if _library is not None:
        return
    import torch

    _library = torch.library.Library("torchvision", "DEF")
    for schema in _TORCHVISION_OPS:
        with contextlib.suppress(RuntimeError):  # already defined (a working torchvision build)
            _library.define(schema)


def install() -> None:
    """Disable the audio packages and put the finder first on ``sys.meta_path`` (idempotent)."""
    # A None entry makes ``import`` raise ImportError and ``importlib.util.find_spec`` return None.
    for name in _DISABLED:
        sys.modules.setdefault(name, None)
    if not any(isinstance(f, _CompatFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _CompatFinder())
