"""What an OpenAI-compatible server takes, found out once per run, and what it may change.

Servers differ in how they take a video of sampled frames: a vLLM server takes a ``video_url``
of JPEG frames, and with ``--trust-request-mm-kwargs`` also the real frame rate, frame indices
and frame size per request (``media_io_kwargs``, ``mm_processor_kwargs``); without that flag it
refuses them (HTTP 400), assumes 1 fps and keeps at most its ``num_frames`` (32 by default) of
the frames sent, dropping the rest. DashScope-style servers take a ``video`` part holding a list
of frames with their ``fps``; others take only images.

``probe_server`` asks the server with small requests (two 56x56 frames, one token to generate),
the richest form first, and keeps the first form it accepts (``ServerForm``). ``ServerForm``
then fits each request to the server (frames evenly spread when the server would drop some)
and says, for the record's notes, what the server may have changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidcap.engines.caption_engine import CaptionRequest, VideoInput
from vidcap.engines.openai_payload import VIDEO_FORMS, sampled_fps

#: vLLM's default ``num_frames`` for a video: the frames of a ``video/jpeg`` URL past it are dropped.
VLLM_NUM_FRAMES = 32
_PROBE_SIZE = 56  # two Qwen patches of 28: a frame size every video model takes
PROBE_PROMPT = "Describe the video in one word."


class FormRefusedError(Exception):
    """The server answered a probe with a refusal of its form (an HTTP 4xx/5xx status)."""


#: ``ask(request, video_as, metadata)``: send one probe request in that form (one token to
#: generate) and return the server's prompt token count (None when it sends no usage);
#: raise ``FormRefusedError`` with the server's message when it refuses the form.
Ask = Callable[[CaptionRequest, str, bool], "int | None"]


@dataclass(frozen=True)
class ServerForm:
    """How this run sends videos to the server, and what the server does with them.

    ``video_as``: ``video_url``, ``frame_list`` or ``images`` (see ``openai_payload``);
    ``metadata``: vLLM's per-request video kwargs go with each request; ``max_frames``: the
    most frames of one video the server keeps (None: all); ``vllm``: the server said it is
    vLLM (its refusal named ``--trust-request-mm-kwargs``); ``refused``: the richer forms it
    refused, each with its answer.
    """

    video_as: str
    metadata: bool
    max_frames: int | None = None
    vllm: bool = False
    refused: tuple[str, ...] = ()

    def describe(self) -> str:
        """The form in a few words, for the log and the run summary."""
        if self.video_as == "video_url":
            what = "video_url of JPEG frames" + (
                " with their frame rate, indices and size" if self.metadata else " (no per-request metadata)"
            )
        elif self.video_as == "frame_list":
            what = "a video part holding a list of JPEG frames and their fps"
        else:
            what = "one image per frame"
        if self.max_frames is not None:
            what += f", at most {self.max_frames} frames a video"
        return what

    def summary(self) -> dict[str, Any]:
        """The form for the run summary's ``engine`` object."""
        return {"video_as": self.video_as, "video_metadata": self.metadata, "max_frames": self.max_frames}

    def fit(self, request: CaptionRequest) -> CaptionRequest:
        """The request as it is sent: a video with more frames than the server keeps gets
        ``max_frames`` of them, evenly spread over the video (rather than only its start)."""
        cap = self.max_frames
        if cap is None or all(len(v.frames) <= cap for v in request.videos):
            return request
        return dataclasses.replace(request, videos=[_spread(v, cap) for v in request.videos])

    def notes(self, requests: Sequence[CaptionRequest]) -> list[str]:
        """What the server may have changed in the videos of one record's requests (one request,
        or one per window: their videos are described together); [] when nothing."""
        notes: list[str] = []
        width = max((len(r.videos) for r in requests), default=0)
        for number in range(width):
            videos = [r.videos[number] for r in requests if len(r.videos) > number]
            prefix = f"video {number + 1}: " if width > 1 else ""
            notes.extend(prefix + note for note in self._video_notes(videos))
        return notes

    def _video_notes(self, videos: list[VideoInput]) -> list[str]:
        counts = [len(v.frames) for v in videos]
        rates = [sampled_fps(v.metadata, n) for v, n in zip(videos, counts, strict=True)]
        frames = f"the {counts[0]} frames" if len(videos) == 1 else "the frames"
        if self.video_as == "images":
            return [
                f"the server takes no video: {frames} went as separate images, without their times "
                f"(sampled at {_rates(rates)})"
            ]
        if self.video_as == "frame_list":
            return [
                f"the server took {frames} as a frame list with fps {_rates(rates, unit='')}; it may "
                "resize them with its own pixel bounds"
            ]
        if self.metadata:
            return []
        notes = []
        cap = self.max_frames
        if cap is not None and max(counts) > cap:
            planned = f"the {counts[0]}" if len(videos) == 1 else f"up to {max(counts)}"
            notes.append(
                f"the server keeps at most {cap} frames a video: sent {cap} of {planned} planned frames, "
                "evenly spread"
            )
            rates = [r * cap / n if n > cap else r for r, n in zip(rates, counts, strict=True)]
        why = "no --trust-request-mm-kwargs" if self.vllm else "no per-request video metadata sent"
        if self.vllm and all(abs(r - 1.0) < 1e-3 for r in rates):  # vLLM assumes the right rate
            notes.append(f"the server ({why}) may resize the frames with its own pixel bounds")
            return notes
        assumed = "1 fps" if self.vllm else "its own frame rate (vLLM: 1 fps)"
        notes.append(
            f"the server ({why}) assumes {assumed} where the frames were sampled at {_rates(rates)}, "
            "and may resize them with its own pixel bounds"
        )
        return notes


def _rates(rates: list[float], unit: str = " fps") -> str:
    """A frame rate, or the range of several ("3.64 to 4 fps")."""
    low, high = min(rates), max(rates)
    if high - low < 1e-3:
        return f"{low:g}{unit}"
    return f"{low:.3g} to {high:.3g}{unit}"


def candidates(video_as: str, metadata: bool | None) -> list[tuple[str, bool]]:
    """The forms to try, richest first: ``video_as`` "auto" tries every form; ``metadata``
    None tries vLLM's metadata and then goes without, False never, True only with it (the
    ``video_url`` form; a form without video metadata, named outright, goes as it is)."""
    if video_as == "auto" and metadata:
        return [("video_url", True)]
    forms = VIDEO_FORMS if video_as == "auto" else (video_as,)
    tried: list[tuple[str, bool]] = []
    for form in forms:
        if form == "video_url" and metadata is not False:
            tried.append((form, True))
        if form != "video_url" or metadata is not True:
            tried.append((form, False))
    return tried


def probe_server(ask: Ask, *, video_as: str, metadata: bool | None) -> ServerForm:
    """The first form of ``candidates`` that the server accepts (see the module doc).

    Raises ``FormRefusedError`` naming every form tried and the server's answer when it takes none.
    """
    refused: list[str] = []
    vllm = False
    for form, with_metadata in candidates(video_as, metadata):
        try:
            ask(probe_request(2), form, with_metadata)
        except FormRefusedError as exc:
            refused.append(f"{_form_name(form, with_metadata)}: {exc}")
            vllm = vllm or "trust-request-mm-kwargs" in str(exc).lower()
            continue
        max_frames = _frame_limit(ask, vllm=vllm) if (form == "video_url" and not with_metadata) else None
        return ServerForm(form, with_metadata, max_frames=max_frames, vllm=vllm, refused=tuple(refused))
    raise FormRefusedError("; ".join(refused))


def probe_request(frames: int) -> CaptionRequest:
    """A tiny request: ``frames`` frames of 56x56, as if sampled at 2 fps from a clip of as many."""
    from vidcap.video.synthetic import synthetic_frame

    pixels = np.stack([synthetic_frame(i, _PROBE_SIZE, _PROBE_SIZE) for i in range(frames)])
    metadata = {
        "fps": 2.0,
        "total_num_frames": frames,
        "frames_indices": list(range(frames)),
        "duration": frames / 2.0,
        "do_sample_frames": False,
    }
    tokens = -(-frames // 2) * (_PROBE_SIZE // 28) ** 2
    return CaptionRequest("probe", PROBE_PROMPT, [VideoInput(pixels, metadata, tokens)])


def _frame_limit(ask: Ask, *, vllm: bool) -> int | None:
    """vLLM without per-request kwargs keeps its ``num_frames`` (32 unless the server was started
    with other ``--media-io-kwargs``): when 33 frames cost no more tokens than 32, the server dropped
    the 33rd, and the run sends at most 32. Unknown (no usage, a refusal): vLLM's default, 32, for
    a server that said it is vLLM; no limit for others."""
    unknown = VLLM_NUM_FRAMES if vllm else None
    try:
        at_limit = ask(probe_request(VLLM_NUM_FRAMES), "video_url", False)
        past_limit = ask(probe_request(VLLM_NUM_FRAMES + 1), "video_url", False)
    except FormRefusedError:
        return unknown
    if at_limit is None or past_limit is None:
        return unknown
    return VLLM_NUM_FRAMES if past_limit <= at_limit else None


def _form_name(form: str, metadata: bool) -> str:
    return f"{form} with video metadata" if metadata else form


def _spread(video: VideoInput, count: int) -> VideoInput:
    """``count`` of a video's frames, evenly spread from its first to its last (their metadata and
    token estimate follow)."""
    total = len(video.frames)
    keep = np.unique(np.linspace(0, total - 1, count).round().astype(int))
    metadata = dict(video.metadata)
    indices = metadata.get("frames_indices")
    if indices is not None and len(indices) == total:
        metadata["frames_indices"] = [int(indices[i]) for i in keep]
    # Visual tokens grow with the frames (whole temporal patches of 2 for the Qwen families).
    tokens = video.video_tokens * -(-len(keep) // 2) // max(-(-total // 2), 1)
    return VideoInput(video.frames[keep], metadata, tokens)
