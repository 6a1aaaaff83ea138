"""The vLLM offline engine: one ``vllm.LLM`` per run, fed pre-decoded frames."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any

from vidcap.config import EngineConfig
from vidcap.engines.caption_engine import CaptionEngine, CaptionOutput, CaptionRequest, GenerationOptions
from vidcap.engines.chat import prompt_token_count, render_prompt
from vidcap.errors import EngineDiedError, engine_error
from vidcap.model.info import context_length, has_linear_attention
from vidcap.model.processor import load_processor, model_load_error
from vidcap.procs import held_stops_delivered, new_children_killed_on_error, stop_signals_blocked

_TEARDOWN_S = 30.0  # the most the engine core gets to tear down, and to die once killed
# vLLM's largest default max_num_batched_tokens (offline LLM on a large GPU): never set less.
_VLLM_MAX_BATCHED_TOKENS = 16384


def engine_context(cfg: EngineConfig) -> int | None:
    """The ``max_model_len`` vLLM resolves for this engine, read before loading it: the one
    given (in ``engine_kwargs``, which win, else ``--max-model-len``), else the model's own, read
    from its config as vLLM reads it (``model.info.context_length``); None when neither is known."""
    given = cfg.engine_kwargs.get("max_model_len") or cfg.max_model_len
    return int(given) if given else context_length(cfg.model, cache_dir=cfg.cache_dir)


def batch_budget(cfg: EngineConfig) -> int | None:
    """vLLM's ``max_num_batched_tokens`` for this engine: at least its context length.

    vLLM sizes its encoder cache (the most visual tokens one video may have) by
    max(max_num_batched_tokens, its own profile of the processor config), which knows nothing
    of vidcap's plan: 8,960 tokens for Qwen2.5-VL, while a 79 s 768x576 clip plans 44,793 by
    default. Its default budget depends on chunked prefill (off, as with a seed on the CPU
    build: max(max_model_len, 4096..16384); on: 4096..16384 alone), so whether a video was
    taken depended on --seed. Any video whose prompt passes the length check has fewer tokens
    than the context, so a budget of at least the context (--max-model-len, else the model's
    own, read from its config) admits every video the plan makes, with or without a seed, on
    every device. None when the context cannot be known (vLLM's default then).
    """
    context = engine_context(cfg)
    return max(context, _VLLM_MAX_BATCHED_TOKENS) if context else None


class VllmEngine(CaptionEngine):
    """Caption with ``vllm.LLM``; requests are queued with ``enqueue`` and matched back by id.

    Frames go in ``multi_modal_data`` as ``(frames, metadata)`` with ``do_sample_frames=False``
    so vLLM's processor neither resamples nor (see ``Family.processor_kwargs``) resizes them.
    """

    name = "vllm"

    def __init__(self, config: EngineConfig, generation: GenerationOptions) -> None:
        self.config = config
        self.generation = generation
        self._llm: Any = None
        self._processor: Any = None
        self._max_videos = 0
        self._batch_tokens: int | None = None
        #: The most visual tokens one video may have: vLLM's pre-allocated encoder cache.
        self.encoder_cache_tokens: int | None = None
        self._inspections = 0
        #: Requests in flight: vLLM's id (both its forms, see ``submit``) -> our request id.
        self._requests: dict[str, str] = {}

    def start(self, *, max_videos_per_prompt: int) -> None:
        """Load the model into a vLLM engine (the slow part of a run); a no-op if already loaded
        with room for as many videos per prompt."""
        if self._llm is not None:
            if max_videos_per_prompt <= self._max_videos:
                return
            self.close()  # the data needs more videos per prompt than the engine reserved
        # 0 (a text-only run, --no-video): no room for videos, so vLLM skips profiling the
        # vision encoder (and a text model, which has none, is not asked about it).
        self._max_videos = max(0, max_videos_per_prompt)
        os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "1")
        # The decode pool's threads run while the engine starts (decoding overlaps the load): a
        # forked engine process would inherit their held locks. vLLM's CUDA build forks by
        # default; spawn (the CPU build's default already) starts the engine clean.
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        from vllm import LLM

        cfg = self.config
        kwargs: dict[str, Any] = {
            "model": cfg.model,
            "tensor_parallel_size": cfg.tensor_parallel_size,
            "gpu_memory_utilization": cfg.gpu_memory_utilization,
            "max_model_len": cfg.max_model_len,
            "download_dir": cfg.cache_dir,
            "trust_remote_code": cfg.trust_remote_code,
            "enforce_eager": cfg.enforce_eager,
            "dtype": cfg.dtype,
            # Images are never sent: reserving no memory for them leaves more for the KV cache.
            "limit_mm_per_prompt": {"video": self._max_videos, "image": 0},
            # Compact JSON for --json-schema: with free whitespace, guided decoding can loop on
            # spaces and newlines until max_tokens and never close the object. The backends read
            # this engine-wide setting, not the per-request one.
            "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
            # vLLM's processor cache keeps processed videos (in the engine core, up to 4 GiB) to
            # serve one sent again; a run sends each video once, so it only holds memory
            # (BENCHMARKS.md, "Start-up"). A retried record is processed again.
            "mm_processor_cache_gb": 0,
            **cfg.engine_kwargs,
        }
        if "max_num_batched_tokens" not in cfg.engine_kwargs:
            kwargs["max_num_batched_tokens"] = batch_budget(cfg)
        if self.generation.seed is not None:
            kwargs["seed"] = self.generation.seed
            from vllm.platforms import current_platform

            if current_platform.is_cpu():
                # vLLM's CPU build rewinds a seeded request's generator after a partial
                # (chunked) prefill, and torch's CPU generator has no offset: the engine dies
                # ("CPU Generator does not use offset") once a batch outgrows one step.
                kwargs.setdefault("enable_chunked_prefill", False)
                if not kwargs["enable_chunked_prefill"] and has_linear_attention(
                    cfg.model, cache_dir=cfg.cache_dir
                ):
                    # A hybrid model's prefix caching keeps its recurrent state per block, which
                    # vLLM allows only with chunked prefill ("Chunked prefill is required for
                    # mamba cache mode 'align'"): the model would not load. Without prefix
                    # caching it needs no chunked prefill.
                    kwargs.setdefault("enable_prefix_caching", False)
        try:
            self._processor = load_processor(cfg)
            # The engine's processes ignore the job's stop signals: the run stops them (close).
            # A start that fails, or that a stop signal ends, leaves none of them behind, and
            # vLLM's own SIGTERM to its helpers, which the shield holds back, is delivered.
            with stop_signals_blocked(), held_stops_delivered(), new_children_killed_on_error():
                self._llm = LLM(**{k: v for k, v in kwargs.items() if v is not None})
        except Exception as exc:  # hub/config/OOM failures become one line
            raise model_load_error(cfg.model, exc) from exc
        model_config = self._llm.llm_engine.model_config
        self.max_model_len = int(model_config.max_model_len)
        # vLLM's own reading of the model's generation config (what get_default_sampling_params
        # and `vllm serve` apply), engine_kwargs such as generation_config = "vllm" included.
        self.model_sampling = dict(model_config.get_diff_sampling_param())
        cache = getattr(getattr(self._llm, "input_processor", None), "mm_encoder_cache_size", None)
        self.encoder_cache_tokens = int(cache) if cache else None
        scheduler = getattr(self._llm.llm_engine.vllm_config, "scheduler_config", None)
        self._batch_tokens = getattr(scheduler, "max_num_batched_tokens", None)

    def planned_max_model_len(self) -> int | None:
        """What ``max_model_len`` will be once started (``engine_context``), without loading."""
        return engine_context(self.config)

    def engine_stats(self) -> dict[str, Any] | None:
        """How the engine was sized for the plan (``batch_budget``): its context, vLLM's
        ``max_num_batched_tokens`` and the encoder cache (the most visual tokens one video may have)."""
        if self._llm is None:
            return None
        return {
            "max_model_len": self.max_model_len,
            "max_num_batched_tokens": self._batch_tokens,
            "encoder_cache_tokens": self.encoder_cache_tokens,
        }

    def request_problem(self, request: CaptionRequest) -> str | None:
        """Why vLLM would refuse this request before generating (a video larger than the
        encoder cache), with the numbers and what to change; None when it fits."""
        limit = self.encoder_cache_tokens
        for number, video in enumerate(request.videos, start=1):
            if limit is not None and video.video_tokens > limit:
                which = f"video {number} has" if len(request.videos) > 1 else "the video has"
                return (
                    f"{which} {video.video_tokens} visual tokens but the engine's encoder cache holds "
                    f"{limit} (vLLM max_num_batched_tokens); lower --fps, --max-frames, --max-pixels "
                    "or --total-pixels, or raise --max-model-len (or engine_kwargs max_num_batched_tokens)"
                )
        return None

    def inspect(self, request: CaptionRequest) -> dict[str, Any]:
        """What vLLM's own input processing makes of a request, without generating: the prompt
        token count and, per video, its processed grid and temporal metadata.

        The same code path as ``generate`` up to the engine core (the renderer and the HF
        processor in this process): for checking that the model sees the plan.
        """
        from vllm import SamplingParams

        self._inspections += 1
        prompt = self._prompt(request)
        # Ids of our own, so that vLLM's processor cache (keyed by content) misses and returns
        # the processed data even for videos it has seen before.
        tag = f"vidcap-inspect-{self._inspections}"
        if request.videos:
            prompt["multi_modal_uuids"] = {"video": [f"{tag}-{i}" for i in range(len(request.videos))]}
        processed = self._llm.input_processor.process_inputs(
            tag,
            prompt,
            SamplingParams(max_tokens=1),
            ("generate",),
        )
        videos = []
        for feature in processed.mm_features or []:
            data = feature.data or {}
            videos.append({k: _plain(v.data) for k, v in data.items() if k != "pixel_values_videos"})
        return {"prompt_tokens": len(processed.prompt_token_ids or []), "videos": videos}

    def _prompt(self, request: CaptionRequest) -> dict[str, Any]:
        prompt: dict[str, Any] = {"prompt": render_prompt(self._processor, request)}
        # A text-only request (a windowed record's summary) carries no multimodal fields at all,
        # so vLLM treats it as the plain text prompt it is (no multimodal processing to run).
        if request.videos:
            prompt["multi_modal_data"] = {"video": [(v.frames, v.metadata) for v in request.videos]}
            prompt["mm_processor_kwargs"] = self.family().processor_kwargs(request)
        return prompt

    def count_prompt_tokens(self, request: CaptionRequest) -> int:
        """Text tokens of the templated prompt, each video placeholder replaced by its tokens."""
        return prompt_token_count(self._processor, request, self.family_of(request))

    def max_in_flight(self, batch_size: int) -> int:
        """vLLM's scheduler runs up to ``max_num_seqs`` sequences at once (256 by default on a
        GPU); one batch more waits in its queue, so that a finished sequence's slot is filled
        at the next step, not after the main process has preprocessed the next video."""
        engine = getattr(self._llm, "llm_engine", None)
        scheduler = getattr(getattr(engine, "vllm_config", None), "scheduler_config", None)
        seqs = getattr(scheduler, "max_num_seqs", None)
        if not seqs:
            return super().max_in_flight(batch_size)
        # n > 1 runs every caption of a request as a sequence of its own.
        return max(1, int(seqs) // max(1, self.generation.num_captions)) + batch_size

    def submit(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        """``LLM.enqueue`` each request (its processor runs here, in this process); a request
        vLLM would refuse, or one whose enqueue raises, comes back at once with its error."""
        from vllm import SamplingParams

        base = _sampling_kwargs(self.generation, self.sampling().values)
        shared = SamplingParams(**base)
        refused: list[CaptionOutput] = []
        for request in requests:
            if request.request_id in self._requests.values():
                raise ValueError(f"request id {request.request_id!r} is already in flight")
            problem = self.request_problem(request)
            if problem is not None:  # vLLM would refuse it with a message that names no flag
                refused.append(CaptionOutput(request.request_id, error=problem))
                continue
            try:
                params = SamplingParams(**{**base, **request.sampling}) if request.sampling else shared
                (engine_id,) = self._llm.enqueue([self._prompt(request)], params, use_tqdm=False)
            except Exception as exc:  # one request's failure must not cost the others
                refused.append(CaptionOutput(request.request_id, error=engine_error(exc)))
                continue
            # enqueue returns vLLM's internal id ("7-1a2b3c4d": the external id plus a random
            # suffix); outputs carry the external id. Either form finds the request.
            self._requests[engine_id] = self._requests[engine_id.rsplit("-", 1)[0]] = request.request_id
        return refused

    def collect(self, *, wait: bool = True) -> list[CaptionOutput]:
        """Step the engine (what ``LLM.wait_for_completion`` does in a loop) and return the
        requests that finished. ``wait=False`` steps only while the engine core has outputs
        waiting (a multiprocess engine core runs on its own meanwhile); an in-process engine
        core makes one step."""
        engine = self._llm.llm_engine
        queue = getattr(engine.engine_core, "outputs_queue", None)
        finished: list[CaptionOutput] = []
        stepped = False
        while self._requests:
            if not engine.has_unfinished_requests():
                # Nothing left in vLLM but requests of ours: they are lost, not merely late.
                lost = sorted(set(self._requests.values()))
                self._requests.clear()
                finished += [CaptionOutput(r, error="the engine returned no output") for r in lost]
                break
            if (finished or not wait) and (stepped if queue is None else queue.empty()):
                break
            stepped = True
            for result in _step(engine):
                if getattr(result, "finished", False):
                    output = self._output(result)
                    if output is not None:
                        finished.append(output)
        return finished

    def _output(self, result: Any) -> CaptionOutput | None:
        """Our output for a finished vLLM result (None for a request not ours, or already returned)."""
        request_id = self._requests.get(result.request_id)
        if request_id is None:
            return None
        for key in [k for k, v in self._requests.items() if v == request_id]:
            del self._requests[key]
        return CaptionOutput(
            request_id,
            texts=[c.text for c in result.outputs],
            prompt_tokens=len(result.prompt_token_ids or []),
            generated_tokens=sum(len(c.token_ids) for c in result.outputs),
            finish_reasons=[c.finish_reason for c in result.outputs],
        )

    @property
    def in_flight(self) -> int:
        """Requests enqueued and not yet returned by ``collect``."""
        return len(set(self._requests.values()))

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        """One batch: ``submit`` it, then ``collect`` until every request is back."""
        if self._requests:
            raise RuntimeError("generate() while streamed requests are in flight: collect them first")
        outputs = {output.request_id: output for output in self.submit(requests)}
        while self._requests:
            outputs.update((output.request_id, output) for output in self.collect(wait=True))
        return [outputs[r.request_id] for r in requests]

    def close(self) -> None:
        """Shut the engine's processes down."""
        llm, self._llm = self._llm, None
        self._requests.clear()
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            _stop_engine_core(engine)
            shutdown = getattr(engine, "shutdown", None)
            if callable(shutdown):
                shutdown()
            del llm


def _step(engine: Any) -> list[Any]:
    """One engine step; an engine core that died (killed, out of memory) is the run's
    ``EngineDiedError`` (exit 70: the records written are kept, a rerun resumes), not a bug."""
    try:
        return engine.step()
    except Exception as exc:
        if type(exc).__name__ != "EngineDeadError":
            raise
        raise EngineDiedError(
            "the vLLM engine core died mid-run (vLLM's messages say why: out of memory, killed, ...); "
            "the records written are kept: rerun the same command to resume"
        ) from exc


def _stop_engine_core(engine: Any) -> None:
    """Stop the engine-core processes, which block SIGTERM, vLLM's way of stopping them.

    The engine core first tears down its workers and shared memory (they exit cleanly), then
    is killed: without this, vLLM's shutdown waits 5 s for the blocked SIGTERM, kills them all
    and leaves the resource tracker to warn about leaked shared memory. An in-process engine
    core, or a vLLM whose internals differ, is left to vLLM's own shutdown.
    """
    client = getattr(engine, "engine_core", None)
    manager = getattr(getattr(client, "resources", None), "engine_manager", None)
    procs = [p for p in getattr(manager, "processes", None) or [] if getattr(p, "pid", None)]
    if not procs:
        return

    def teardown() -> None:
        with contextlib.suppress(Exception):  # a dead engine core has nothing left to tear down
            client.call_utility("shutdown")

    # Not with requests still running (a second Ctrl-C abandoned them): the engine core would
    # step on with its workers gone. Then the kill alone ends it; its workers exit on their own.
    busy = getattr(engine, "has_unfinished_requests", lambda: True)
    if not busy():
        # In a thread: an engine core that does not answer must not hang the end of the run.
        thread = threading.Thread(target=teardown, name="vidcap-engine-teardown", daemon=True)
        thread.start()
        thread.join(timeout=_TEARDOWN_S)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.join(_TEARDOWN_S)


def _sampling_kwargs(generation: GenerationOptions, values: dict[str, Any]) -> dict[str, Any]:
    """``SamplingParams`` arguments: every resolved sampling value, explicitly (a
    ``SamplingParams`` built from scratch would otherwise ignore the model's generation config)."""
    kwargs: dict[str, Any] = {"n": generation.num_captions, "seed": generation.seed, **values}
    if generation.json_schema is not None:
        from vllm.sampling_params import StructuredOutputsParams

        kwargs["structured_outputs"] = StructuredOutputsParams(json=generation.json_schema)
    return kwargs


def _plain(value: Any) -> Any:
    """A tensor or nested list as plain Python numbers (for comparing with the plan)."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value
