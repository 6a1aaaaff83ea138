"""Serving classes with DataFlow's names and parameters, each a thin shell over an engine.

``LocalModelVLMServing_vllm(hf_model_name_or_path=..., vllm_temperature=...)`` keeps the
DataFlow quick start running unchanged; the work is done by ``vidcap.engines``.
"""

from __future__ import annotations

from typing import Any

from vidcap.config import EngineConfig
from vidcap.engines import create_engine
from vidcap.engines.base import CaptionEngine, GenerationOptions
from vidcap.engines.loading import check_model_exists


class _Serving:
    """Holds an engine config and sampling options; the engine starts on first use."""

    engine_config: EngineConfig
    generation: GenerationOptions

    def create_engine(self) -> CaptionEngine:
        """A new, not yet started engine for these settings."""
        return create_engine(self.engine_config, self.generation)


class LocalModelVLMServing_vllm(_Serving):
    """A local model served by the vLLM offline engine (DataFlow's parameter names)."""

    def __init__(
        self,
        hf_model_name_or_path: str,
        hf_cache_dir: str | None = None,
        hf_local_dir: str | None = None,
        vllm_tensor_parallel_size: int = 1,
        vllm_temperature: float = 0.7,
        vllm_top_p: float = 0.9,
        vllm_max_tokens: int = 1024,
        vllm_max_model_len: int | None = None,
        vllm_gpu_memory_utilization: float = 0.9,
        vllm_seed: int | None = None,
        num_captions: int = 1,
        json_schema: dict[str, Any] | None = None,
        **engine_kwargs: Any,
    ) -> None:
        check_model_exists(hf_local_dir or hf_model_name_or_path)
        self.engine_config = EngineConfig(
            model=hf_local_dir or hf_model_name_or_path,
            backend="vllm",
            cache_dir=hf_cache_dir,
            tensor_parallel_size=vllm_tensor_parallel_size,
            max_model_len=vllm_max_model_len,
            gpu_memory_utilization=vllm_gpu_memory_utilization,
            engine_kwargs=engine_kwargs,
        )
        self.generation = GenerationOptions(
            temperature=vllm_temperature,
            top_p=vllm_top_p,
            max_tokens=vllm_max_tokens,
            num_captions=num_captions,
            seed=vllm_seed,
            json_schema=json_schema,
        )


class LocalModelVLMServing_transformers(_Serving):
    """A local model run with transformers ``generate`` (CPU or GPU), for machines without vLLM."""

    def __init__(
        self,
        hf_model_name_or_path: str,
        hf_cache_dir: str | None = None,
        device: str = "auto",
        temperature: float = 0.7,
        top_p: float = 0.9,
        max_tokens: int = 1024,
        seed: int | None = None,
        num_captions: int = 1,
        json_schema: dict[str, Any] | None = None,
    ) -> None:
        check_model_exists(hf_model_name_or_path)
        self.engine_config = EngineConfig(
            model=hf_model_name_or_path, backend="transformers", cache_dir=hf_cache_dir, device=device
        )
        self.generation = GenerationOptions(
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            num_captions=num_captions,
            seed=seed,
            json_schema=json_schema,
        )


class APIVLMServing_openai(_Serving):
    """Any OpenAI-compatible server (``vllm serve``, SGLang, hosted APIs)."""

    def __init__(
        self,
        api_url: str,
        model_name: str,
        key_name_of_api_key: str = "OPENAI_API_KEY",
        max_workers: int = 8,
        timeout: float = 600.0,
        max_retries: int = 5,
        temperature: float = 0.7,
        top_p: float = 0.9,
        max_tokens: int = 1024,
        seed: int | None = None,
        num_captions: int = 1,
        json_schema: dict[str, Any] | None = None,
        hf_processor_name_or_path: str | None = None,
    ) -> None:
        self.engine_config = EngineConfig(
            model=model_name,
            backend="openai",
            api_base=api_url,
            api_key_env=key_name_of_api_key,
            concurrency=max_workers,
            request_timeout=timeout,
            max_retries=max_retries,
            engine_kwargs={"processor": hf_processor_name_or_path} if hf_processor_name_or_path else {},
        )
        self.generation = GenerationOptions(
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            num_captions=num_captions,
            seed=seed,
            json_schema=json_schema,
        )
