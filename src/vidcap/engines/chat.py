"""Build model prompts from caption requests with the model's own chat template.

No prompt string is hard-coded: the processor's chat template decides where the video
placeholders and role markers go, so any video VLM with a chat template works.
"""

from __future__ import annotations

from typing import Any

from vidcap.engines.base import CaptionRequest


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
    replaced by that video's planned visual tokens (exact for Qwen2/2.5-VL)."""
    text = render_prompt(processor, request)
    return text_token_count(processor, text) - len(request.videos) + request.video_tokens


def fixed_size_kwargs(request: CaptionRequest) -> dict[str, Any]:
    """Processor kwargs that make the HF video processor keep the planned frame size.

    The frames already have the planned size, a multiple of the patch factor. Bounding the
    processor's own ``smart_resize`` to exactly the planned areas makes it a no-op, whatever
    min/max pixels the checkpoint's preprocessor config holds.
    """
    areas = [int(v.frames.shape[1]) * int(v.frames.shape[2]) for v in request.videos]
    if not areas:
        return {}
    return {"size": {"shortest_edge": min(areas), "longest_edge": max(areas)}}
