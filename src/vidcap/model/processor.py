"""Loading a model's processor and its sampling defaults; load failures become one-line errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vidcap.generation import SAMPLING_KEYS
from vidcap.model.locate import check_model_exists, looks_like_path, model_load_error

if TYPE_CHECKING:
    from vidcap.config import EngineConfig

# Named here too: the engines import their loading helpers from this one module.
__all__ = [
    "check_model_exists",
    "load_processor",
    "looks_like_path",
    "model_load_error",
    "model_sampling_defaults",
]


def load_processor(cfg: EngineConfig) -> Any:
    """The model's HF processor (tokenizer + chat template + video processor)."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(
        cfg.model, cache_dir=cfg.cache_dir, trust_remote_code=cfg.trust_remote_code
    )


def model_sampling_defaults(
    model: str,
    *,
    cache_dir: str | None = None,
    trust_remote_code: bool = False,
    local_files_only: bool = False,
) -> dict[str, Any] | None:
    """The model's sampling values as vLLM 0.32 reads them (``ModelConfig.get_diff_sampling_param``
    with ``generation_config="auto"``); None when the model's config cannot be read.

    vLLM reads ``generation_config.json`` (else the generation fields of ``config.json``),
    keeps the values set there, and of them only those named in ``SAMPLING_KEYS``
    (``max_new_tokens`` becoming ``max_tokens``); ``do_sample`` and the rest are ignored.
    """
    from transformers import AutoConfig, GenerationConfig

    try:
        try:
            config = GenerationConfig.from_pretrained(
                model, cache_dir=cache_dir, local_files_only=local_files_only
            )
        except OSError:  # no generation_config.json: the model config's generation fields
            model_config = AutoConfig.from_pretrained(
                model,
                cache_dir=cache_dir,
                trust_remote_code=trust_remote_code,
                local_files_only=local_files_only,
            )
            config = GenerationConfig.from_model_config(model_config)
    except Exception:  # no such model here (e.g. a hosted API's name): unknown, not an error
        return None
    values = config.to_diff_dict()
    if "max_new_tokens" in values:
        values["max_tokens"] = values.pop("max_new_tokens")
    return {k: values[k] for k in SAMPLING_KEYS if values.get(k) is not None}
