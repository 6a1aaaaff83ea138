"""Build a tiny, random-weight Qwen2.5-VL or Qwen3-VL checkpoint that runs offline.

The checkpoint (model, tokenizer, processor, chat template; about 1 MB) exercises the
whole captioning path (frame plan, processor, vLLM or transformers engine) on a machine
with no hub access and no GPU. Its captions are noise: random weights say nothing
about caption quality.

The two families differ where vidcap must follow them: the patch size (14 vs 16, so the
patch factor is 28 vs 32), what the video processor's ``size`` bounds (one frame's area vs
the whole video's T x H x W) and the prompt (Qwen3-VL puts a ``<t seconds>`` text and
vision markers before every temporal patch of frames).
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# A Qwen-style chat template: a video part becomes <|vision_start|><|video_pad|><|vision_end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_TRAINING_TEXT = [
    "Please describe the video in detail.",
    "A person walks through a park on a sunny day while birds fly overhead.",
    "The camera pans across a city street with cars, buses and people crossing.",
    "A red ball bounces on a wooden floor, then rolls slowly out of the frame.",
    "Describe the scene, the main objects, the colours, the motion and the mood.",
    "system user assistant You are a helpful assistant.",
    "0123456789 {} [] () : ; , . ! ? ' \" - _ / \\ # @ & * + = < > | ~ ` ^ % $",
]


FAMILIES = ("qwen2.5-vl", "qwen3-vl")

_VOCAB_SIZE = 640
# The text model: hidden 128, 2 layers, head_dim 64 (the smallest head size the CPU attention
# kernels of vLLM accept); mrope_section sums to head_dim / 2.
_TEXT = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 64,
    "vocab_size": _VOCAB_SIZE,
    "max_position_embeddings": 128000,  # as Qwen2.5-VL-7B and Qwen3-VL: long videos fit
    "tie_word_embeddings": True,
}

# The vision tower: depth 2, hidden 32; its output matches the text model's hidden size.
_VISION = {
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "out_hidden_size": _TEXT["hidden_size"],
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}


def build_tiny_model(out_dir: str | Path, *, family: str = "qwen2.5-vl", seed: int = 0) -> Path:
    """Write a tiny random-weight checkpoint of ``family`` to ``out_dir`` and return its path.

    ``family`` is ``"qwen2.5-vl"`` or ``"qwen3-vl"`` (see ``FAMILIES``). The text model has
    hidden size 128, 2 layers and head_dim 64; the vision tower has depth 2. Building takes a
    few seconds and needs no network. Raises ValueError for an unknown family.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer()
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    build = _qwen3_vl if family == "qwen3-vl" else _qwen2_5_vl
    model_class, config, processor = build(tokenizer, ids)
    config.bos_token_id = ids["<|endoftext|>"]
    config.eos_token_id = ids["<|im_end|>"]
    config.pad_token_id = ids["<|endoftext|>"]

    torch.manual_seed(seed)
    model = model_class(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _build_tokenizer():
    """A byte-level BPE tokenizer trained on a few sentences, with Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_TRAINING_TEXT, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    assert len(tokenizer) <= _VOCAB_SIZE, len(tokenizer)
    return tokenizer


def _token_ids(ids: dict[str, int]) -> dict[str, int]:
    return {
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }


def _vision_token_ids(ids: dict[str, int]) -> dict[str, int]:
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }


def _qwen2_5_vl(tokenizer, ids: dict[str, int]):
    """(model class, config, processor) of a tiny Qwen2.5-VL: patch 14, per-frame size bounds."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    config = Qwen2_5_VLConfig(
        text_config={
            **_TEXT,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": [8, 12, 12],
            },
            **_token_ids(ids),
        },
        vision_config={
            **_VISION,
            "patch_size": 14,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        **_vision_token_ids(ids),
        tie_word_embeddings=True,
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        video_processor=Qwen2VLVideoProcessor(),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    return Qwen2_5_VLForConditionalGeneration, config, processor


def _qwen3_vl(tokenizer, ids: dict[str, int]):
    """(model class, config, processor) of a tiny Qwen3-VL: patch 16, deepstack, interleaved
    mrope, and the processors' settings of the Qwen3-VL checkpoints (whole-video size bounds)."""
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    config = Qwen3VLConfig(
        text_config={
            **_TEXT,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": [8, 12, 12],
                "mrope_interleaved": True,
            },
            **_token_ids(ids),
        },
        vision_config={
            **_VISION,
            "patch_size": 16,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [0],
        },
        **_vision_token_ids(ids),
        tie_word_embeddings=True,
    )
    # Qwen3-VL-*-Instruct's preprocessor configs: the video size bounds the whole T x H x W.
    image_processor = Qwen2VLImageProcessor(
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
        size={"shortest_edge": 65536, "longest_edge": 16777216},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    video_processor = Qwen3VLVideoProcessor(
        size={"shortest_edge": 4096, "longest_edge": 25165824},
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
    )
    processor = Qwen3VLProcessor(
        image_processor=image_processor,
        video_processor=video_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    return Qwen3VLForConditionalGeneration, config, processor


def build_tiny_text_model(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight text-only Qwen2 (``Qwen2ForCausalLM``) to ``out_dir``: the text
    model of ``build_tiny_model`` with the same tokenizer and chat template, no vision tower.
    For text-only runs (``vidcap run --no-video``); its answers are noise, as random weights give."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer()
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    rope = {"rope_type": "default", "rope_theta": 1000000.0}
    config = Qwen2Config(**_TEXT, **_token_ids(ids), rope_parameters=rope)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
