"""Loading a model's processor, and turning load failures into one-line user errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vidcap.config import EngineConfig
from vidcap.errors import VidcapError


def looks_like_path(model: str) -> bool:
    """True when ``model`` names a local folder rather than a hub id like ``Qwen/Qwen2.5-VL-7B-Instruct``."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or Path(model).exists()


def check_model_exists(model: str) -> None:
    """Fail early, in one line, for a local model folder that is not there or holds no config."""
    if not looks_like_path(model):
        return
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise VidcapError(f"model folder not found: {model}")
    if not (folder / "config.json").is_file():
        raise VidcapError(f"not a model folder (no config.json): {model}")


def load_processor(cfg: EngineConfig) -> Any:
    """The model's HF processor (tokenizer + chat template + video processor)."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(
        cfg.model, cache_dir=cfg.cache_dir, trust_remote_code=cfg.trust_remote_code
    )


def model_load_error(model: str, exc: BaseException) -> VidcapError:
    """A one-line VidcapError for a model that could not be loaded, with what to try next."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    reason = lines[-1] if lines else type(exc).__name__
    hint = ""
    if not looks_like_path(model):
        hint = " (no network? download it first or pass a local folder with --model)"
    return VidcapError(f"cannot load model {model!r}: {reason[:300]}{hint}")
