"""The local executor: one engine in this process (and the backend's own processes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vidcap.executors.base import Executor

if TYPE_CHECKING:
    from vidcap.config import RunConfig
    from vidcap.engines.caption_engine import CaptionEngine


class LocalExecutor(Executor):
    """The job's one feed on one engine of ``config.engine.backend``."""

    name = "local"

    @classmethod
    def accepts(cls, config: RunConfig) -> bool:
        """Every run (the registry asks it last)."""
        return True

    def engine(self) -> CaptionEngine:
        """The backend's engine (``vidcap.engines.create_engine``), not started."""
        from vidcap import engines  # looked up when called: a test may put a fake engine there

        return engines.create_engine(self.config.engine, self.config.generation)
