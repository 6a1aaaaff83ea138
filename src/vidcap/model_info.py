"""What vidcap needs to know about a model before loading it: its vision patch geometry and
context length."""

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


def _config_dict(model: str, cache_dir: str | None) -> dict:
    """The model's ``config.json`` as a dict: a local folder's read directly (instant, no
    transformers import), a hub name's through ``transformers.AutoConfig`` (cached after the
    first download). VidcapError with one line when it cannot be had."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        check_model_exists(model)
        return json.loads((folder / "config.json").read_text())
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(model, cache_dir=cache_dir).to_dict()
    except Exception as exc:  # hub unreachable or no such model: one line, what to try
        raise model_load_error(model, exc) from None


def vision_geometry(model: str | None, *, cache_dir: str | None = None) -> VisionGeometry:
    """Read the geometry from the model's config (see ``_config_dict``); default when unknown."""
    if not model:
        return VisionGeometry()
    return _from_config_dict(_config_dict(model, cache_dir)) or VisionGeometry()


# The keys vLLM 0.32 reads a model's context length from (ModelArchConfigConvertor
# .derive_max_model_len_and_key): the smallest one present wins.
_LENGTH_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "model_max_length",
    "max_target_positions",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
)


def context_length(model: str | None, *, cache_dir: str | None = None) -> int | None:
    """The context length vLLM gives the model when ``--max-model-len`` is not set, read from its
    config before loading it (None when the config names none).

    vLLM takes the smallest of the length keys of the text config; a RoPE scaling factor may
    raise it, so this never answers less than vLLM would: the factor is applied whenever one is
    given (an answer too large costs a larger batch budget, one too small would refuse videos).
    """
    if not model:
        return None
    config = _config_dict(model, cache_dir)
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    lengths = [int(text[k]) for k in _LENGTH_KEYS if isinstance(text.get(k), int | float)]
    if not lengths:
        return None
    length = min(lengths)
    if isinstance(text.get("model_max_length"), int | float):  # vLLM takes it over the others
        length = int(text["model_max_length"])
    for rope in (text.get("rope_scaling"), text.get("rope_parameters")):
        factor = rope.get("factor") if isinstance(rope, dict) else None
        if isinstance(factor, int | float) and factor > 1:
            length = int(length * factor)
            break
    return length
