"""What an executor is: how the feed runs for a ``Job``, kept apart from what the job is.

A ``Job`` (``vidcap.executors.job``) is built once per run: this shard's span of the input,
the output path and its lock, the fingerprint and the resume state, the writer, the summary.
An executor decides what engine its feed drives and how the feed runs for it; it knows
nothing of frames, prompts or formats. The harness (``vidcap.executors.harness.execute``)
runs every executor the same way::

    job = Job.plan(config)                      # output path and checks; reads no record
    executor = executor_for(config)             # the registry, vidcap.executors.EXECUTORS
    with job.locked(), executor.engine() as engine:
        result = executor.run(job, engine, hooks)

A new executor is one module with a subclass of ``Executor`` and one line in
``vidcap.executors.EXECUTORS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from vidcap.config import RunConfig
    from vidcap.engines.caption_engine import CaptionEngine
    from vidcap.executors.job import Job, RunHooks, RunResult


class Executor(ABC):
    """How the feed runs for a job; one instance per run, built from the run's config.

    Subclasses set ``name`` (their key in ``vidcap.executors.EXECUTORS``), say in ``accepts``
    which runs are theirs, and build the engine in ``engine``; ``run`` may be overridden by an
    executor that runs the feed otherwise (the default runs the job's one feed on ``engine``).
    """

    name: ClassVar[str]

    def __init__(self, config: RunConfig) -> None:
        self.config = config

    @classmethod
    @abstractmethod
    def accepts(cls, config: RunConfig) -> bool:
        """Whether this executor runs ``config`` (the registry asks each in its order)."""

    @abstractmethod
    def engine(self) -> CaptionEngine:
        """The engine the job's feed drives, not started: the job starts it (decoding begins
        meanwhile) and the caller closes it (use it as a context manager)."""

    def run(self, job: Job, engine: CaptionEngine, hooks: RunHooks) -> RunResult:
        """Run ``job``'s feed on ``engine``; returns how it ended (``RunResult``).

        Raises what ``Job.run`` raises: ``VidcapError`` for bad input (before any work),
        ``OutputLockedError``, ``EngineStartError``.
        """
        return job.run(engine, hooks)
