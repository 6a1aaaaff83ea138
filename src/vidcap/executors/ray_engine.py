"""Engines as Ray actors, behind one ``CaptionEngine``: the engine side of ``--executor ray``.

The run loop (``executors/job.py``: one feed, one writer, one lock, one resume) stays in this
process and sees one engine, so input order, exactly-once and resume hold as with one local
engine. Each engine is a Ray actor (``EngineServer``) holding a backend engine
(``vidcap.engines.create_engine``): one per GPU group of ``--tensor-parallel-size`` GPUs of the
cluster, or, on a cluster without GPUs, one per node (``--data-parallel-size N`` > 1 caps them
at N); actors are spread over the nodes. A request goes to the engine with the fewest in
flight; it travels through Ray's object store (put here, so it outlives the engine's node).

A lost engine (its node or process died) loses only its requests in flight: each is sent again
to an engine alive (once), so the run goes on with the others; with no engine left the run
fails (``EngineDiedError``, exit 70) with every finished record written, and a rerun resumes
from there. vLLM seeds each request, so a request sent again gets the same caption.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vidcap.engines.caption_engine import CaptionEngine, CaptionOutput, CaptionRequest
from vidcap.engines.chat import prompt_token_count
from vidcap.errors import EngineDiedError, VidcapError, one_line
from vidcap.executors import ray_cluster
from vidcap.executors.data_parallel import engine_entry
from vidcap.model.processor import load_processor, model_load_error

if TYPE_CHECKING:
    from vidcap.config import EngineConfig
    from vidcap.generation import GenerationOptions

_POLL_S = 1.0  # the longest an actor's collect call waits before answering (maybe with nothing)
_STOP_S = 60.0  # how long an engine gets to close (vLLM's own teardown takes up to 30 s)
_RESENDS = 1  # times a request lost with its engine is sent to another one


class EngineServer:
    """One backend engine in a Ray actor (this class is made a Ray actor by ``RayEngine``).

    The engine runs in a thread of its own, as a data-parallel engine's child process does:
    ``submit`` queues requests for it and returns at once, ``collect`` takes the outputs that
    finished (waiting up to ``timeout`` s for one). The actor takes several calls at once
    (``max_concurrency``), so a waiting ``collect`` never holds a ``submit`` back.
    """

    def __init__(
        self, config: EngineConfig, generation: GenerationOptions, max_videos: int, env: dict[str, str]
    ) -> None:
        os.environ.update(env)  # before the engine imports torch or vLLM: they read it once
        self._inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._outbox: queue.Queue[list[CaptionOutput]] = queue.Queue()
        self._ready = threading.Event()
        self._info: dict[str, Any] | None = None
        self._failure: str | None = None
        self._engine: CaptionEngine | None = None
        self._thread = threading.Thread(
            target=self._run, args=(config, generation, max_videos), name="vidcap-engine", daemon=True
        )
        self._thread.start()

    def ready(self) -> dict[str, Any]:
        """Wait for the engine to load; its limits, or a RuntimeError with why it failed."""
        self._ready.wait()
        if self._info is None:
            raise RuntimeError(self._failure or "the engine stopped")
        return self._info

    def submit(self, *requests: CaptionRequest) -> None:
        """Queue requests for the engine (it refuses none here: refusals come from ``collect``)."""
        self._inbox.put(("submit", list(requests)))

    def collect(self, timeout: float) -> list[CaptionOutput]:
        """Outputs finished since the last call, waiting up to ``timeout`` s for the first."""
        outputs: list[CaptionOutput] = []
        with contextlib.suppress(queue.Empty):
            outputs.extend(self._outbox.get(timeout=timeout))
            while True:
                outputs.extend(self._outbox.get_nowait())
        if not outputs and self._failure is not None:
            raise RuntimeError(self._failure)
        return outputs

    def max_in_flight(self, batch_size: int) -> int:
        """What this engine schedules at once (the backend says)."""
        assert self._engine is not None
        return self._engine.max_in_flight(batch_size)

    def close(self) -> None:
        """Close the engine (its processes end) and stop the thread."""
        self._inbox.put(("stop",))
        self._thread.join(_STOP_S)

    def _run(self, config: EngineConfig, generation: GenerationOptions, max_videos: int) -> None:
        from vidcap import engines

        try:
            engine = self._engine = engines.create_engine(config, generation)
            engine.start(max_videos_per_prompt=max_videos)
        except BaseException as exc:
            self._failure = one_line(exc)
            self._ready.set()
            return
        try:
            import ray

            self._info = {
                "node": ray.util.get_node_ip_address(),
                "max_model_len": engine.max_model_len,
                "model_sampling": engine.model_sampling,
                "encoder_cache_tokens": getattr(engine, "encoder_cache_tokens", None),
            }
            self._ready.set()
            self._serve(engine)
        except BaseException as exc:
            self._failure = f"the engine failed: {one_line(exc)}"
        finally:
            engine.close()

    def _serve(self, engine: CaptionEngine) -> None:
        while True:
            messages = []
            with contextlib.suppress(queue.Empty):
                # Idle: wait for work. Busy: take what came, then let the engine step.
                messages.append(self._inbox.get(block=engine.in_flight == 0))
                while True:
                    messages.append(self._inbox.get_nowait())
            requests: list[CaptionRequest] = []
            for message in messages:
                if message[0] == "stop":
                    return
                requests.extend(message[1])
            if requests:
                refused = engine.submit(requests)
                if refused:
                    self._outbox.put(refused)
            if engine.in_flight:
                outputs = engine.collect(wait=True)
                if outputs:
                    self._outbox.put(outputs)


@dataclass
class _Engine:
    """What the driver knows of one engine actor."""

    rank: int
    label: str
    actor: Any
    in_flight: int = 0
    requests: int = 0
    busy_s: float = 0.0
    busy_since: float | None = None
    alive: bool = True
    error: str | None = None
    poll: Any = None  # the ObjectRef of its collect call in progress


@dataclass
class _Flight:
    rank: int
    ref: Any  # the request in the object store
    sends: int = 1


class RayEngine(CaptionEngine):
    """Engines of ``config.backend`` as Ray actors on the run's cluster; see the module doc.

    This process keeps the model's processor to count prompt tokens (the run's length check);
    the engines' limits (``max_model_len``, the model's sampling values) come from engine 1.
    """

    def __init__(self, config: EngineConfig, generation: GenerationOptions) -> None:
        self.config = config
        self.generation = generation
        self.name = config.backend
        self.encoder_cache_tokens: int | None = None
        self._processor: Any = None
        self._engines: list[_Engine] = []
        self._flights: dict[str, _Flight] = {}
        self._ray: Any = None
        self._max_videos = 0

    # -- start and stop ---------------------------------------------------------------------
    def start(self, *, max_videos_per_prompt: int) -> None:
        """Connect to the cluster, start every engine actor (in parallel); any one's failure
        fails the start, naming it."""
        if self._engines:
            if max_videos_per_prompt <= self._max_videos:
                return
            self.close()
        self._max_videos = max(0, max_videos_per_prompt)
        ray = self._ray = ray_cluster.connect(self.config.ray_address)
        try:
            self._processor = load_processor(self.config)
        except Exception as exc:
            raise model_load_error(self.config.model, exc) from exc
        server = ray.remote(EngineServer)
        try:
            for rank, (label, options) in enumerate(self._placements(ray)):
                actor = server.options(max_concurrency=4, max_restarts=0, **options).remote(
                    self.config, self.generation, self._max_videos, {"VIDCAP_ENGINE_RANK": str(rank)}
                )
                self._engines.append(_Engine(rank, label, actor))
            infos = []
            for engine in self._engines:
                try:
                    infos.append(ray.get(engine.actor.ready.remote()))
                except Exception as exc:
                    raise VidcapError(f"{engine.label} failed to start: {_cause(exc)}") from exc
        except BaseException:
            self.close()
            raise
        for engine, started in zip(self._engines, infos, strict=True):  # where each one runs
            engine.label = engine.label.replace("(Ray, ", f"(Ray node {started['node']}, ")
        info = infos[0]
        self.max_model_len = info["max_model_len"]
        self.model_sampling = info["model_sampling"]
        self.encoder_cache_tokens = info["encoder_cache_tokens"]

    def _placements(self, ray: Any) -> list[tuple[str, dict[str, Any]]]:
        """Each engine's name and actor resources: a GPU group each, else one per node."""
        tp = self.config.tensor_parallel_size
        gpus = int(ray.cluster_resources().get("GPU", 0))
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if gpus:
            count = gpus // tp
            if count < 1:
                raise VidcapError(f"--tensor-parallel-size {tp} needs {tp} GPUs; the Ray cluster has {gpus}")
            options: dict[str, Any] = {"num_gpus": tp, "num_cpus": 1}
            kind = f"{tp} GPUs" if tp > 1 else "GPU"
        else:
            # Without GPUs an engine takes its node's cores as the backend binds them; the
            # node's CPU resources stay for decoding. One engine per node.
            count = max(1, len(nodes))
            options = {"num_cpus": 0}
            kind = "CPUs"
        if self.config.data_parallel_size > 1:
            count = min(count, self.config.data_parallel_size) if gpus else self.config.data_parallel_size
        return [
            (f"engine {rank + 1} of {count} (Ray, {kind})", {**options, "scheduling_strategy": "SPREAD"})
            for rank in range(count)
        ]

    def close(self) -> None:
        """Close every engine (their backends' processes end), then leave the cluster."""
        engines, self._engines = self._engines, []
        ray = self._ray
        if ray is not None and engines:
            closing = [e.actor.close.remote() for e in engines if e.alive]
            with contextlib.suppress(Exception):
                ray.wait(closing, num_returns=len(closing), timeout=_STOP_S)
            for engine in engines:
                with contextlib.suppress(Exception):
                    ray.kill(engine.actor)
        self._flights.clear()
        ray_cluster.disconnect()

    # -- what the run asks of an engine -----------------------------------------------------
    def count_prompt_tokens(self, request: CaptionRequest) -> int:
        """Text tokens of the templated prompt, each video placeholder replaced by its tokens."""
        return prompt_token_count(self._processor, request, self.family_of(request))

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        """Spread a batch over the engines and wait for all of it; outputs in request order."""
        outputs = {o.request_id: o for o in self.submit(requests)}
        while any(r.request_id not in outputs for r in requests):
            got = self.collect(wait=True)
            if not got and not self.in_flight:
                break
            outputs.update((o.request_id, o) for o in got)
        return [
            outputs.get(r.request_id) or CaptionOutput(r.request_id, error="the engine returned no output")
            for r in requests
        ]

    def submit(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        """Put each request in the object store and send it to the engine with the fewest in flight."""
        for request in requests:
            ref = self._ray.put(request)
            self._flights[request.request_id] = _Flight(-1, ref)
            self._send(request.request_id)
        return []

    def collect(self, *, wait: bool = True) -> list[CaptionOutput]:
        """Outputs from every engine as they finish; a lost engine's requests go to another."""
        ray = self._ray
        outputs: list[CaptionOutput] = []
        while True:
            polls = {}
            for engine in self._engines:
                if engine.alive and engine.in_flight and engine.poll is None:
                    engine.poll = engine.actor.collect.remote(_POLL_S)
                if engine.poll is not None:
                    polls[engine.poll] = engine
            if not polls:
                return outputs
            if wait and not outputs:  # block for one poll, then take the others that are ready too
                ray.wait(list(polls), num_returns=1)
            ready, _ = ray.wait(list(polls), num_returns=len(polls), timeout=0)
            for ref in ready:
                engine = polls[ref]
                engine.poll = None
                try:
                    got = ray.get(ref)
                except Exception as exc:
                    outputs.extend(self._lost(engine, exc))
                    continue
                for output in got:
                    flight = self._flights.get(output.request_id)
                    if flight is not None and flight.rank == engine.rank:
                        del self._flights[output.request_id]
                        self._finished(engine)
                        outputs.append(output)
            if outputs or not wait:
                return outputs

    @property
    def in_flight(self) -> int:
        """Requests submitted and not yet returned by ``collect``, over all engines."""
        return len(self._flights)

    def max_in_flight(self, batch_size: int) -> int:
        """What one engine schedules (engine 1 says), times the engines alive."""
        alive = [e for e in self._engines if e.alive]
        if not alive:
            return batch_size
        try:
            per_engine = int(self._ray.get(alive[0].actor.max_in_flight.remote(batch_size)))
        except Exception:  # it died: collect will say so
            per_engine = batch_size
        return per_engine * len(alive)

    def engine_stats(self) -> dict[str, Any]:
        """Per-engine statistics for the run summary, as ``--data-parallel-size`` gives them
        (``engine``, ``devices``, ``requests``, ``busy_s``, ``alive``, ``error``), with
        ``executor: "ray"``."""
        now = time.monotonic()
        engines = [engine_entry(engine, now) for engine in self._engines]
        return {"executor": "ray", "data_parallel_size": len(self._engines), "engines": engines}

    # -- internals --------------------------------------------------------------------------
    def _send(self, request_id: str) -> None:
        flight = self._flights[request_id]
        alive = [e for e in self._engines if e.alive]
        if not alive:
            raise EngineDiedError(self._all_dead())
        engine = min(alive, key=lambda e: (e.in_flight, e.requests, e.rank))
        flight.rank = engine.rank
        engine.requests += 1
        if engine.in_flight == 0:
            engine.busy_since = time.monotonic()
        engine.in_flight += 1
        engine.actor.submit.remote(flight.ref)

    def _finished(self, engine: _Engine) -> None:
        engine.in_flight -= 1
        if engine.in_flight == 0 and engine.busy_since is not None:
            engine.busy_s += time.monotonic() - engine.busy_since
            engine.busy_since = None

    def _lost(self, engine: _Engine, exc: BaseException) -> list[CaptionOutput]:
        """An engine is gone: send its requests in flight to another (once each), or fail them;
        with no engine left, fail the run (what is written stays; a rerun resumes)."""
        engine.alive = False
        engine.error = f"{engine.label} died: {_cause(exc)}"
        lost = [rid for rid, flight in self._flights.items() if flight.rank == engine.rank]
        for _ in lost:
            self._finished(engine)
        if not any(e.alive for e in self._engines):
            raise EngineDiedError(self._all_dead())
        failed = []
        for request_id in lost:
            flight = self._flights[request_id]
            if flight.sends > _RESENDS:
                del self._flights[request_id]
                failed.append(CaptionOutput(request_id, error=engine.error))
            else:
                flight.sends += 1
                self._send(request_id)
        return failed

    def _all_dead(self) -> str:
        errors = "; ".join(e.error or e.label for e in self._engines)
        return f"all {len(self._engines)} engines died ({errors}); rerun the same command to resume"


def _cause(exc: BaseException) -> str:
    """The one-line reason of a Ray error (the actor's own exception where there is one)."""
    cause = getattr(exc, "cause", None)
    return one_line(cause if isinstance(cause, BaseException) else exc)
