"""The Ray executor (``--executor ray``): engines as Ray actors, decoding as Ray tasks, on a cluster.

The job (``executors/job.py``) runs here as for any executor: one feed, one writer, one lock, one
resume, so input order, exactly-once and the summary are the local run's. This executor gives it
an engine that is every engine actor of the cluster behind one (``ray_engine.RayEngine``) and a
decode pool of Ray tasks (``ray_decode.RayDecodePool``). The cluster is ``--ray-address``, else
``RAY_ADDRESS``, else a local Ray started for the run (``ray_cluster``). Ray is imported only
when this executor runs.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

from vidcap.executors.base import Executor

if TYPE_CHECKING:
    from vidcap.config import RunConfig
    from vidcap.engines.caption_engine import CaptionEngine
    from vidcap.executors.job import Job, RunHooks, RunResult


class RayExecutor(Executor):
    """The job's one feed on the engine actors of a Ray cluster, fed by Ray decode tasks."""

    name = "ray"

    @classmethod
    def accepts(cls, config: RunConfig) -> bool:
        """Runs with ``executor = "ray"`` (``--executor ray``)."""
        return config.engine.executor == "ray"

    def engine(self) -> CaptionEngine:
        """The cluster's engine actors behind one engine, not started (``RayEngine``)."""
        from vidcap.executors.ray_engine import RayEngine

        return RayEngine(self.config.engine, self.config.generation)

    def run(self, job: Job, engine: CaptionEngine, hooks: RunHooks) -> RunResult:
        """The job's feed on ``engine``, its records decoded in Ray tasks (a ``--no-video`` run
        decodes nothing: its pool stays the local one, which starts no process)."""
        if not self.config.run.no_video:
            from vidcap.executors.ray_decode import RayDecodePool

            pool = functools.partial(RayDecodePool, address=self.config.engine.ray_address)
            hooks = dataclasses.replace(hooks, decode_pool=pool)
        return job.run(engine, hooks)
