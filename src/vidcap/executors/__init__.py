"""How the feed runs for a job: one engine here, N engines on this node, an array task's share.

The interface is ``vidcap.executors.base.Executor`` (its module doc shows a run's life); the
job it runs is ``vidcap.executors.job.Job``. ``EXECUTORS`` maps each executor's name to its
class, in the order ``executor_for`` asks them whether a run is theirs (``local``, which takes
every run, last). A new executor is one module and one line here.

An array task's share of the input (``--shard-index``/``--num-shards`` or a SLURM job array,
``vidcap.executors.array_share``) is part of the job: every executor runs the share it is given.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vidcap.config import RunConfig
    from vidcap.executors.base import Executor

# name -> "module:class"; each module is imported only when asked (heavy imports stay inside).
EXECUTORS = {
    "ray": "vidcap.executors.ray_executor:RayExecutor",
    "data_parallel": "vidcap.executors.data_parallel:DataParallelExecutor",
    "local": "vidcap.executors.local:LocalExecutor",
}


def executor_class(name: str) -> type[Executor]:
    """The executor registered as ``name`` (KeyError if none is)."""
    module_name, class_name = EXECUTORS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def executor_for(config: RunConfig) -> Executor:
    """The executor for ``config``: the first of ``EXECUTORS`` that accepts it."""
    for name in EXECUTORS:
        cls = executor_class(name)
        if cls.accepts(config):
            return cls(config)
    raise ValueError("no executor accepts this run")  # local accepts every run: a bug
