"""Sampling options, and the values a request is really sent with.

A sampling value the user did not set (``None``) is not vidcap's to choose: it comes from the
model's ``generation_config.json``, read the way vLLM reads it (``ModelConfig.
get_diff_sampling_param``: what ``LLM.get_default_sampling_params()`` and ``vllm serve`` apply),
and only where the model says nothing from vLLM's own defaults. Every backend sends the
resolved values explicitly, so the three backends sample alike, and the run summary says which
value was used and where it came from.

A leaf module: it imports nothing of vidcap but ``errors``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The sampling parameters vLLM takes from a model's generation config, in vLLM's names
#: (``max_tokens`` is Hugging Face's ``max_new_tokens``).
SAMPLING_KEYS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
    "max_tokens",
)
#: vLLM's neutral values (``SamplingParams`` and the OpenAI server's defaults): no effect.
VLLM_DEFAULTS: dict[str, float | int] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}
#: Longest caption when neither the user nor the model says (vLLM's own default, 16, is too short).
DEFAULT_MAX_TOKENS = 1024

# Where a resolved value came from (the run summary's "source").
FROM_OPTIONS = "options"
FROM_MODEL = "generation_config"
FROM_VLLM = "vllm default"
FROM_VIDCAP = "vidcap default"
FROM_SERVER = "server"  # openai backend, model config unknown: the field is not sent


@dataclass(frozen=True)
class GenerationOptions:
    """Sampling settings shared by all backends; ``None`` = the model's value (see module doc)."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # 0 or -1: off
    min_p: float | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    max_tokens: int | None = None
    num_captions: int = 1
    seed: int | None = None
    json_schema: dict[str, Any] | None = None  # structured captions: decode constrained to this schema


@dataclass(frozen=True)
class ResolvedSampling:
    """The sampling values to send (``values``) and where each came from (``sources``).

    A key missing from ``values`` is left to the server (openai backend only, when the
    model's generation config cannot be read here).
    """

    values: dict[str, float | int]
    sources: dict[str, str]

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{name: {"value": v, "source": s}}`` for the run summary (value None: the server's)."""
        return {k: {"value": self.values.get(k), "source": self.sources[k]} for k in SAMPLING_KEYS}


def resolve_sampling(options: GenerationOptions, model_defaults: dict[str, Any] | None) -> ResolvedSampling:
    """The user's values, else the model's (``model_defaults``, vLLM's names), else vLLM's.

    ``model_defaults`` None means the model's config is unknown (a remote server's model):
    what the user did not set is then left out, for the server to fill with its own defaults.
    """
    values: dict[str, float | int] = {}
    sources: dict[str, str] = {}
    for key in SAMPLING_KEYS:
        mine = getattr(options, key)
        if mine is not None:
            values[key], sources[key] = mine, FROM_OPTIONS
        elif model_defaults is None:
            sources[key] = FROM_SERVER
            if key == "max_tokens":  # a server's default can be the whole context: keep ours
                values[key], sources[key] = DEFAULT_MAX_TOKENS, FROM_VIDCAP
        elif model_defaults.get(key) is not None:
            values[key], sources[key] = model_defaults[key], FROM_MODEL
        elif key == "max_tokens":
            values[key], sources[key] = DEFAULT_MAX_TOKENS, FROM_VIDCAP
        else:
            values[key], sources[key] = VLLM_DEFAULTS[key], FROM_VLLM
    if "top_k" in values and values["top_k"] in (0, -1):
        values["top_k"] = 0  # vLLM reads both as "off"; 0 is what every backend accepts
    return ResolvedSampling(values, sources)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


# (option, is the value usable, the rule) for each sampling option the user may set.
_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("num_captions", lambda v: v >= 1, "must be >= 1"),
    ("max_tokens", lambda v: v >= 1, "must be >= 1"),
    ("temperature", lambda v: 0 <= v <= 2, "must be in [0, 2]"),
    ("top_p", lambda v: 0 < v <= 1, "must be in (0, 1]"),
    ("top_k", lambda v: isinstance(v, int) and v >= -1, "must be a whole number >= 1, or 0 or -1 for off"),
    ("min_p", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("repetition_penalty", lambda v: v > 0, "must be > 0"),
    ("presence_penalty", lambda v: -2 <= v <= 2, "must be in [-2, 2]"),
    ("frequency_penalty", lambda v: -2 <= v <= 2, "must be in [-2, 2]"),
)


def sampling_problem(options: GenerationOptions, name: Callable[[str], str] = _flag) -> str | None:
    """What is wrong with the sampling values the user set (None: nothing), naming each option
    by ``name(key)`` (the flag by default; the serving classes pass their argument names)."""
    for key, ok, rule in _RULES:
        value = getattr(options, key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
            return f"{name(key)} {rule}, not {value!r}"
    return None
