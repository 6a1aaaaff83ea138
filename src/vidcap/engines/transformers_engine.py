"""The transformers engine: ``model.generate`` on the HF model, for machines without vLLM.

It sees exactly what the vLLM engine sees: the same chat-template prompt, the same planned
frames (no resampling: ``do_sample_frames=False`` with the plan's metadata; no resizing: the
size bounds of the family's ``processor_kwargs``), so prompt lengths match ``count_prompt_tokens`` and the
vLLM backend token for token. It is slower (no continuous batching, no paged KV cache).
"""

from __future__ import annotations

import gc
import logging
from typing import Any

from vidcap.config import EngineConfig
from vidcap.engines.caption_engine import CaptionEngine, CaptionOutput, CaptionRequest, GenerationOptions
from vidcap.engines.chat import hf_video_metadata, prompt_token_count, render_prompt
from vidcap.errors import VidcapError, engine_error, one_line
from vidcap.model.processor import load_processor, model_load_error, model_sampling_defaults

log = logging.getLogger(__name__)

# vLLM's names for dtypes that torch spells differently.
_DTYPE_ALIASES = {"half": "float16", "float": "float32", "bf16": "bfloat16", "fp16": "float16"}


class TransformersEngine(CaptionEngine):
    """Caption with ``AutoModelForImageTextToText.generate``, one padded batch per ``generate`` call.

    Options: ``device`` ("auto" = cuda when available, else cpu; or "cpu", "cuda", "cuda:1"...),
    ``dtype`` ("auto" = the checkpoint's), ``max_model_len`` (default: the model's max
    position embeddings); ``engine_kwargs`` go to ``from_pretrained`` (e.g.
    ``attn_implementation = "sdpa"``).

    Sampling takes the same resolved values as the vLLM engine (``CaptionEngine.sampling``: the
    user's, else the model's generation config as vLLM reads it, else vLLM's neutral values), all
    passed explicitly so that nothing else of the checkpoint's ``generation_config.json`` (such as
    ``do_sample``) changes them; greedy when temperature is 0. Presence and frequency penalties,
    which transformers lacks, are applied as vLLM applies them (to the generated tokens).
    With a seed, ``torch.manual_seed(seed)`` runs before every batch, so the same inputs in the
    same batches give the same captions run after run (unlike vLLM's per-request seeds, the
    result depends on how records are batched).

    Structured captions (``json_schema``): transformers has no constrained decoding here, so the
    model generates freely and the runner parses and validates its text; a caption that is not
    valid JSON for the schema gets an error status (use the vLLM or openai backend to constrain).

    If a batch fails (a bad input, out of memory), its requests are retried one by one so one
    bad request fails only itself.
    """

    name = "transformers"

    def __init__(self, config: EngineConfig, generation: GenerationOptions) -> None:
        self.config = config
        self.generation = generation
        self._model: Any = None
        self._processor: Any = None
        self._device: Any = None
        self._eos_ids: set[int] = set()
        self._pad_id: int | None = None
        self._warned_schema = False

    def start(self, *, max_videos_per_prompt: int) -> None:
        """Load the processor and the model onto the device (a no-op when already loaded)."""
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

        cfg = self.config
        self._device = torch.device(_resolve_device(cfg.device))
        kwargs = {
            "cache_dir": cfg.cache_dir,
            "trust_remote_code": cfg.trust_remote_code,
            "dtype": _torch_dtype(cfg.dtype),
            **cfg.engine_kwargs,
        }
        try:
            self._processor = load_processor(cfg)
            try:
                model = AutoModelForImageTextToText.from_pretrained(cfg.model, **kwargs)
            except ValueError:  # not a vision-language model: a text model, fine for a text-only run
                if max_videos_per_prompt:
                    raise
                model = AutoModelForCausalLM.from_pretrained(cfg.model, **kwargs)
            self._model = model.to(self._device).eval()
        except Exception as exc:  # hub/config/OOM failures become one line
            raise model_load_error(cfg.model, exc) from exc
        tokenizer = getattr(self._processor, "tokenizer", self._processor)
        # Decoder-only generation continues from the last position: pad on the left.
        tokenizer.padding_side = "left"
        self._eos_ids, self._pad_id = _stop_tokens(self._model, tokenizer)
        self.max_model_len = cfg.max_model_len or _max_positions(self._model.config)
        self.model_sampling = (
            model_sampling_defaults(
                cfg.model, cache_dir=cfg.cache_dir, trust_remote_code=cfg.trust_remote_code
            )
            or {}
        )

    def count_prompt_tokens(self, request: CaptionRequest) -> int:
        """Text tokens of the templated prompt, each video placeholder replaced by its tokens."""
        return prompt_token_count(self._processor, request, self.family_of(request))

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        """Generate for all requests in one padded batch; on failure, one request at a time."""
        if self._model is None:
            raise VidcapError("the transformers engine is not started: call start() first")
        if not requests:
            return []
        if self.generation.json_schema is not None and not self._warned_schema:
            self._warned_schema = True
            log.warning("transformers backend: json_schema is not enforced while decoding, only validated")
        try:
            return self._generate_batch(requests)
        except Exception as exc:
            if len(requests) == 1:
                return [CaptionOutput(requests[0].request_id, error=engine_error(exc))]
            log.info("batch of %d failed (%s); retrying one by one", len(requests), one_line(exc))
        outputs = []
        for request in requests:
            self._free_cache()
            try:
                outputs.extend(self._generate_batch([request]))
            except Exception as exc:  # this request alone is bad: it alone fails
                outputs.append(CaptionOutput(request.request_id, error=engine_error(exc)))
        return outputs

    def _generate_batch(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        import torch

        g = self.generation
        values = self.sampling().values
        inputs = self._inputs(requests).to(self._device)
        sample = values["temperature"] > 0
        # Greedy decoding gives n identical captions: decode once and copy (vLLM does the same
        # work n times); transformers refuses num_return_sequences > 1 without sampling.
        rows = g.num_captions if sample else 1
        kwargs: dict[str, Any] = {
            "max_new_tokens": values["max_tokens"],
            "do_sample": sample,
            "num_return_sequences": rows,
            "repetition_penalty": values["repetition_penalty"],
            "eos_token_id": sorted(self._eos_ids) or None,
            "pad_token_id": self._pad_id,
        }
        if sample:
            # top_k 0 and min_p 0 are off in both libraries (passed all the same: left out, the
            # checkpoint's own values would apply).
            kwargs.update(
                temperature=values["temperature"],
                top_p=values["top_p"],
                top_k=values["top_k"],
                min_p=values["min_p"],
            )
        penalties = _output_penalties(
            values["presence_penalty"], values["frequency_penalty"], inputs["input_ids"].shape[1]
        )
        if penalties is not None:
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList([penalties])
        if g.seed is not None:
            torch.manual_seed(g.seed)
        with torch.inference_mode():
            sequences = self._model.generate(**inputs, **kwargs)
        prompt_width = inputs["input_ids"].shape[1]
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()  # unpadded lengths
        new_tokens = sequences[:, prompt_width:].tolist()
        outputs = []
        for i, request in enumerate(requests):
            texts, reasons, generated = [], [], 0
            for row in new_tokens[i * rows : (i + 1) * rows]:
                text, count, stopped = self._decode(row)
                texts.append(text)
                # No stop token within max_new_tokens: cut off, as vLLM's "length".
                reasons.append("stop" if stopped else "length")
                generated += count
            copies = g.num_captions // rows
            outputs.append(
                CaptionOutput(
                    request.request_id,
                    texts=texts * copies,
                    prompt_tokens=int(prompt_lengths[i]),
                    generated_tokens=generated * copies,
                    finish_reasons=reasons * copies,
                )
            )
        return outputs

    def _inputs(self, requests: list[CaptionRequest]) -> Any:
        """The processor's tensors for a batch: prompts, frames at their planned size, metadata."""
        texts = [render_prompt(self._processor, r) for r in requests]
        videos = [v for r in requests for v in r.videos]
        kwargs: dict[str, Any] = {}
        if videos:
            # One call processes the whole batch: size bounds spanning every video's planned area
            # still leave each (already a multiple of the patch factor) unchanged.
            everything = CaptionRequest(request_id="batch", prompt="", videos=videos)
            kwargs = {
                "videos": [v.frames for v in videos],
                "video_metadata": [hf_video_metadata(v.metadata) for v in videos],
                "do_sample_frames": False,  # the frames are the plan's: never resample them
                **self.family().processor_kwargs(everything),
            }
        return self._processor(text=texts, padding=True, return_tensors="pt", **kwargs)

    def _decode(self, row: list[int]) -> tuple[str, int, bool]:
        """Text and token count of one generated row, up to and including its first stop token,
        and whether it had one (else generation stopped at ``max_new_tokens``)."""
        count, stopped = len(row), False
        for position, token in enumerate(row):
            if token in self._eos_ids:
                count, stopped = position + 1, True  # vLLM counts the stop token as generated too
                break
        tokenizer = getattr(self._processor, "tokenizer", self._processor)
        return tokenizer.decode(row[:count], skip_special_tokens=True), count, stopped

    def _free_cache(self) -> None:
        gc.collect()
        if self._device is not None and self._device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop the model and free its memory."""
        self._model = None
        self._free_cache()


def _output_penalties(presence: float, frequency: float, prompt_width: int) -> Any:
    """vLLM's presence and frequency penalties as a transformers logits processor (None when
    both are 0): each token already generated loses ``presence`` once and ``frequency`` per
    occurrence; prompt tokens do not count (as in vLLM)."""
    if not presence and not frequency:
        return None
    import torch
    from transformers import LogitsProcessor

    class OutputPenalties(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            generated = input_ids[:, prompt_width:]
            if generated.shape[1] == 0:
                return scores
            counts = torch.zeros_like(scores)
            counts.scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
            return scores - frequency * counts - presence * (counts > 0).to(scores.dtype)

    return OutputPenalties()


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VidcapError(f"--device {device}: no CUDA device is available here; use --device cpu")
    return device


def _torch_dtype(dtype: str) -> Any:
    if dtype == "auto":
        return "auto"
    import torch

    name = _DTYPE_ALIASES.get(dtype, dtype)
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise VidcapError(f"--dtype {dtype}: not a torch dtype (try auto, bfloat16, float16, float32)")
    return value


def _stop_tokens(model: Any, tokenizer: Any) -> tuple[set[int], int | None]:
    """The ids that end a caption (the generation config's, as vLLM reads them) and the pad id."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    eos_ids = {int(t) for t in (eos if isinstance(eos, list | tuple) else [eos]) if t is not None}
    pad = getattr(model.generation_config, "pad_token_id", None)
    if pad is None:
        pad = tokenizer.pad_token_id
    if pad is None and eos_ids:
        pad = min(eos_ids)
    return eos_ids, pad


def _max_positions(config: Any) -> int | None:
    """The model's context length: the text model's max position embeddings."""
    for part in (getattr(config, "text_config", None), config):
        value = getattr(part, "max_position_embeddings", None) if part is not None else None
        if isinstance(value, int) and value > 0:
            return value
    return None
