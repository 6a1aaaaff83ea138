"""How the feed runs for a job: one engine here, N engines on this node, an array task's share.

``create_engine`` is the engine a run's feed drives: one backend engine, or with
``data_parallel_size`` > 1 one engine over that many, each in its own process
(``vidcap.executors.data_parallel``); with ``executor = "ray"``, engines as Ray actors on a
cluster (``vidcap.executors.ray_engine``; decoding in Ray tasks, ``vidcap.executors.ray_decode``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vidcap.config import EngineConfig
    from vidcap.engines.caption_engine import CaptionEngine
    from vidcap.generation import GenerationOptions


def create_engine(config: EngineConfig, generation: GenerationOptions) -> CaptionEngine:
    """The engine for ``config`` (not started): ``data_parallel_size`` backend engines behind one
    when it is over 1, else the backend's engine (``vidcap.engines.create_engine``)."""
    from vidcap import engines

    if config.executor == "ray":
        from vidcap.executors.ray_engine import RayEngine

        return RayEngine(config, generation)
    if config.data_parallel_size > 1:
        from vidcap.executors.data_parallel import DataParallelEngine

        # Each child builds its own backend engine with this function (data_parallel_size 1 there).
        return DataParallelEngine(config, generation, engine_factory=engines.create_engine)
    return engines.create_engine(config, generation)
