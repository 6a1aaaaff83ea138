"""What the openai backend sends: JPEG frames as data URLs, and vLLM's per-request media kwargs.

Frames are sent as they were planned (no re-encoding into a video file), in one of three forms
(``VIDEO_FORMS``): ``video_url``, a part whose URL is ``data:video/jpeg;base64,<frame1>,<frame2>,...``,
which vLLM's ``VideoMediaIO`` splits back into frames; ``frame_list``, a ``{"type": "video",
"video": [<data URL of each frame>], "fps": ...}`` part, the image-list video of DashScope's
(Alibaba Model Studio's) OpenAI-compatible mode, where ``fps`` says how far apart the frames
were taken; or ``images``, one ``image_url`` part per frame, for servers that take only images.

vLLM (``vllm/multimodal/media/video.py``, JPEG-sequence branch) reads these per-request
``media_io_kwargs["video"]`` for such a video: ``num_frames`` (how many comma-separated frames
it keeps; its default, 32, silently drops the rest), ``fps`` (default 1), ``frames_indices``
(a list of ints, one per frame sent), ``total_num_frames`` (>= frames sent), ``duration`` and
``do_sample_frames``. The HF processor derives the model's temporal positions from them
(Qwen2.5-VL: sampled fps = len(frames_indices) / total_num_frames * fps). The server refuses
both ``media_io_kwargs`` and ``mm_processor_kwargs`` with HTTP 400 unless it was started
with ``--trust-request-mm-kwargs``.
"""

from __future__ import annotations

import base64
from fractions import Fraction
from typing import Any

import numpy as np

from vidcap.engines.caption_engine import CaptionRequest, VideoInput
from vidcap.families import Family

# FFmpeg's JPEG quantiser scale (-q:v): 2 is the finest; the frames were already decoded
# once from a lossy video, so a second coarse loss is what we avoid.
DEFAULT_JPEG_QSCALE = 2


def encode_jpeg(frame: np.ndarray, *, qscale: int = DEFAULT_JPEG_QSCALE) -> bytes:
    """One RGB uint8 (H, W, 3) frame as JPEG bytes, with PyAV's mjpeg encoder.

    PyAV is already a dependency (it decodes the videos), so JPEG needs no imaging library.
    A fixed quantiser (qmin = qmax = qscale) makes quality independent of frame size; the
    encoder's default, a bit rate, would blur large frames.
    """
    import av

    height, width = int(frame.shape[0]), int(frame.shape[1])
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuvj420p"  # baseline JPEG, what every decoder (PIL on the server) reads
    codec.time_base = Fraction(1, 25)
    codec.qscale = True
    codec.qmin = codec.qmax = qscale
    picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    packets = codec.encode(picture.reformat(format="yuvj420p")) + codec.encode(None)
    return b"".join(bytes(p) for p in packets)


def frames_base64(frames: np.ndarray, *, qscale: int = DEFAULT_JPEG_QSCALE) -> list[str]:
    """Every frame of a (T, H, W, 3) array as base64 JPEG text."""
    return [base64.b64encode(encode_jpeg(f, qscale=qscale)).decode("ascii") for f in frames]


#: The forms a video can be sent in (see the module doc).
VIDEO_FORMS = ("video_url", "frame_list", "images")


def build_content(request: CaptionRequest, *, video_as: str, qscale: int) -> list[dict[str, Any]]:
    """The user message's content parts: the videos (in the form ``video_as``), then the text."""
    parts: list[dict[str, Any]] = []
    for video in request.videos:
        encoded = frames_base64(video.frames, qscale=qscale)
        if video_as == "images":
            parts.extend(
                {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{b64}"}}
                for b64 in encoded
            )
        elif video_as == "frame_list":
            fps = sampled_fps(video.metadata, len(video.frames))
            urls = [f"data:image/jpeg;base64,{b64}" for b64 in encoded]
            parts.append({"type": "video", "video": urls, "fps": round(fps, 6)})
        else:
            parts.append(
                {"type": "video_url", "video_url": {"url": "data:video/jpeg;base64," + ",".join(encoded)}}
            )
    parts.append({"type": "text", "text": request.prompt})
    return parts


def build_messages(request: CaptionRequest, *, video_as: str, qscale: int) -> list[dict[str, Any]]:
    """The chat messages for a request: an optional system turn, then the user turn."""
    messages: list[dict[str, Any]] = []
    if request.system_prompt:
        messages.append({"role": "system", "content": request.system_prompt})
    messages.append({"role": "user", "content": build_content(request, video_as=video_as, qscale=qscale)})
    return messages


def mm_extra_body(request: CaptionRequest, family: Family) -> dict[str, Any]:
    """vLLM's per-request kwargs that keep the plan: frame rate and indices, and the frame size
    (the processor kwargs of the model's ``family``)."""
    if not request.videos:
        return {}
    return {
        "media_io_kwargs": {"video": video_media_kwargs(request.videos)},
        "mm_processor_kwargs": family.processor_kwargs(request),
    }


def video_media_kwargs(videos: list[VideoInput]) -> dict[str, Any]:
    """The ``media_io_kwargs["video"]`` for the videos of one request.

    vLLM takes one set of media kwargs per modality and request, not per video. One video (or
    videos with the same metadata) gets its exact metadata. Videos that differ get each their
    own frame count and a shared frame rate: ``fps`` = the first video's sampled rate with no
    indices, which gives Qwen2.5-VL's temporal positions exactly when all videos were sampled
    at the same rate (the usual ``--fps`` plan) and approximately otherwise.
    """
    exact = [_exact_kwargs(v) for v in videos]
    if all(e == exact[0] for e in exact):
        return exact[0]
    first = videos[0].metadata
    return {
        "fps": sampled_fps(first, len(videos[0].frames)),
        "num_frames": max(len(v.frames) for v in videos),
        "do_sample_frames": False,
    }


def _exact_kwargs(video: VideoInput) -> dict[str, Any]:
    md, count = video.metadata, len(video.frames)
    kwargs: dict[str, Any] = {"num_frames": count, "do_sample_frames": False}
    if md.get("fps"):
        kwargs["fps"] = float(md["fps"])
    indices = md.get("frames_indices")
    if indices is not None and len(indices) == count:
        kwargs["frames_indices"] = [int(i) for i in indices]
    total = md.get("total_num_frames")
    if total is not None and int(total) >= count:
        kwargs["total_num_frames"] = int(total)
    if md.get("duration") is not None and float(md["duration"]) >= 0:
        kwargs["duration"] = float(md["duration"])
    return kwargs


def sampled_fps(metadata: dict[str, Any], count: int) -> float:
    """Frames per second of the sampled frames (the rate the model sees), as transformers computes it."""
    fps, total = metadata.get("fps"), metadata.get("total_num_frames")
    if not fps:
        return 1.0
    if not total:
        return float(fps)
    return count / int(total) * float(fps)
