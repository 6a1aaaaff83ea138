"""Serving classes with DataFlow's names, parameters and defaults, each a thin shell over an engine.

``LocalModelVLMServing_vllm`` and ``APIVLMServing_openai`` take every parameter of the classes of
the same name in DataFlow-MM (``dataflow/serving/local_model_vlm_serving.py`` and
``api_vlm_serving_openai.py``), in the same order and with the same defaults, so a DataFlow
script runs with only its imports changed. A parameter vidcap cannot honour is refused with a
one-line ``VidcapError`` that says what to pass instead, never a ``TypeError``. vidcap's own
additions come after them, keyword-only.

Sampling: DataFlow's classes pass their sampling defaults (``vllm_temperature=0.7``,
``vllm_top_k=40`` ...) to vLLM explicitly, and so does vidcap. Pass ``None`` for any of them to
use the model's own value from its ``generation_config.json`` instead (see ``vidcap.generation``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vidcap.config import EngineConfig
from vidcap.engines import create_engine
from vidcap.engines.caption_engine import CaptionEngine
from vidcap.engines.openai_payload import VIDEO_FORMS
from vidcap.errors import VidcapError
from vidcap.generation import GenerationOptions, sampling_problem
from vidcap.model.locate import check_model_exists, looks_like_path, model_load_error


class _Serving:
    """Holds an engine config and sampling options; the engine starts on first use."""

    engine_config: EngineConfig
    generation: GenerationOptions

    def create_engine(self) -> CaptionEngine:
        """A new, not yet started engine for these settings."""
        return create_engine(self.engine_config, self.generation)


def _generation(owner: str, prefix: str = "", **values: Any) -> GenerationOptions:
    """GenerationOptions from a serving class's arguments, refused in one line when out of range
    (named as the class names them: ``prefix`` + option, e.g. ``vllm_top_k``)."""
    options = GenerationOptions(**values)
    plain = {"num_captions", "json_schema"}  # vidcap's own, never prefixed
    problem = sampling_problem(options, name=lambda key: key if key in plain else prefix + key)
    if problem is not None:
        raise VidcapError(f"{owner}: {problem}")
    return options


def _local_model(name: str, cache_dir: str | None, local_dir: str | None) -> str:
    """DataFlow's rule: a path that exists is used; else a hub id goes to ``local_dir`` if given."""
    if Path(name).expanduser().exists() or looks_like_path(name) or not local_dir:
        return name
    if (Path(local_dir).expanduser() / "config.json").is_file():
        return local_dir  # downloaded before: no network needed
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id=name, cache_dir=cache_dir, local_dir=local_dir)
    except Exception as exc:  # no network, no such model: one line, what to try
        raise model_load_error(name, exc) from None


class LocalModelVLMServing_vllm(_Serving):
    """A local model served by the vLLM offline engine (DataFlow-MM's parameters and defaults).

    ``hf_model_name_or_path``: a local folder, or a hub id, downloaded (as DataFlow does) into
    ``hf_local_dir`` when given (kept if it already holds a model), else by vLLM into
    ``hf_cache_dir``. ``vllm_*`` sampling values are sent as given; ``None`` means the model's
    own (its ``generation_config.json``). ``vllm_seed`` ``None`` means unseeded.
    vidcap's additions (keyword-only): ``vllm_min_p``, ``vllm_presence_penalty``,
    ``vllm_frequency_penalty`` (default: the model's), ``num_captions``, ``json_schema``, ``family``
    (the model family, as ``--family``: default detected from its config), and any other
    ``vllm.LLM`` argument as a keyword (``enforce_eager=True``, ``max_num_seqs=64`` ...).
    """

    def __init__(
        self,
        hf_model_name_or_path: str | None = None,
        hf_cache_dir: str | None = None,
        hf_local_dir: str | None = None,
        vllm_tensor_parallel_size: int = 1,
        vllm_temperature: float | None = 0.7,
        vllm_top_p: float | None = 0.9,
        vllm_max_tokens: int | None = 1024,
        vllm_top_k: int | None = 40,
        vllm_repetition_penalty: float | None = 1.0,
        vllm_seed: int | None = 42,
        vllm_max_model_len: int | None = 4096,
        vllm_gpu_memory_utilization: float = 0.9,
        *,
        vllm_min_p: float | None = None,
        vllm_presence_penalty: float | None = None,
        vllm_frequency_penalty: float | None = None,
        num_captions: int = 1,
        json_schema: dict[str, Any] | None = None,
        family: str | None = None,
        **engine_kwargs: Any,
    ) -> None:
        if not hf_model_name_or_path:
            raise VidcapError("LocalModelVLMServing_vllm needs hf_model_name_or_path (a hub id or a folder)")
        model = _local_model(hf_model_name_or_path, hf_cache_dir, hf_local_dir)
        check_model_exists(model)
        self.engine_config = EngineConfig(
            model=model,
            family=family,
            backend="vllm",
            cache_dir=hf_cache_dir,
            tensor_parallel_size=vllm_tensor_parallel_size,
            max_model_len=vllm_max_model_len,
            gpu_memory_utilization=vllm_gpu_memory_utilization,
            engine_kwargs=engine_kwargs,
        )
        self.generation = _generation(
            "LocalModelVLMServing_vllm",
            "vllm_",
            temperature=vllm_temperature,
            top_p=vllm_top_p,
            top_k=vllm_top_k,
            min_p=vllm_min_p,
            repetition_penalty=vllm_repetition_penalty,
            presence_penalty=vllm_presence_penalty,
            frequency_penalty=vllm_frequency_penalty,
            max_tokens=vllm_max_tokens,
            num_captions=num_captions,
            seed=vllm_seed,
            json_schema=json_schema,
        )


class LocalModelVLMServing_transformers(_Serving):
    """A local model run with transformers ``generate`` (CPU or GPU), for machines without vLLM.

    vidcap's own class (DataFlow has none): every sampling value defaults to the model's own.
    ``family``: the model family (as ``--family``), when its config does not say.
    """

    def __init__(
        self,
        hf_model_name_or_path: str,
        hf_cache_dir: str | None = None,
        device: str = "auto",
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        num_captions: int = 1,
        json_schema: dict[str, Any] | None = None,
        *,
        top_k: int | None = None,
        min_p: float | None = None,
        repetition_penalty: float | None = None,
        presence_penalty: float | None = None,
        frequency_penalty: float | None = None,
        family: str | None = None,
    ) -> None:
        check_model_exists(hf_model_name_or_path)
        self.engine_config = EngineConfig(
            model=hf_model_name_or_path,
            family=family,
            backend="transformers",
            cache_dir=hf_cache_dir,
            device=device,
        )
        self.generation = _generation(
            "LocalModelVLMServing_transformers",
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            min_p=min_p,
            repetition_penalty=repetition_penalty,
            presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty,
            max_tokens=max_tokens,
            num_captions=num_captions,
            seed=seed,
            json_schema=json_schema,
        )


class APIVLMServing_openai(_Serving):
    """Any OpenAI-compatible server (``vllm serve``, SGLang, hosted APIs); DataFlow-MM's parameters.

    ``key_name_of_api_key`` names the environment variable holding the key. ``image_io`` (for
    models that generate images) must stay ``None``: vidcap reads captions, not images.
    ``send_request_stream`` False sends ordinary requests; True is refused (a batch caption gains
    nothing from streaming). vidcap's additions (keyword-only): ``max_retries``, the sampling
    values (default: the model's, when ``hf_processor_name_or_path`` or a local model folder
    shows its generation config; else the server's), ``num_captions``, ``json_schema``,
    ``hf_processor_name_or_path`` (count prompt tokens exactly), and ``video_as`` /
    ``send_video_metadata`` (the form videos go in: by default what the server takes, found
    out at start; the engine options of the same names).
    """

    def __init__(
        self,
        api_url: str = "https://api.openai.com/v1",
        key_name_of_api_key: str = "DF_API_KEY",
        model_name: str = "o4-mini",
        image_io: Any = None,
        send_request_stream: bool = False,
        max_workers: int = 10,
        timeout: float = 1800,
        *,
        max_retries: int = 5,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        min_p: float | None = None,
        repetition_penalty: float | None = None,
        presence_penalty: float | None = None,
        frequency_penalty: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        num_captions: int = 1,
        json_schema: dict[str, Any] | None = None,
        hf_processor_name_or_path: str | None = None,
        video_as: str = "auto",
        send_video_metadata: bool | None = None,
    ) -> None:
        if image_io is not None:
            raise VidcapError(
                "APIVLMServing_openai: image_io is for models that generate images; vidcap stores "
                "text captions: pass image_io=None"
            )
        if video_as not in ("auto", *VIDEO_FORMS):
            choices = ", ".join(repr(f) for f in ("auto", *VIDEO_FORMS))
            raise VidcapError(f"APIVLMServing_openai: video_as must be one of {choices}, not {video_as!r}")
        if send_request_stream:
            raise VidcapError(
                "APIVLMServing_openai: send_request_stream=True is not supported (a caption is stored "
                "whole, streaming gains nothing): pass send_request_stream=False"
            )
        self.engine_config = EngineConfig(
            model=model_name,
            backend="openai",
            api_base=api_url,
            api_key_env=key_name_of_api_key,
            concurrency=max_workers,
            request_timeout=float(timeout),
            max_retries=max_retries,
            engine_kwargs=_openai_options(hf_processor_name_or_path, video_as, send_video_metadata),
        )
        self.generation = _generation(
            "APIVLMServing_openai",
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            min_p=min_p,
            repetition_penalty=repetition_penalty,
            presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty,
            max_tokens=max_tokens,
            num_captions=num_captions,
            seed=seed,
            json_schema=json_schema,
        )


def _openai_options(processor: str | None, video_as: str, send_video_metadata: bool | None) -> dict[str, Any]:
    """The openai engine's options (``engine_kwargs``) for what ``APIVLMServing_openai`` was given."""
    options: dict[str, Any] = {"video_as": video_as}
    if processor:
        options["processor"] = processor
    if send_video_metadata is not None:
        options["send_video_metadata"] = send_video_metadata
    return options
