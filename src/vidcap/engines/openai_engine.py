"""The openai engine: captions from any OpenAI-compatible server (``vllm serve``, SGLang, hosted).

Frames go as JPEG (see ``openai_payload``), requests of a batch are sent concurrently (at
most ``concurrency`` in flight), and the official ``openai`` client does the retrying: with
``max_retries`` N it retries a request up to N times on a connection error, a timeout, HTTP
408, 409, 429 and any 5xx (or when the server sends ``x-should-retry: true``), waiting
0.5 s x 2^attempt (at most 8 s, minus up to 25% jitter) or what ``Retry-After`` /
``Retry-After-Ms`` asks (up to 2 minutes); other 4xx answers are not retried.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vidcap.config import EngineConfig
from vidcap.engines.caption_engine import CaptionEngine, CaptionOutput, CaptionRequest, GenerationOptions
from vidcap.engines.chat import build_messages as build_chat_messages
from vidcap.engines.chat import prompt_token_count, text_token_count
from vidcap.engines.openai_payload import DEFAULT_JPEG_QSCALE, VIDEO_FORMS, build_messages, mm_extra_body
from vidcap.engines.openai_probe import FormRefusedError, ServerForm, probe_server
from vidcap.errors import VidcapError, one_line
from vidcap.model.info import VisionGeometry, vision_geometry
from vidcap.model.processor import model_sampling_defaults

log = logging.getLogger(__name__)

#: Options read from ``engine_kwargs`` (the config file's ``[engine_kwargs]`` table).
OPTIONS = {
    "processor": "an HF processor folder or name, to count prompt tokens exactly",
    "video_as": '"auto" (default: what the server takes), "video_url", "frame_list" or "images"',
    "send_video_metadata": "send vLLM's per-request video kwargs (default: when the server takes them)",
    "jpeg_qscale": "JPEG quantiser, 2 (finest, default) to 31",
    "extra_body": "more request fields for the server (they win over vidcap's own)",
}
_TRUST_HINT = (
    "start the server with --trust-request-mm-kwargs, or leave send_video_metadata unset under "
    "[engine_kwargs] (vidcap then sends the frames without it and notes what the server changes)"
)
# Answers to a probe that refuse its form (bad request, too large, unsupported media,
# unprocessable, or a server that fails on content it does not know), not the server as such.
_REFUSING_STATUS = {400, 413, 415, 422, 500}
# Sampling fields of the OpenAI chat completions API; the others go in the body as extensions.
_OPENAI_FIELDS = {"temperature", "top_p", "max_tokens", "presence_penalty", "frequency_penalty"}
_CHARS_PER_TOKEN = 4  # rough text estimate when no tokenizer is at hand
_TEMPLATE_TOKENS = 16  # role markers and the default system turn of a chat template, roughly


class OpenAIEngine(CaptionEngine):
    """Caption through an OpenAI-compatible chat completions endpoint at ``config.api_base``.

    The API key is read from the environment variable ``config.api_key_env`` ("EMPTY" when
    unset, what local servers expect). ``config.model`` names the served model; left empty, the
    server's only model is used. ``engine_kwargs`` options: see ``OPTIONS``.

    ``start`` asks the server once which form of video it takes (``openai_probe``): where it
    takes them (a vLLM server started with ``--trust-request-mm-kwargs``), each request carries
    vLLM's ``media_io_kwargs`` (real frame rate and indices) and ``mm_processor_kwargs`` (keep the
    planned frame size), so the server sees the frames exactly as the vLLM engine would; else the
    frames go in the richest form it takes and ``request_notes`` says what the server may change.
    Structured captions use ``response_format`` of type ``json_schema``.

    Sampling values are sent explicitly: the user's, else the model's generation config when it
    can be read here (the processor folder, a local model folder, or the hub cache for a hub
    id), else vLLM's neutral values. When the model's config cannot be read (a hosted model),
    what the user did not set is left out and the server's defaults apply.
    """

    name = "openai"

    def __init__(self, config: EngineConfig, generation: GenerationOptions) -> None:
        self.config = config
        self.generation = generation
        options = dict(config.engine_kwargs)
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            known = ", ".join(OPTIONS)
            raise VidcapError(
                f"unknown engine_kwargs for --backend openai: {', '.join(unknown)} (known: {known})"
            )
        self.wanted_video_as: str = options.get("video_as", "auto")
        if self.wanted_video_as not in ("auto", *VIDEO_FORMS):
            choices = ", ".join(f'"{f}"' for f in ("auto", *VIDEO_FORMS))
            raise VidcapError(
                f"engine_kwargs video_as must be one of {choices}, not {self.wanted_video_as!r}"
            )
        metadata = options.get("send_video_metadata")
        self.wanted_metadata: bool | None = None if metadata is None else bool(metadata)
        #: How videos go to the server, found out by ``start``.
        self.form: ServerForm | None = None
        self.jpeg_qscale = int(options.get("jpeg_qscale", DEFAULT_JPEG_QSCALE))
        if not 2 <= self.jpeg_qscale <= 31:
            raise VidcapError("engine_kwargs jpeg_qscale must be between 2 and 31")
        self.extra_body: dict[str, Any] = dict(options.get("extra_body") or {})
        self.processor_name: str | None = options.get("processor")
        self.model = config.model
        self._client: Any = None
        self._processor: Any = None
        self._geometry: VisionGeometry | None = None

    @property
    def url(self) -> str:
        """The server's base URL as given."""
        return self.config.api_base or ""

    def start(self, *, max_videos_per_prompt: int) -> None:
        """Check that the server answers and serves the model; read its context length."""
        if self._client is not None:
            return
        import openai

        cfg = self.config
        if not cfg.api_base:
            raise VidcapError("--backend openai needs --api-base (e.g. http://127.0.0.1:8000/v1)")
        client = openai.OpenAI(
            base_url=cfg.api_base,
            api_key=os.environ.get(cfg.api_key_env) or "EMPTY",
            timeout=cfg.request_timeout,
            max_retries=cfg.max_retries,
        )
        # A quick check: a server that is down should not cost the full retry budget here.
        probe = client.with_options(
            max_retries=min(cfg.max_retries, 2), timeout=min(cfg.request_timeout, 30.0)
        )
        try:
            served = list(probe.models.list())
        except openai.AuthenticationError:
            raise VidcapError(
                f"the server at {self.url} refused the API key: set ${cfg.api_key_env} (--api-key-env)"
            ) from None
        except openai.NotFoundError:
            hint = "" if self.url.rstrip("/").endswith("/v1") else " (does --api-base need to end in /v1?)"
            raise VidcapError(
                f"no OpenAI-compatible API at {self.url}: GET /models answered 404{hint}"
            ) from None
        except openai.APIConnectionError as exc:  # includes timeouts
            raise VidcapError(
                f"cannot reach the server at {self.url}: {_reason(exc)} (is it running? check --api-base)"
            ) from None
        except openai.APIStatusError as exc:
            raise VidcapError(f"the server at {self.url} answered {exc.status_code} to GET /models") from None
        ids = [m.id for m in served]
        listed = ", ".join(ids) or "none"
        if not self.model:
            if len(ids) != 1:
                raise VidcapError(f"give --model: the server at {self.url} serves {listed}")
            self.model = ids[0]
        match = next((m for m in served if m.id == self.model), None)
        if match is None:
            raise VidcapError(f"model {self.model!r} is not served at {self.url}; served: {listed}")
        # vLLM lists its context length with the model; the smaller of it and ours applies.
        server_len = (getattr(match, "model_extra", None) or {}).get("max_model_len")
        limits = [int(v) for v in (cfg.max_model_len, server_len) if v]
        self.max_model_len = min(limits) if limits else None
        self._processor = self._load_processor()
        source = self.processor_name or self.model
        self.model_sampling = model_sampling_defaults(
            source,
            cache_dir=cfg.cache_dir,
            trust_remote_code=cfg.trust_remote_code,
            # A served name is often no hub id at all: look in the local cache only, never download.
            local_files_only=not Path(source).expanduser().is_dir(),
        )
        # The probes generate a token each: the full timeout, fewer retries than a caption.
        self.form = self._probe(client.with_options(max_retries=min(cfg.max_retries, 2)))
        self._client = client
        if self.form.refused:
            log.warning(
                "the server at %s takes %s (it refused %s); each record's notes say what the server "
                "may have changed",
                self.url,
                self.form.describe(),
                "; ".join(self.form.refused),
            )

    @property
    def video_as(self) -> str:
        """The form videos are sent in: the server's (after ``start``), else the one asked for."""
        return self.form.video_as if self.form is not None else self.wanted_video_as

    @property
    def send_metadata(self) -> bool:
        """Whether requests carry vLLM's per-request video kwargs (known after ``start``)."""
        return self.form is not None and self.form.metadata

    def _probe(self, client: Any) -> ServerForm:
        """Which form of video the server takes: small requests, richest form first."""
        import openai

        def ask(request: CaptionRequest, video_as: str, metadata: bool) -> int | None:
            kwargs = self._request_kwargs(request, video_as=video_as, metadata=metadata)
            kwargs.update(n=1, max_tokens=1)
            # Nothing to repeat or constrain in a probe (and vLLM's CPU build fails a seeded
            # request whose prefill is split in chunks, as a server-resized probe video can be).
            kwargs.pop("response_format", None)
            kwargs.pop("seed", None)
            try:
                response = client.chat.completions.create(**kwargs)
            except openai.APIStatusError as exc:
                if exc.status_code in _REFUSING_STATUS:
                    raise FormRefusedError(f"{exc.status_code} {_reason(exc)}") from None
                raise VidcapError(
                    f"the server at {self.url} answered {exc.status_code} to a first small request: "
                    f"{_reason(exc)}"
                ) from None
            except openai.APIConnectionError as exc:
                raise VidcapError(f"lost the server at {self.url}: {_reason(exc)}") from None
            usage = response.usage
            return int(usage.prompt_tokens) if usage else None

        try:
            return probe_server(ask, video_as=self.wanted_video_as, metadata=self.wanted_metadata)
        except FormRefusedError as exc:
            raise VidcapError(
                f"the server at {self.url} takes no video in any form vidcap sends: {exc}"
            ) from None

    def request_notes(self, requests: list[CaptionRequest]) -> list[str]:
        """What the server may change in one record's videos (its form of video), for the notes."""
        return self.form.notes(requests) if self.form is not None else []

    def engine_stats(self) -> dict[str, Any] | None:
        """How videos went to the server (the run summary's ``engine`` object)."""
        return self.form.summary() if self.form is not None else None

    def vision_geometry(self) -> VisionGeometry:
        """From the processor's model folder when known, else ``--family``'s, else Qwen2.5-VL's (a
        server hides its config)."""
        if self._geometry is None:
            source = self.processor_name or (self.model if Path(self.model).expanduser().is_dir() else None)
            self._geometry = vision_geometry(
                source, cache_dir=self.config.cache_dir, family=self.config.family
            )
        return self._geometry

    def count_prompt_tokens(self, request: CaptionRequest) -> int:
        """Exact like the vLLM engine when a processor is at hand, else visual tokens + a text guess.

        Without a processor (``engine_kwargs.processor``, or ``model`` naming a local folder) the
        text is estimated at 4 characters a token plus a template allowance: the server has the
        last word and refuses a prompt that is really too long (that record gets an error).
        In ``video_as = "images"`` mode each frame is an image of (H/f) x (W/f) tokens, f the
        patch factor: twice a video's tokens, since no two frames share a temporal patch.
        """
        if self.form is not None:
            request = self.form.fit(request)
        if self.video_as == "images":
            return self._count_as_images(request)
        if self._processor is None:
            return request.video_tokens + _text_estimate(request)
        return prompt_token_count(self._processor, request, self.family_of(request))

    def _count_as_images(self, request: CaptionRequest) -> int:
        """One image per frame: its own placeholder, and (H/f) x (W/f) tokens, f the patch factor."""
        factor = self.vision_geometry().image_factor
        frames = [f for v in request.videos for f in v.frames]
        visual = sum((f.shape[0] // factor) * (f.shape[1] // factor) for f in frames)
        if self._processor is None:
            return visual + _text_estimate(request)
        messages = build_chat_messages(request)
        messages[-1]["content"] = [{"type": "image"} for _ in frames] + messages[-1]["content"][-1:]
        processor = self._processor
        owner = processor if getattr(processor, "chat_template", None) else processor.tokenizer
        rendered = owner.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text_token_count(self._processor, rendered) - len(frames) + visual

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        """Send every request (at most ``concurrency`` at once); one output per request, by id."""
        if self._client is None:
            raise VidcapError("the openai engine is not started: call start() first")
        if not requests:
            return []
        workers = max(1, min(self.config.concurrency, len(requests)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vidcap-openai") as pool:
            outcomes = list(pool.map(self._one, requests))
        # A problem of the server or its set-up (not of one record) stops the run: marking every
        # record failed would only have to be undone. Rerunning the same command resumes.
        for outcome in outcomes:
            if isinstance(outcome, VidcapError):
                raise outcome
        return [o for o in outcomes if isinstance(o, CaptionOutput)]

    def _one(self, request: CaptionRequest) -> CaptionOutput | VidcapError:
        """One chat completion; the failures that belong to this request become its error."""
        import openai

        try:
            response = self._client.chat.completions.create(**self._request_kwargs(request))
        except openai.BadRequestError as exc:
            if self.send_metadata and _refuses_mm_kwargs(exc):
                return VidcapError(
                    f"the server at {self.url} refuses per-request video metadata: {_TRUST_HINT}"
                )
            return CaptionOutput(
                request.request_id, error=f"server refused the request (400): {_reason(exc)}"
            )
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
            return VidcapError(f"the server at {self.url} answered {exc.status_code}: {_reason(exc)}")
        except openai.APITimeoutError:
            cfg = self.config
            error = (
                f"no answer within {cfg.request_timeout:g} s, {cfg.max_retries} retries (--request-timeout)"
            )
            return CaptionOutput(request.request_id, error=error)
        except openai.APIConnectionError as exc:
            return VidcapError(
                f"lost the server at {self.url}: {_reason(exc)}; rerun the same command to resume"
            )
        except openai.APIStatusError as exc:  # 429/5xx after the client's retries, other 4xx
            return CaptionOutput(
                request.request_id, error=f"server answered {exc.status_code}: {_reason(exc)}"
            )
        except Exception as exc:  # building the request (encoding frames) failed for this record
            return CaptionOutput(request.request_id, error=one_line(exc))
        choices = sorted(response.choices, key=lambda c: c.index)
        usage = response.usage
        return CaptionOutput(
            request.request_id,
            texts=[c.message.content or "" for c in choices],
            prompt_tokens=int(usage.prompt_tokens) if usage else 0,
            generated_tokens=int(usage.completion_tokens) if usage else 0,
            finish_reasons=[c.finish_reason for c in choices],
        )

    def _request_kwargs(
        self, request: CaptionRequest, *, video_as: str | None = None, metadata: bool | None = None
    ) -> dict[str, Any]:
        """The ``chat.completions.create`` arguments: in the run's form of video, or the one given."""
        if video_as is None:
            assert self.form is not None
            request = self.form.fit(request)
            video_as, metadata = self.form.video_as, self.form.metadata
        g = self.generation
        values = self.sampling().values
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": build_messages(request, video_as=video_as, qscale=self.jpeg_qscale),
            "n": g.num_captions,
            **{k: v for k, v in values.items() if k in _OPENAI_FIELDS},
        }
        if g.seed is not None:
            kwargs["seed"] = g.seed
        if g.json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "caption", "schema": g.json_schema},
            }
        # vLLM's (and SGLang's) extensions of the OpenAI request, then the user's own fields.
        extra = {k: v for k, v in values.items() if k not in _OPENAI_FIELDS}
        extra.update(self.extra_body)
        if metadata:
            extra.update(mm_extra_body(request, self.family()))
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    def _load_processor(self) -> Any:
        """The processor named in engine_kwargs, or the model's when it is a local folder; else None."""
        name = self.processor_name
        if name is None and Path(self.model).expanduser().is_dir():
            name = self.model
        if name is None:
            return None
        from transformers import AutoProcessor

        try:
            return AutoProcessor.from_pretrained(
                name, cache_dir=self.config.cache_dir, trust_remote_code=self.config.trust_remote_code
            )
        except Exception as exc:
            raise VidcapError(
                f"cannot load processor {name!r} (engine_kwargs processor): {_reason(exc)}"
            ) from None

    def close(self) -> None:
        """Close the HTTP connections."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _refuses_mm_kwargs(exc: Any) -> bool:
    """Whether a 400 refuses the per-request media/processor kwargs themselves: vLLM without
    ``--trust-request-mm-kwargs``, or a server that does not know the fields at all."""
    text = str(exc).lower()
    if "trust-request-mm-kwargs" in text:
        return True
    named = "media_io_kwargs" in text or "mm_processor_kwargs" in text
    unknown_field = ("unrecognized", "not permitted", "unexpected", "unknown", "extra")
    return named and any(word in text for word in unknown_field)


def _reason(exc: BaseException) -> str:
    """The server's own message when it sent one, else the exception's line and its cause's."""
    body = getattr(exc, "body", None)  # the client unwraps {"error": {...}} to the inner dict
    if isinstance(body, dict):
        inner = body.get("error")
        message = inner.get("message") if isinstance(inner, dict) else body.get("message")
        if message:
            return str(message).strip().splitlines()[0][:300]
    text = one_line(exc)
    if exc.__cause__ is not None:
        text += f" ({one_line(exc.__cause__)})"
    return text[:300]


def _text_estimate(request: CaptionRequest) -> int:
    """Text tokens without a tokenizer: about 4 characters a token, plus the template's markers."""
    chars = len(request.prompt) + len(request.system_prompt or "")
    return math.ceil(chars / _CHARS_PER_TOKEN) + _TEMPLATE_TOKENS
