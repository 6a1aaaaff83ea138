"""Data parallelism on one node: N engines in N processes, one per GPU group, behind one engine.

The run loop sees one ``CaptionEngine`` (one feed, one writer, one lock, one resume), so
exactly-once, resume and input order hold as with one engine. Each engine runs in a child
process started with ``spawn``, with ``CUDA_VISIBLE_DEVICES`` set to its own GPUs (rank ``r``
gets GPUs ``[r*TP, (r+1)*TP)`` of those visible) or, without GPUs (vLLM's CPU build, or the
transformers backend on CPU), its own share of the CPU cores and of the KV cache memory.

``submit`` sends each request to the engine with the fewest requests in flight. Frames go
through shared memory (``vidcap.procs.dumps_shared``, as the decode pool's results do): a 720p
clip is tens of MB, too much to pickle through a pipe; the request's text and metadata go
through the pipe. The child maps the frames (its segment's name is unlinked at once) and runs
its engine's own ``submit``/``collect`` loop, so vLLM's input processing (the HF processor)
runs in the children, not in this process.

An engine that dies (its process exits or is killed) fails its requests in flight with an error
that names it ("engine 2 of 2 (GPU 1) died: ...") and the others go on; the run fails only when
none is left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from vidcap.engines.caption_engine import CaptionEngine, CaptionOutput, CaptionRequest
from vidcap.engines.chat import prompt_token_count
from vidcap.errors import EngineDiedError, VidcapError, one_line
from vidcap.executors.base import Executor
from vidcap.model.processor import load_processor, model_load_error
from vidcap.procs import (
    dumps_shared,
    kill_process_group,
    loads_shared,
    remove_orphan_segments,
    segment_name,
    signal_name,
    stop_signals_blocked,
    unlink_segment,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from vidcap.config import EngineConfig, RunConfig
    from vidcap.generation import GenerationOptions

    EngineFactory = Callable[[EngineConfig, GenerationOptions], CaptionEngine]

_segment_numbers = itertools.count()  # this process's frame segments: vidcap-frames-<pid>-<number>
_STOP_S = 60.0  # how long a child gets to close its engine (vLLM's own teardown takes up to 30 s)


@dataclass(frozen=True)
class Placement:
    """Where one engine runs: the environment its process starts with, and how it is named."""

    label: str  # "GPU 1", "GPUs 2,3", "CPUs 0-3"
    env: dict[str, str]
    kv_share: float = 1.0  # the part of --gpu-memory-utilization it gets (CPU: RAM is shared)


@dataclass
class _Worker:
    """One child engine and what the parent knows of it."""

    rank: int
    label: str
    process: Any
    conn: Connection
    in_flight: int = 0
    requests: int = 0
    busy_s: float = 0.0
    busy_since: float | None = None
    alive: bool = True
    ready: bool = False  # it said "ready": it serves messages, a "stop" among them
    reason: str | None = None  # why it died, as the child said (its last exception)
    error: str | None = None  # the error its requests in flight got


@dataclass
class _Flight:
    rank: int
    segment: str  # the shared memory its frames went in (gone once the engine took them)


def plan_placements(size: int, config: EngineConfig) -> list[Placement]:
    """One placement per engine: its GPUs (``tensor_parallel_size`` each) or its CPU cores.

    Raises VidcapError when fewer GPUs are visible than ``size`` x ``tensor_parallel_size``.
    """
    tp = config.tensor_parallel_size
    gpus = [] if config.backend == "transformers" and config.device == "cpu" else _visible_gpus()
    if gpus:
        if len(gpus) < size * tp:
            raise VidcapError(
                f"--data-parallel-size {size} x --tensor-parallel-size {tp} needs {size * tp} GPUs; "
                f"{len(gpus)} visible ({', '.join(gpus)}); lower --data-parallel-size"
            )
        placements = []
        for rank in range(size):
            own = gpus[rank * tp : (rank + 1) * tp]
            label = f"GPU {own[0]}" if len(own) == 1 else f"GPUs {','.join(own)}"
            env = {"CUDA_VISIBLE_DEVICES": ",".join(own), "VIDCAP_ENGINE_RANK": str(rank)}
            placements.append(Placement(label, env))
        return placements
    # No GPU: split the cores (vLLM binds one OpenMP thread per core of its list) and the RAM
    # its KV cache reserves, or N engines would each take all of both.
    cores = sorted(os.sched_getaffinity(0))
    per_engine = max(1, len(cores) // size)
    placements = []
    for rank in range(size):
        own = [cores[(rank * per_engine + i) % len(cores)] for i in range(per_engine)]
        env = {"OMP_NUM_THREADS": str(len(own)), "VIDCAP_ENGINE_RANK": str(rank)}
        if "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            # One list per tensor-parallel worker of this engine, "|"-separated, as vLLM reads it.
            step = max(1, len(own) // tp)
            groups = [own[(i * step) % len(own) : (i * step) % len(own) + step] for i in range(tp)]
            env["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(",".join(map(str, g)) for g in groups)
        label = f"CPUs {own[0]}-{own[-1]}" if len(own) > 1 else f"CPU {own[0]}"
        share = 1.0 if "VLLM_CPU_KVCACHE_SPACE" in os.environ else 1.0 / size
        placements.append(Placement(label, env, kv_share=share))
    return placements


def _visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        # Counting devices does not create a CUDA context here: the engines use the GPUs.
        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no torch, or a CPU build of it
        return []


class DataParallelEngine(CaptionEngine):
    """``config.data_parallel_size`` engines of ``config.backend``, each in its own process.

    The parent keeps the model's processor to count prompt tokens (the run's length check);
    the engines' limits (``max_model_len``, the model's sampling values) come from engine 1.
    """

    def __init__(
        self,
        config: EngineConfig,
        generation: GenerationOptions,
        *,
        engine_factory: EngineFactory,
    ) -> None:
        """``engine_factory`` builds each child's engine (``vidcap.engines.create_engine``, which
        picks the backend); it must be importable by name, as ``spawn`` pickles it by reference."""
        self.config = config
        self.engine_factory = engine_factory
        self.generation = generation
        self.name = config.backend
        self.size = config.data_parallel_size
        #: The most visual tokens one video may have (vLLM's encoder cache), as engine 1 says.
        self.encoder_cache_tokens: int | None = None
        self._processor: Any = None
        self._workers: list[_Worker] = []
        self._messages: queue.Queue[tuple[int, Any]] = queue.Queue()
        self._early: deque[tuple[int, Any]] = deque()  # messages that came while max_in_flight waited
        self._flights: dict[str, _Flight] = {}
        self._answers: dict[int, Any] = {}
        self._max_videos = 0

    # -- start and stop ---------------------------------------------------------------------
    def start(self, *, max_videos_per_prompt: int) -> None:
        """Start every engine, each in its process (in parallel); any one's failure fails the start."""
        if self._workers:
            if max_videos_per_prompt <= self._max_videos:
                return
            self.close()
        self._max_videos = max(0, max_videos_per_prompt)  # 0: a text-only run (--no-video)
        placements = plan_placements(self.size, self.config)
        remove_orphan_segments()
        try:
            self._processor = load_processor(self.config)
        except Exception as exc:
            raise model_load_error(self.config.model, exc) from exc
        context = multiprocessing.get_context("spawn")  # CUDA and vLLM cannot live in a fork
        try:
            for rank, placement in enumerate(placements):
                self._workers.append(self._spawn(context, rank, placement))
            infos = self._wait_ready()
        except BaseException:
            self.close()
            raise
        info = infos[0]
        self.max_model_len = info["max_model_len"]
        self.model_sampling = info["model_sampling"]
        self.encoder_cache_tokens = info["encoder_cache_tokens"]

    def _spawn(self, context: Any, rank: int, placement: Placement) -> _Worker:
        config = dataclasses.replace(
            self.config,
            data_parallel_size=1,
            gpu_memory_utilization=self.config.gpu_memory_utilization * placement.kv_share,
        )
        parent_end, child_end = context.Pipe()
        process = context.Process(
            target=serve_engine,
            args=(child_end, config, self.generation, self._max_videos, placement.env, self.engine_factory),
            name=f"vidcap-engine-{rank + 1}",
        )
        # The children ignore the job's stop signals, as vLLM's processes do (vidcap.procs):
        # this process finishes what is in flight and then stops them (close).
        with stop_signals_blocked():
            process.start()
        child_end.close()  # so that its death reads as end-of-file here
        worker = _Worker(rank, f"engine {rank + 1} of {self.size} ({placement.label})", process, parent_end)
        name = f"vidcap-engine-{rank + 1}-receive"
        threading.Thread(target=_receive, args=(worker, self._messages), name=name, daemon=True).start()
        return worker

    def _wait_ready(self) -> list[dict[str, Any]]:
        infos: dict[int, dict[str, Any]] = {}
        while len(infos) < len(self._workers):
            rank, message = self._messages.get()
            worker = self._workers[rank]
            if message[0] == "ready":
                infos[rank] = message[1]
                worker.ready = True
            elif message[0] in ("failed", "crashed"):
                raise VidcapError(f"{worker.label} failed to start: {message[1]}")
            elif message[0] == "eof":
                worker.process.join(5)
                raise VidcapError(f"{worker.label} failed to start: {_exit_reason(worker.process)}")
        return [infos[rank] for rank in range(len(self._workers))]

    def close(self) -> None:
        """Stop every engine: each closes its model, then its process ends (killed if it hangs).

        Each engine's process leads a process group that holds its backend's processes too
        (vLLM's engine core and workers, orphaned or not): killing the group leaves none behind.
        An engine still starting is killed at once: it reads no messages until its model loads.
        """
        workers, self._workers = self._workers, []
        for worker in workers:
            if not worker.ready:
                _kill_engine(worker.process)
                continue
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(("stop",))
        deadline = time.monotonic() + _STOP_S
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            _kill_engine(worker.process)  # a hung engine, or what its backend left behind
            worker.process.join(5)
            with contextlib.suppress(OSError):
                worker.conn.close()
        for segment in {flight.segment for flight in self._flights.values()}:
            unlink_segment(segment)
        self._flights.clear()
        self._messages = queue.Queue()
        self._early.clear()

    # -- what the run asks of an engine -----------------------------------------------------
    def count_prompt_tokens(self, request: CaptionRequest) -> int:
        """Text tokens of the templated prompt, each video placeholder replaced by its tokens."""
        return prompt_token_count(self._processor, request, self.family_of(request))

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        """Spread a batch over the engines and wait for all of it; outputs in request order."""
        outputs = {o.request_id: o for o in self.submit(requests)}
        wanted = {r.request_id for r in requests}
        while not wanted <= outputs.keys():
            got = self.collect(wait=True)
            if not got and not self.in_flight:
                break
            outputs.update((o.request_id, o) for o in got)
        return [
            outputs.get(r.request_id) or CaptionOutput(r.request_id, error="the engine returned no output")
            for r in requests
        ]

    def submit(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        """Send each request to the engine with the fewest in flight; frames via shared memory.

        Each engine gets its share of the call in one message, so that an engine without a
        scheduler (transformers) runs it as one batch, as it would the whole call alone.
        """
        shares: dict[int, list[CaptionRequest]] = {}
        segments: dict[int, str] = {}  # one shared memory segment per engine's share
        try:
            for request in requests:
                worker = self._least_loaded()
                if worker.rank not in segments:
                    segments[worker.rank] = segment_name("frames", os.getpid(), next(_segment_numbers))
                self._flights[request.request_id] = _Flight(worker.rank, segments[worker.rank])
                worker.requests += 1
                if worker.in_flight == 0:
                    worker.busy_since = time.monotonic()
                worker.in_flight += 1
                shares.setdefault(worker.rank, []).append(request)
        finally:
            for rank, share in shares.items():
                try:
                    self._workers[rank].conn.send_bytes(dumps_shared(("submit", share), segments[rank]))
                except OSError:  # it died: its end-of-file, read next, fails these requests
                    unlink_segment(segments[rank])
        return []

    def collect(self, *, wait: bool = True) -> list[CaptionOutput]:
        """Outputs from every engine as they finish; an engine's death fails its requests."""
        outputs: list[CaptionOutput] = []
        while self._early:
            outputs.extend(self._handle(*self._early.popleft()))
        while True:
            block = wait and not outputs and bool(self._flights)
            try:
                rank, message = self._messages.get(block=block)
            except queue.Empty:
                return outputs
            outputs.extend(self._handle(rank, message))

    def pids(self) -> list[int]:
        """The engines' process ids, in rank order (to watch them, or stop one in a test)."""
        return [w.process.pid for w in self._workers]

    @property
    def in_flight(self) -> int:
        """Requests submitted and not yet returned by ``collect``, over all engines."""
        return len(self._flights)

    def max_in_flight(self, batch_size: int) -> int:
        """What one engine schedules (engine 1 says), times the engines alive."""
        alive = [w for w in self._workers if w.alive]
        if not alive:
            return batch_size
        first = alive[0]
        try:
            first.conn.send(("ask", "max_in_flight", (batch_size,)))
        except OSError:  # it died: collect will say so
            return batch_size * len(alive)
        while first.rank not in self._answers:
            rank, message = self._messages.get()
            if message[0] == "answer" and rank == first.rank:
                self._answers[rank] = message[1]
            else:
                self._early.append((rank, message))  # collect handles them first, in order
                if message[0] == "eof" and rank == first.rank:
                    break
        per_engine = self._answers.pop(first.rank, batch_size)
        return int(per_engine) * len(alive)

    def engine_stats(self) -> dict[str, Any]:
        """Per-engine statistics for the run summary.

        ``{"data_parallel_size": N, "engines": [...]}``, one entry per engine, in rank order:
        ``engine`` (1-based), ``devices`` (``"GPU 1"``, ``"CPUs 0-3"``), ``requests`` (sent to it),
        ``busy_s`` (seconds it had at least one request in flight), ``alive`` and ``error`` (what
        its requests in flight got when it died; None while alive).
        """
        now = time.monotonic()
        return {"data_parallel_size": self.size, "engines": [engine_entry(w, now) for w in self._workers]}

    # -- internals --------------------------------------------------------------------------
    def _least_loaded(self) -> _Worker:
        alive = [w for w in self._workers if w.alive]
        if not alive:
            raise EngineDiedError(self._all_dead())
        return min(alive, key=lambda w: (w.in_flight, w.requests, w.rank))

    def _handle(self, rank: int, message: Any) -> list[CaptionOutput]:
        worker = self._workers[rank] if rank < len(self._workers) else None
        if worker is None:
            return []
        kind = message[0]
        if kind == "outputs":
            outputs = [o for o in message[1] if o.request_id in self._flights]
            for output in outputs:
                self._flights.pop(output.request_id)
                self._finished(worker)
            return outputs
        if kind == "answer":
            self._answers[rank] = message[1]
        elif kind == "crashed":
            worker.reason = message[1]
        elif kind == "eof":
            return self._died(worker)
        return []

    def _finished(self, worker: _Worker) -> None:
        worker.in_flight -= 1
        if worker.in_flight == 0 and worker.busy_since is not None:
            worker.busy_s += time.monotonic() - worker.busy_since
            worker.busy_since = None

    def _died(self, worker: _Worker) -> list[CaptionOutput]:
        """Fail the dead engine's requests in flight; with no engine left, fail the run."""
        worker.alive = False
        worker.process.join(5)
        worker.error = f"{worker.label} died: {worker.reason or _exit_reason(worker.process)}"
        lost = [rid for rid, flight in self._flights.items() if flight.rank == worker.rank]
        for request_id in lost:
            unlink_segment(self._flights.pop(request_id).segment)  # if it never took the frames
            self._finished(worker)
        if not any(w.alive for w in self._workers):
            raise EngineDiedError(self._all_dead())
        return [CaptionOutput(request_id, error=worker.error) for request_id in lost]

    def _all_dead(self) -> str:
        errors = "; ".join(w.error or w.label for w in self._workers)
        return f"all {self.size} engines died ({errors}); rerun the same command to resume"


class DataParallelExecutor(Executor):
    """The job's one feed on ``data_parallel_size`` engines of this node (``DataParallelEngine``):
    one writer, one lock, one resume, so exactly-once and input order hold as with one engine."""

    name = "data_parallel"

    @classmethod
    def accepts(cls, config: RunConfig) -> bool:
        """Runs with ``--data-parallel-size`` over 1."""
        return config.engine.data_parallel_size > 1

    def engine(self) -> CaptionEngine:
        """N backend engines behind one, not started; each child builds its own backend engine."""
        from vidcap import engines

        config = self.config
        return DataParallelEngine(config.engine, config.generation, engine_factory=engines.create_engine)


def _receive(worker: _Worker, messages: queue.Queue[tuple[int, Any]]) -> None:
    """Move a child's messages to the queue ``collect`` reads (in a thread per child, so that a
    child never waits on a full pipe while the parent is busy); its end as an ``("eof",)``.
    The queue is this start's: a thread of engines closed before a restart writes to theirs."""
    while True:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            messages.put((worker.rank, ("eof",)))
            return
        messages.put((worker.rank, message))


def _kill_engine(process: Any) -> None:
    """SIGKILL an engine's process group (see ``serve_engine``), and its process, in case it
    was killed before it made its group."""
    if process.pid is None:
        return
    kill_process_group(process.pid)
    if process.is_alive():
        process.kill()


def _exit_reason(process: Any) -> str:
    code = process.exitcode
    if code is None:
        return "its process stopped answering"
    if code < 0:
        return f"its process was killed by {signal_name(code)}"
    return f"its process exited with code {code}"


# -- the child process ------------------------------------------------------------------------
def serve_engine(
    conn: Connection,
    config: EngineConfig,
    generation: GenerationOptions,
    max_videos_per_prompt: int,
    env: dict[str, str],
    engine_factory: EngineFactory,
) -> None:
    """A child's life: start one engine on its own devices, run what the parent sends, stop.

    Messages in: ``("submit", [request, ...])`` (``dumps_shared``: the frames in shared memory),
    ``("ask", method, args)``, ``("stop",)``; out: ``("ready", limits)`` or ``("failed", message)``,
    ``("outputs", [...])``, ``("answer", value)``, ``("crashed", message)`` before an unexpected exit.
    """
    # Its own process group, which vLLM's processes join as they start: the parent ends the
    # engine with one killpg, whatever is left of it (a start that hangs, orphaned workers).
    os.setpgid(0, 0)
    os.environ.update(env)  # before the engine imports torch or vLLM: they read it once
    serving = threading.Event()
    inbox = _read_parent(conn, serving)
    engine = engine_factory(config, generation)
    try:
        try:
            engine.start(max_videos_per_prompt=max_videos_per_prompt)
        except BaseException as exc:
            conn.send(("failed", one_line(exc)))
            return
        conn.send(
            (
                "ready",
                {
                    "max_model_len": engine.max_model_len,
                    "model_sampling": engine.model_sampling,
                    "encoder_cache_tokens": getattr(engine, "encoder_cache_tokens", None),
                },
            )
        )
        serving.set()
        _serve_loop(conn, engine, inbox)
    except BaseException as exc:
        with contextlib.suppress(OSError, ValueError):
            conn.send(("crashed", one_line(exc)))
        raise
    finally:
        engine.close()


def _read_parent(conn: Connection, serving: threading.Event) -> queue.Queue[Any]:
    """The parent's messages, read in a thread from the child's start on. When the parent is
    gone (end of file) nobody will take the outputs: a serving engine stops after the work in
    hand (killed if that takes over ``_STOP_S``), a starting one ends its group at once, as
    its start cannot be interrupted otherwise."""
    inbox: queue.Queue[Any] = queue.Queue()

    def read() -> None:
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                break
            try:
                # Frames come as views of their shared memory, whose name is unlinked here.
                inbox.put(loads_shared(data))
            except Exception as exc:  # its requests would wait forever: the engine fails instead
                inbox.put(("unreadable", one_line(exc)))
        inbox.put(("stop",))
        if serving.is_set():
            time.sleep(_STOP_S)  # a daemon thread: the process ends before this when it stops in time
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=read, name="vidcap-engine-inbox", daemon=True).start()
    return inbox


def _serve_loop(conn: Connection, engine: CaptionEngine, inbox: queue.Queue[Any]) -> None:
    while True:
        messages = []
        with contextlib.suppress(queue.Empty):
            # Idle: wait for work. Busy: take what came, then let the engine step.
            messages.append(inbox.get(block=engine.in_flight == 0))
            while True:
                messages.append(inbox.get_nowait())
        requests = []
        for message in messages:
            if message[0] == "stop":
                return
            if message[0] == "unreadable":
                raise RuntimeError(f"a message from the run could not be read: {message[1]}")
            if message[0] == "submit":
                requests.extend(message[1])
            elif message[0] == "ask":
                _, method, args = message
                conn.send(("answer", getattr(engine, method)(*args)))
        if requests:
            refused = engine.submit(requests)
            if refused:
                conn.send(("outputs", refused))
        if engine.in_flight:
            outputs = engine.collect(wait=True)
            if outputs:
                conn.send(("outputs", outputs))


def engine_entry(engine: Any, now: float) -> dict[str, Any]:
    """One engine's entry in the summary's ``engines`` list (here, and the Ray executor's): its
    ``rank``, ``label`` ("engine N of M (devices)"), ``requests``, ``busy_s``/``busy_since``,
    ``alive`` and ``error``, with ``busy_s`` counted up to ``now``."""
    busy = engine.busy_s + (now - engine.busy_since if engine.busy_since is not None else 0.0)
    return {
        "engine": engine.rank + 1,
        "devices": engine.label.split("(", 1)[1].rstrip(")"),
        "requests": engine.requests,
        "busy_s": round(busy, 3),
        "alive": engine.alive,
        "error": engine.error,
    }
