"""The interface every generation backend implements, and the data it takes and returns.

A backend receives ``CaptionRequest`` objects that already hold the decoded, planned frames
and the prompt text, and returns one ``CaptionOutput`` per request, matched by
``request_id``. Backends never see input records, files or statuses: that is the runner's job.

Two ways in, one contract: the feed streams (``submit`` requests as their frames are ready,
``collect`` outputs as they finish, in whatever order they finish); ``generate`` is the
one-batch form for callers that have all their requests at once. An engine with its own
scheduler (vLLM) implements the streaming pair; the base class gives the others (one model call
per batch) a streaming face by running what was submitted as one ``generate`` batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vidcap.families import Family, get_family
from vidcap.generation import GenerationOptions, ResolvedSampling, resolve_sampling
from vidcap.model.info import VisionGeometry, vision_geometry

if TYPE_CHECKING:
    from vidcap.config import EngineConfig

# GenerationOptions lives in the leaf module vidcap.generation (config imports it without
# importing the engines); it is named here too, beside the other types an engine takes.
__all__ = ["CaptionEngine", "CaptionOutput", "CaptionRequest", "GenerationOptions", "VideoInput"]


@dataclass
class VideoInput:
    """One video of a request: RGB uint8 frames (T, H, W, 3) at their planned size, plus metadata."""

    frames: np.ndarray
    metadata: dict[str, Any]  # FramePlan.processor_metadata(): fps, frames_indices, total_num_frames...
    video_tokens: int


@dataclass
class CaptionRequest:
    """What to ask the model for one record."""

    request_id: str
    prompt: str
    videos: list[VideoInput]
    system_prompt: str | None = None
    #: Sampling values for this request only, over the run's (``seed`` for a retry, ``max_tokens``
    #: and ``min_tokens`` for a benchmark's forced lengths); names as in ``SamplingParams``.
    sampling: dict[str, Any] = field(default_factory=dict)

    @property
    def video_tokens(self) -> int:
        """Visual tokens all videos of this request add to the prompt."""
        return sum(v.video_tokens for v in self.videos)


@dataclass
class CaptionOutput:
    """The answer for one request: ``texts`` (one per caption asked for) or an ``error``.

    ``finish_reasons``: why each text ended, one per text: ``"stop"`` (a stop token or string),
    ``"length"`` (it reached ``max_tokens``), or what the backend says; empty when unknown.
    """

    request_id: str
    texts: list[str] | None = None
    error: str | None = None
    prompt_tokens: int = 0
    generated_tokens: int = 0
    finish_reasons: list[str | None] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class CaptionEngine(ABC):
    """A loaded model that turns caption requests into text.

    ``start`` loads the model (slow, once per run); ``generate`` may be called many times.
    Implementations must return exactly one output per request and must not raise for a
    failure confined to one request: they report it in that request's ``error``.
    """

    name: str = "engine"
    config: EngineConfig
    generation: GenerationOptions = GenerationOptions()
    #: The longest prompt + generation the engine accepts; known after ``start``.
    max_model_len: int | None = None
    #: The model's own sampling values (its generation config, as vLLM reads it), known after
    #: ``start``; None when they cannot be known (a remote server's model).
    model_sampling: dict[str, Any] | None = None

    @abstractmethod
    def start(self, *, max_videos_per_prompt: int) -> None:
        """Load the model; ``max_videos_per_prompt`` lets the engine reserve memory for the data."""

    @abstractmethod
    def count_prompt_tokens(self, request: CaptionRequest) -> int:
        """Estimate the prompt length in tokens (text + visual) without running the model."""

    @abstractmethod
    def generate(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        """Generate captions for a batch; the outputs are matched to requests by ``request_id``."""

    # -- streaming: what the feed uses ------------------------------------------------------
    def submit(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        """Hand requests to the engine, which works on them while the caller goes on.

        Returns the outputs of requests refused at once (with their ``error``; they are not in
        flight and ``collect`` will not return them). Request ids must be unique among the
        requests in flight. Default: held until ``collect`` runs them as one ``generate`` batch.
        """
        self._held().extend(requests)
        return []

    def collect(self, *, wait: bool = True) -> list[CaptionOutput]:
        """Outputs of submitted requests that finished since the last call, in finishing order.

        ``wait=True`` blocks until at least one has finished (``[]`` only when nothing is in
        flight); ``wait=False`` returns at once, maybe ``[]``. Default: ``wait=True`` runs every
        held request as one ``generate`` batch; ``wait=False`` returns ``[]`` (nothing runs
        between calls in an engine without a scheduler).
        """
        held = self._held()
        if not wait or not held:
            return []
        batch = list(held)
        held.clear()
        return self.generate(batch)

    @property
    def in_flight(self) -> int:
        """Requests submitted and not yet returned by ``collect``."""
        return len(self._held())

    def max_in_flight(self, batch_size: int) -> int:
        """How many requests the feed keeps in flight by default. An engine without a scheduler
        gains nothing from more than one batch (``batch_size``); vLLM says what it can schedule."""
        return batch_size

    def request_notes(self, requests: list[CaptionRequest]) -> list[str]:
        """What the engine (or the server behind it) may change in the videos of one record's
        requests (one, or one per window), for the record's notes (an OpenAI-compatible server
        that assumes its own frame rate); [] when nothing."""
        return []

    def engine_stats(self) -> dict[str, Any] | None:
        """Statistics the engine keeps itself, for the run summary's ``engine`` object (with
        several engines, one entry each: see ``DataParallelEngine``); None when it keeps none."""
        return None

    def _held(self) -> list[CaptionRequest]:
        held = self.__dict__.get("_held_requests")
        if held is None:
            held = self.__dict__["_held_requests"] = []
        return held

    def sampling(self) -> ResolvedSampling:
        """The sampling values requests are sent with, and where each came from."""
        return resolve_sampling(self.generation, self.model_sampling)

    def planned_max_model_len(self) -> int | None:
        """The ``max_model_len`` the engine will have once started, known before it loads the
        model, so that the run can plan and decode videos while it loads (the runner checks it
        against ``max_model_len`` after ``start``). Default: the configured one, if any."""
        config = getattr(self, "config", None)
        return getattr(config, "max_model_len", None)

    def vision_geometry(self) -> VisionGeometry:
        """The model's patch geometry, which the frame plan must match (from its config)."""
        return vision_geometry(self.config.model, cache_dir=self.config.cache_dir, family=self.config.family)

    def family(self) -> Family:
        """The model's family (``vision_geometry().family``), found once: it decides the
        processor kwargs and the prompt token count of each request."""
        family = self.__dict__.get("_family")
        if family is None:
            family = self.__dict__["_family"] = get_family(self.vision_geometry().family)
        return family

    def family_of(self, request: CaptionRequest) -> Family | None:
        """The family that counts ``request``'s video tokens; None for a text-only request, which
        needs none (the text model of a --no-video run has no family)."""
        return self.family() if request.videos else None

    def close(self) -> None:  # noqa: B027 - optional hook, most engines free memory on exit
        """Release the model and its worker processes."""

    def __enter__(self) -> CaptionEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
