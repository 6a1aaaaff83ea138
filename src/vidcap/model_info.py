"""What vidcap needs to know about a model before loading it: its family and vision geometry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidcap.families import named_family, resolve_family
from vidcap.families.base import VisionGeometry
from vidcap.model_source import check_model_exists, model_load_error

__all__ = ["VisionGeometry", "model_config", "vision_geometry"]


def model_config(model: str, *, cache_dir: str | None = None) -> dict[str, Any]:
    """The checkpoint's ``config.json`` as a dict, read before anything loads.

    A local folder is read directly (instant, no transformers import). A hub name goes
    through ``transformers.AutoConfig`` (cached after the first download). Raises VidcapError
    (one line) for a model that cannot be had.
    """
    folder = Path(model).expanduser()
    if folder.is_dir():
        check_model_exists(model)
        return json.loads((folder / "config.json").read_text())
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(model, cache_dir=cache_dir).to_dict()
    except Exception as exc:  # hub unreachable or no such model: one line, what to try
        raise model_load_error(model, exc) from None


def vision_geometry(
    model: str | None, *, cache_dir: str | None = None, family: str | None = None
) -> VisionGeometry:
    """The model's family (``family`` names it, else detected from its config) and patch geometry.

    No model (a server's model vidcap cannot see): the named family, else Qwen2.5-VL's.
    Raises VidcapError (exit 2, one line naming the architecture and the supported families)
    for a checkpoint of no known family, or of an architecture that takes no video in vLLM.
    """
    if not model:
        return named_family(family).geometry({}) if family else VisionGeometry()
    config = model_config(model, cache_dir=cache_dir)
    return resolve_family(config, model=model, override=family).geometry(config)
