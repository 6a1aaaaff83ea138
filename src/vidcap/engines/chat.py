"""Build model prompts from caption requests with the model's own chat template.

No prompt string is hard-coded: the processor's chat template decides where the video
placeholders and role markers go, so any video VLM with a chat template works.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from vidcap.engines.base import CaptionRequest, VideoInput


def build_messages(request: CaptionRequest) -> list[dict[str, Any]]:
    """The HF-style conversation for a request: an optional system turn, then videos + text."""
    messages: list[dict[str, Any]] = []
    if request.system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": request.system_prompt}]})
    content: list[dict[str, Any]] = [{"type": "video"} for _ in request.videos]
    content.append({"type": "text", "text": request.prompt})
    messages.append({"role": "user", "content": content})
    return messages


def render_prompt(processor: Any, request: CaptionRequest) -> str:
    """The prompt text (with one video placeholder per video) that the model will be given."""
    template_owner = processor if getattr(processor, "chat_template", None) else processor.tokenizer
    return template_owner.apply_chat_template(
        build_messages(request), tokenize=False, add_generation_prompt=True
    )


def text_token_count(processor: Any, prompt_text: str) -> int:
    """Tokens of the rendered prompt before the processor expands the video placeholders."""
    tokenizer = getattr(processor, "tokenizer", processor)
    return len(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])


def prompt_token_count(processor: Any, request: CaptionRequest) -> int:
    """The prompt length the engine will see: text tokens, each video placeholder token
    replaced by the tokens the processor puts there for that video (``video_placeholder_tokens``)."""
    text = render_prompt(processor, request)
    visual = sum(video_placeholder_tokens(processor, v) for v in request.videos)
    return text_token_count(processor, text) - len(request.videos) + visual


def video_placeholder_tokens(processor: Any, video: VideoInput) -> int:
    """Tokens that replace one video's placeholder token in the prompt.

    Asked of the processor's own ``replace_video_token`` (transformers >= 5.10) with the
    planned grid and metadata, so the count follows the model family: Qwen2/2.5-VL put
    ``video_tokens`` pad tokens there; Qwen3-VL puts, before each temporal patch of frames,
    a ``<t seconds>`` text and vision start/end markers around its pad tokens. vLLM builds the
    same tokens (it tokenizes each timestamp text alone, which is the same here: special
    tokens split the text on both sides). A processor without that method: ``video_tokens``.
    """
    from transformers.processing_utils import ProcessorMixin

    replace = getattr(type(processor), "replace_video_token", None)
    video_processor = getattr(processor, "video_processor", None)
    if replace is None or replace is ProcessorMixin.replace_video_token or video_processor is None:
        return video.video_tokens
    from transformers.video_utils import VideoMetadata

    patch = int(video_processor.patch_size)
    temporal = int(video_processor.temporal_patch_size)
    frames, height, width = (int(n) for n in video.frames.shape[:3])
    grid = np.array([[-(-frames // temporal), height // patch, width // patch]])
    metadata = VideoMetadata(**hf_video_metadata(video.metadata))
    if metadata.frames_indices is not None:  # the processor may pad this list in place
        metadata.frames_indices = list(metadata.frames_indices)
    placeholder = processor.replace_video_token({"video_grid_thw": grid, "video_metadata": [metadata]}, 0)
    return text_token_count(processor, placeholder)


def hf_video_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The plan's metadata less the keys ``transformers.video_utils.VideoMetadata`` does not take
    (``do_sample_frames`` is a processor argument there, not metadata)."""
    from transformers.video_utils import VideoMetadata

    known = {f.name for f in dataclasses.fields(VideoMetadata)}
    return {k: v for k, v in metadata.items() if k in known}


def fixed_size_kwargs(request: CaptionRequest) -> dict[str, Any]:
    """Processor kwargs that make the HF video processor keep the planned frame size.

    The frames already have the planned size, a multiple of the patch factor; the processor's
    own ``smart_resize`` must leave them alone, whatever min/max pixels the checkpoint's
    preprocessor config holds. The families read ``size`` differently: Qwen2/2.5-VL bound
    one frame's area (H x W), Qwen3-VL the whole video's T x H x W (T rounded to a whole
    temporal patch). ``shortest_edge`` = the smallest frame area and ``longest_edge`` = the
    largest video volume keep every planned video inside both readings, so the same kwargs
    serve both families (and a server whose model vidcap cannot see).

    transformers' coming per-frame pixel cap (``cap_pixels_per_frame``, on by default from
    5.22) bounds a frame by ``max(min(cap, longest_edge / T), 1.05 * shortest_edge)`` (Qwen3-VL)
    or ``max(min(longest_edge, budget / T), 1.05 * shortest_edge)`` (Qwen2/2.5-VL): with
    these bounds a single video's frames are at most ``shortest_edge``, under the floor, so
    the cap changes nothing either way. Hence nothing else is pinned: ``cap_pixels_per_frame``
    itself will be removed from transformers, and passing it would then fail.
    """
    if not request.videos:
        return {}
    areas = [int(v.frames.shape[1]) * int(v.frames.shape[2]) for v in request.videos]
    # Qwen3-VL rounds T to an even count (round half to even), at most one frame more.
    volumes = [(len(v.frames) + 1) * area for v, area in zip(request.videos, areas, strict=True)]
    return {"size": {"shortest_edge": min(areas), "longest_edge": max(volumes)}}
