"""Generation backends behind one interface (``CaptionEngine``), chosen by name."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vidcap.config import EngineConfig
    from vidcap.engines.caption_engine import CaptionEngine, GenerationOptions

# backend name -> "module:class"; imported only when chosen (each pulls heavy dependencies).
BACKENDS = {
    "vllm": "vidcap.engines.vllm_engine:VllmEngine",
    "transformers": "vidcap.engines.transformers_engine:TransformersEngine",
    "openai": "vidcap.engines.openai_engine:OpenAIEngine",
}


def create_engine(config: EngineConfig, generation: GenerationOptions) -> CaptionEngine:
    """An engine for ``config.backend`` (not started: call ``start`` to load the model).

    One backend engine in this process, whatever ``config.data_parallel_size`` says: N engines
    on one node are an executor's business (``vidcap.executors.data_parallel``).
    """
    module_name, class_name = BACKENDS[config.backend].split(":")
    engine_class = getattr(importlib.import_module(module_name), class_name)
    return engine_class(config, generation)
