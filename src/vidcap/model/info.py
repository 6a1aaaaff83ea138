"""What vidcap needs to know about a model before loading it: its family, vision geometry and
context length."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidcap.families import named_family, resolve_family
from vidcap.families.family import VisionGeometry
from vidcap.model.locate import check_model_exists, model_load_error

__all__ = ["VisionGeometry", "context_length", "has_linear_attention", "model_config", "vision_geometry"]


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
    chosen = resolve_family(config, model=model, override=family)
    folder = Path(model).expanduser()
    if family is None and folder.is_dir():  # --family says the user knows better
        chosen.check_checkpoint(folder)
    return chosen.geometry(config)


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
    config = model_config(model, cache_dir=cache_dir)
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


def has_linear_attention(model: str | None, *, cache_dir: str | None = None) -> bool:
    """Whether the model's text config has linear-attention layers (a hybrid model such as
    Qwen3.5: vLLM keeps a recurrent state for them, with its own engine constraints)."""
    if not model:
        return False
    config = model_config(model, cache_dir=cache_dir)
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    return "linear_attention" in (text.get("layer_types") or ())
