"""Where a model comes from (a local folder or a hub id), and one-line errors for loading it.

A leaf module (it imports only ``errors``): ``model.info`` and the engines both use it.
"""

from __future__ import annotations

import os
from pathlib import Path

from vidcap.errors import VidcapError


def looks_like_path(model: str) -> bool:
    """True when ``model`` names a local folder rather than a hub id like ``Qwen/Qwen2.5-VL-7B-Instruct``."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or Path(model).exists()


def check_model_exists(model: str, cache_dir: str | None = None) -> None:
    """Fail early, in one line, for a model that cannot be had.

    A local folder must exist and hold a config. Any other name is taken for a hub id: it
    is fine when the Hugging Face cache holds it, or when the hub can be reached; otherwise
    (offline, or ``HF_HUB_OFFLINE`` set) the error says so at once, instead of the hub
    client retrying for half a minute. A cached model with the hub out of reach is loaded
    offline (``HF_HUB_OFFLINE=1``, which the engine's processes inherit).
    """
    if looks_like_path(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise VidcapError(f"model folder not found: {model}")
        if not (folder / "config.json").is_file():
            raise VidcapError(f"not a model folder (no config.json): {model}")
        return
    taken = f"model {model!r} is not a local folder, so it was taken for a Hugging Face hub id"
    cached = _hub_cached(model, cache_dir, taken)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if cached:
        if not offline and not _hub_reachable():
            os.environ["HF_HUB_OFFLINE"] = "1"  # the cached copy will do; no retries
        return
    if offline:
        raise VidcapError(f"{taken}, which is not in the Hugging Face cache and HF_HUB_OFFLINE is set")
    if not _hub_reachable():
        raise VidcapError(
            f"{taken}, which is not in the Hugging Face cache, and {hub_endpoint()} cannot be reached "
            "(download it on a machine with network access, or pass a local folder with --model)"
        )


def hub_endpoint() -> str:
    """The hub's address (``HF_ENDPOINT`` or huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _hub_cached(model: str, cache_dir: str | None, taken: str) -> bool:
    """True when the Hugging Face cache holds the model's config."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        found = try_to_load_from_cache(model, "config.json", cache_dir=cache_dir)
    except HFValidationError:
        raise VidcapError(f"{taken}, but it is not a valid one (expected ORG/NAME)") from None
    return isinstance(found, str)


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the hub opens within ``timeout_s`` (assumed yes behind a proxy,
    which a direct connection cannot test)."""
    import socket
    from urllib.parse import urlsplit

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlsplit(hub_endpoint())
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def model_load_error(model: str, exc: BaseException) -> VidcapError:
    """A one-line VidcapError for a model that could not be loaded, with what to try next."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    reason = lines[-1] if lines else type(exc).__name__
    reason = reason.replace(" See root cause above.", "")  # it is in the log, not above
    hint = ""
    if not looks_like_path(model):
        hint = " (no network? download it first or pass a local folder with --model)"
    return VidcapError(f"cannot load model {model!r}: {reason[:300]}{hint}")
