"""The interface every generation backend implements, and the data it takes and returns.

A backend receives ``CaptionRequest`` objects that already hold the decoded, planned frames
and the prompt text, and returns one ``CaptionOutput`` per request, matched by
``request_id``. Backends never see input records, files or statuses: that is the runner's job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vidcap.generation import GenerationOptions, ResolvedSampling, resolve_sampling
from vidcap.model_info import VisionGeometry, vision_geometry

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

    def sampling(self) -> ResolvedSampling:
        """The sampling values requests are sent with, and where each came from."""
        return resolve_sampling(self.generation, self.model_sampling)

    def vision_geometry(self) -> VisionGeometry:
        """The model's patch geometry, which the frame plan must match (from its config)."""
        return vision_geometry(self.config.model, cache_dir=self.config.cache_dir)

    def close(self) -> None:  # noqa: B027 - optional hook, most engines free memory on exit
        """Release the model and its worker processes."""

    def __enter__(self) -> CaptionEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
