"""What vidcap needs to know about a model before loading it: its family and vision geometry."""

from __future__ import annotations

import json
from pathlib import Path

from vidcap.families import DEFAULT_FAMILY, detect_family, get_family
from vidcap.families.base import VisionGeometry
from vidcap.model_source import check_model_exists, model_load_error

__all__ = ["VisionGeometry", "vision_geometry"]


def _from_config_dict(config: dict) -> VisionGeometry:
    family = detect_family(config) or get_family(DEFAULT_FAMILY)
    return family.geometry(config)


def vision_geometry(model: str | None, *, cache_dir: str | None = None) -> VisionGeometry:
    """Read the family and geometry from a local ``config.json`` or the hub config; Qwen2.5-VL's
    when unknown.

    A local folder is read directly (instant, no transformers import). A hub name goes
    through ``transformers.AutoConfig`` (cached after the first download).
    """
    if not model:
        return VisionGeometry()
    folder = Path(model).expanduser()
    if folder.is_dir():
        check_model_exists(model)
        return _from_config_dict(json.loads((folder / "config.json").read_text()))
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model, cache_dir=cache_dir).to_dict()
    except Exception as exc:  # hub unreachable or no such model: one line, what to try
        raise model_load_error(model, exc) from None
    return _from_config_dict(config)
