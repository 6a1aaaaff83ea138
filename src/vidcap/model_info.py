"""What vidcap needs to know about a model before loading it: its vision patch geometry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vidcap.model_source import check_model_exists, model_load_error


@dataclass(frozen=True)
class VisionGeometry:
    """``image_factor`` = patch size x spatial merge (28 for Qwen2.5-VL, 32 for Qwen3-VL)."""

    image_factor: int = 28
    temporal_patch_size: int = 2


def _from_config_dict(config: dict) -> VisionGeometry | None:
    vision = config.get("vision_config")
    if not isinstance(vision, dict) or "patch_size" not in vision:
        return None
    merge = int(vision.get("spatial_merge_size", 2))
    return VisionGeometry(
        image_factor=int(vision["patch_size"]) * merge,
        temporal_patch_size=int(vision.get("temporal_patch_size", 2)),
    )


def vision_geometry(model: str | None, *, cache_dir: str | None = None) -> VisionGeometry:
    """Read the geometry from a local ``config.json`` or the hub config; default when unknown.

    A local folder is read directly (instant, no transformers import). A hub name goes
    through ``transformers.AutoConfig`` (cached after the first download).
    """
    if not model:
        return VisionGeometry()
    folder = Path(model).expanduser()
    if folder.is_dir():
        check_model_exists(model)
        return _from_config_dict(json.loads((folder / "config.json").read_text())) or VisionGeometry()
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model, cache_dir=cache_dir).to_dict()
    except Exception as exc:  # hub unreachable or no such model: one line, what to try
        raise model_load_error(model, exc) from None
    return _from_config_dict(config) or VisionGeometry()
