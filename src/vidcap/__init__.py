"""vidcap: batch video captioning with vision-language models.

The Python API keeps the shape of DataFlow's video caption quick start::

    from vidcap import VideoToCaptionGenerator, LocalModelVLMServing_vllm, FileStorage, DiyVideoPrompt

Heavy modules (vLLM, torch, transformers, PyAV) are imported only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vidcap.version import __version__

_EXPORTS = {
    "VideoToCaptionGenerator": "vidcap.operator",
    "PromptedVQAGenerator": "vidcap.vqa",
    "VideoMergedCaptionGenerator": "vidcap.vqa",
    "LocalModelVLMServing_vllm": "vidcap.serving",
    "LocalModelVLMServing_transformers": "vidcap.serving",
    "APIVLMServing_openai": "vidcap.serving",
    "FileStorage": "vidcap.storage",
    "DiyVideoPrompt": "vidcap.prompts",
    "VideoCaptionGeneratorPrompt": "vidcap.prompts",
    "SamplingOptions": "vidcap.video.types",
}

__all__ = [
    "APIVLMServing_openai",
    "DiyVideoPrompt",
    "FileStorage",
    "LocalModelVLMServing_transformers",
    "LocalModelVLMServing_vllm",
    "PromptedVQAGenerator",
    "SamplingOptions",
    "VideoCaptionGeneratorPrompt",
    "VideoMergedCaptionGenerator",
    "VideoToCaptionGenerator",
    "__version__",
]

if TYPE_CHECKING:
    from vidcap.operator import VideoToCaptionGenerator
    from vidcap.prompts import DiyVideoPrompt, VideoCaptionGeneratorPrompt
    from vidcap.serving import (
        APIVLMServing_openai,
        LocalModelVLMServing_transformers,
        LocalModelVLMServing_vllm,
    )
    from vidcap.storage import FileStorage
    from vidcap.video.types import SamplingOptions
    from vidcap.vqa import PromptedVQAGenerator, VideoMergedCaptionGenerator


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vidcap' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
