"""Build a tiny, random-weight checkpoint of a video VLM family that runs offline: Qwen2.5-VL,
Qwen3-VL, Qwen3.5, InternVL3 (HF format), LLaVA-OneVision or GLM-4.1V.

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


FAMILIES = ("qwen2.5-vl", "qwen3-vl", "qwen3.5", "internvl", "llava-onevision", "glm4v")

# InternVL's tokens (transformers' convert_internvl_weights_to_hf.py) and its chat template there:
# a video part becomes "<video>\n", which the processor replaces by one line per frame.
INTERNVL_TOKENS = ("<img>", "</img>", "<IMG_CONTEXT>", "<video>")
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<image>\\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{'<|im_end|>\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\\n' }}{% endif %}"
)

# LLaVA-OneVision's tokens and the shape of the llava-hf chat template: images, then videos, then
# each text after a newline.
LLAVA_TOKENS = ("<image>", "<video>")
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + ' '}}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\\n' + content['text'] }}{% endfor %}"
    "{% endif %}"
    "{{'<|im_end|>\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# GLM-4.1V's tokens, and the shape of its chat template (zai-org/GLM-4.1V-9B-Thinking): a video
# part becomes <|begin_of_video|><|video|><|end_of_video|>, which vLLM and the processor replace by
# one <|begin_of_image|>...<|end_of_image|>SECONDS group per frame pair.
GLM_TOKENS = (
    "[gMASK]",
    "<sop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
    "<|video|>",
)
GLM_CHAT_TEMPLATE = (
    "[gMASK]<sop>"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|begin_of_image|><|image|><|end_of_image|>"
    "{% elif content['type'] == 'video' %}<|begin_of_video|><|video|><|end_of_video|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

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

    ``family`` is one of ``FAMILIES``. The text model has
    hidden size 128, 2 layers and head_dim 64; the vision tower has depth 2. Building takes a
    few seconds and needs no network. Raises ValueError for an unknown family.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if family == "internvl":
        tokenizer = _build_tokenizer(
            INTERNVL_TOKENS,
            INTERNVL_CHAT_TEMPLATE,
            named={
                "start_image_token": "<img>",
                "end_image_token": "</img>",
                "context_image_token": "<IMG_CONTEXT>",
                "video_token": "<video>",
            },
        )
    elif family == "llava-onevision":
        tokenizer = _build_tokenizer(
            LLAVA_TOKENS, LLAVA_CHAT_TEMPLATE, named={"image_token": "<image>", "video_token": "<video>"}
        )
    elif family == "glm4v":
        tokenizer = _build_tokenizer(
            GLM_TOKENS, GLM_CHAT_TEMPLATE, named={"image_token": "<|image|>", "video_token": "<|video|>"}
        )
    else:
        tokenizer = _build_tokenizer()
    known = (*SPECIAL_TOKENS, *INTERNVL_TOKENS, *LLAVA_TOKENS, *GLM_TOKENS)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in known}
    build = {
        "qwen3-vl": _qwen3_vl,
        "qwen3.5": _qwen3_5,
        "internvl": _internvl,
        "llava-onevision": _llava_onevision,
        "glm4v": _glm4v,
    }.get(family, _qwen2_5_vl)
    model_class, config, processor = build(tokenizer, ids)
    config.bos_token_id = ids["<|endoftext|>"]
    config.eos_token_id = ids["<|im_end|>"]
    config.pad_token_id = ids["<|endoftext|>"]

    torch.manual_seed(seed)
    model = model_class(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    if family == "llava-onevision":
        _siglip_keys_as_published(out / "model.safetensors")
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _siglip_keys_as_published(weights: Path) -> None:
    """Name the SigLIP tower's weights as the llava-hf checkpoints do (``vision_tower.vision_model.*``):
    transformers 5 saves them without ``vision_model``, which vLLM 0.32 cannot load."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(weights)
    renamed = {
        (
            "vision_tower.vision_model." + key.removeprefix("vision_tower.")
            if key.startswith("vision_tower.")
            else key
        ): t
        for key, t in tensors.items()
    }
    save_file(renamed, weights, metadata={"format": "pt"})


def _build_tokenizer(
    extra: tuple[str, ...] = (), chat_template: str = CHAT_TEMPLATE, named: dict[str, str] | None = None
):
    """A byte-level BPE tokenizer trained on a few sentences, with Qwen's special tokens (and
    ``extra`` ones; ``named``: special tokens the processor finds by attribute name)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=[*SPECIAL_TOKENS, *extra],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_TRAINING_TEXT, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[*SPECIAL_TOKENS[1:], *extra],
        **({"extra_special_tokens": named} if named else {}),
    )
    tokenizer.chat_template = chat_template
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
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

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
    return Qwen3VLForConditionalGeneration, config, _qwen3_vl_processor(tokenizer)


def _qwen3_vl_processor(tokenizer):
    """The processor of the Qwen3-VL checkpoints (Qwen3.5's too: transformers maps ``qwen3_5`` to
    ``Qwen3VLProcessor``); the video size bounds the whole T x H x W."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

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
    return Qwen3VLProcessor(
        image_processor=image_processor,
        video_processor=video_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


def _qwen3_5(tokenizer, ids: dict[str, int]):
    """(model class, config, processor) of a tiny Qwen3.5: Qwen3-VL's vision tower (patch 16, no
    deepstack) and processor, a hybrid text model of one Gated DeltaNet (linear attention) layer
    and one full-attention layer (head dims 128 and 64 for the CPU kernels; partial rotary 0.25, so
    ``mrope_section`` sums to head_dim / 8)."""
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    config = Qwen3_5Config(
        text_config={
            **_TEXT,
            "layer_types": ["linear_attention", "full_attention"],
            "linear_conv_kernel_dim": 4,
            # vLLM's CPU Gated DeltaNet kernel rejects head dim 32 ("Unexpected head dim size");
            # 128 is the Qwen3.5 checkpoints' own.
            "linear_key_head_dim": 128,
            "linear_value_head_dim": 128,
            "linear_num_key_heads": 2,
            "linear_num_value_heads": 2,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000000.0,
                "partial_rotary_factor": 0.25,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
            **_token_ids(ids),
        },
        vision_config={**_VISION, "patch_size": 16, "num_position_embeddings": 2304},
        **_vision_token_ids(ids),
        tie_word_embeddings=True,
    )
    return Qwen3_5ForConditionalGeneration, config, _qwen3_vl_processor(tokenizer)


def _internvl(tokenizer, ids: dict[str, int]):
    """(model class, config, processor) of a tiny InternVL3 (HF format): a 224 x 224 vision tower
    of patch 14 with pixel shuffle 0.5 (64 tokens a frame), a Qwen2 text model."""
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    side = 224
    config = InternVLConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": [side, side],
            "patch_size": [14, 14],
        },
        text_config={"model_type": "qwen2", **_TEXT, **_token_ids(ids)},
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=64,
        downsample_ratio=0.5,
        tie_word_embeddings=True,
    )
    # The InternVL3-hf preprocessor: ImageNet mean/std, one square size for images and videos.
    mean_std = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size={"height": side, "width": side}, **mean_std),
        video_processor=InternVLVideoProcessor(size={"height": side, "width": side}, **mean_std),
        tokenizer=tokenizer,
        image_seq_length=64,
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )
    return InternVLForConditionalGeneration, config, processor


def _llava_onevision(tokenizer, ids: dict[str, int]):
    """(model class, config, processor) of a tiny LLaVA-OneVision: a 112 x 112 SigLIP tower of
    patch 14 (8 x 8 patches, pooled to 4 x 4: 16 tokens a frame), a Qwen2 text model."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    side = 112
    config = LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": side,
            "patch_size": 14,
        },
        text_config={"model_type": "qwen2", **_TEXT, **_token_ids(ids)},
        image_token_index=ids["<image>"],
        video_token_index=ids["<video>"],
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=[[side, side], [side, 2 * side], [2 * side, side], [2 * side, 2 * side]],
        tie_word_embeddings=True,
    )
    square = {"height": side, "width": side}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size=square, image_grid_pinpoints=config.image_grid_pinpoints
        ),
        video_processor=LlavaOnevisionVideoProcessor(size=square),
        tokenizer=tokenizer,
        num_image_tokens=(side // 14) ** 2,
        vision_feature_select_strategy="full",
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return LlavaOnevisionForConditionalGeneration, config, processor


def _glm4v(tokenizer, ids: dict[str, int]):
    """(model class, config, processor) of a tiny GLM-4.1V: patch 14 x merge 2 (28), half-rotary
    mrope (``mrope_section`` sums to head_dim / 4), and the processors' defaults, which are the
    GLM-4.1V checkpoints' (video: fps 2, frame pairs, 112x112..28x28x2x30000 pixels per video)."""
    from transformers import (
        Glm4vConfig,
        Glm4vForConditionalGeneration,
        Glm4vImageProcessor,
        Glm4vProcessor,
        Glm4vVideoProcessor,
    )

    config = Glm4vConfig(
        text_config={
            **_TEXT,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "partial_rotary_factor": 0.5,
                "mrope_section": [4, 6, 6],
            },
            **_token_ids(ids),
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": _TEXT["hidden_size"],
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "image_size": 112,
        },
        image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"],
        image_start_token_id=ids["<|begin_of_image|>"],
        image_end_token_id=ids["<|end_of_image|>"],
        video_start_token_id=ids["<|begin_of_video|>"],
        video_end_token_id=ids["<|end_of_video|>"],
        tie_word_embeddings=True,
    )
    processor = Glm4vProcessor(
        image_processor=Glm4vImageProcessor(),
        video_processor=Glm4vVideoProcessor(),
        tokenizer=tokenizer,
        chat_template=GLM_CHAT_TEMPLATE,
    )
    return Glm4vForConditionalGeneration, config, processor


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
