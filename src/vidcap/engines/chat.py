"""Build model prompts from caption requests with the model's own chat template.

No prompt string is hard-coded: the processor's chat template decides where the video
placeholders and role markers go, so any video VLM with a chat template works.
"""

from __future__ import annotations

from typing import Any

from vidcap.engines.caption_engine import CaptionRequest, VideoInput
from vidcap.families import DEFAULT_FAMILY, Family, get_family
from vidcap.families.family import hf_video_metadata, text_token_count
from vidcap.families.qwen_vl import qwen_fixed_size_kwargs

__all__ = [
    "build_messages",
    "fixed_size_kwargs",
    "hf_video_metadata",
    "prompt_token_count",
    "render_prompt",
    "text_token_count",
    "video_placeholder_tokens",
]


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


def prompt_token_count(processor: Any, request: CaptionRequest, family: Family | None = None) -> int:
    """The prompt length the engine will see: text tokens, each video placeholder token
    replaced by the tokens the processor puts there for that video (``video_placeholder_tokens``)."""
    text = render_prompt(processor, request)
    visual = sum(video_placeholder_tokens(processor, v, family) for v in request.videos)
    return text_token_count(processor, text) - len(request.videos) + visual


def video_placeholder_tokens(processor: Any, video: VideoInput, family: Family | None = None) -> int:
    """Tokens that replace one video's placeholder token in the prompt, as ``family`` (default:
    Qwen2.5-VL) counts them with the processor (see ``Family.placeholder_tokens``)."""
    return (family or get_family(DEFAULT_FAMILY)).placeholder_tokens(processor, video)


def fixed_size_kwargs(request: CaptionRequest) -> dict[str, Any]:
    """Processor kwargs that make a Qwen VL video processor keep the planned frame size
    (``QwenVLFamily.processor_kwargs``): for a server whose model vidcap cannot see. An engine
    that knows its model asks its family instead."""
    return qwen_fixed_size_kwargs(request)
