"""DataFlow-MM's video operators beside ``VideoToCaptionGenerator``, on vidcap's pipeline.

``PromptedVQAGenerator`` and ``VideoMergedCaptionGenerator`` take DataFlow-MM's parameters, in its
order and with its defaults (github.com/OpenDCAI/DataFlow-MM,
``dataflow/operators/core_vision/generate/prompted_vqa_generator.py`` and
``video_merged_caption_generator.py``), so its pipeline scripts run with only their imports changed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from vidcap.errors import VidcapError
from vidcap.io.records import iter_records
from vidcap.operator import VideoToCaptionGenerator
from vidcap.prompts import DiyVideoPrompt
from vidcap.serving import _Serving
from vidcap.storage import FileStorage

log = logging.getLogger(__name__)


def _as_template(prompt_template: Any) -> DiyVideoPrompt | None:
    """vidcap's template for DataFlow's ``prompt_template``: a ``DiyVideoPrompt`` (its fields filled
    from each record) or a string as it is; any other object is DataFlow's kind, whose
    ``build_prompt()`` takes no argument and gives the one prompt of every record."""
    if prompt_template is None or isinstance(prompt_template, DiyVideoPrompt):
        return prompt_template
    if isinstance(prompt_template, str):
        return DiyVideoPrompt(prompt_template)
    build = getattr(prompt_template, "build_prompt", None)
    if not callable(build):
        raise VidcapError("prompt_template must be a string, a DiyVideoPrompt or have build_prompt()")
    text = build()
    if not isinstance(text, str) or not text.strip():
        raise VidcapError(f"{type(prompt_template).__name__}.build_prompt() gave no prompt text")
    return DiyVideoPrompt(text.replace("{", "{{").replace("}", "}}"))  # its braces are literal


class PromptedVQAGenerator:
    """Answer each record's prompt about its video(s) with a VLM (DataFlow-MM's operator).

    The prompt: ``prompt_template`` when given (it replaces the text of the conversation's first
    human turn, as in DataFlow), else the column ``input_prompt_key``, else the conversation's
    human turn. Records without video (``input_video_key`` None or absent from every record) are
    DataFlow's pure text mode: a text-only run (``vidcap run --no-video``), which needs a
    ``prompt_template`` or ``input_prompt_key`` here. Records with images are refused before any
    work (vidcap captions videos). ``VideoToCaptionGenerator``'s keyword options apply too.
    """

    def __init__(
        self,
        serving: _Serving,
        system_prompt: str = "You are a helpful assistant.",
        prompt_template: Any = None,
        **options: Any,
    ) -> None:
        self.serving = serving
        self.system_prompt = system_prompt
        self.prompt_template = prompt_template
        self._generator = VideoToCaptionGenerator(serving, **options)
        self.last_result = None

    def run(
        self,
        storage: FileStorage,
        input_conversation_key: str = "conversation",
        input_prompt_key: str | None = None,
        input_image_key: str | None = None,
        input_video_key: str | None = None,
        output_answer_key: str = "answer",
        **keys: Any,
    ) -> str:
        """Answer the storage step's records into its next step's file; returns ``output_answer_key``.

        ``keys``: ``VideoToCaptionGenerator.run``'s keyword-only options (``status_key``, ...).
        """
        if not output_answer_key:
            raise ValueError("output_answer_key must be provided.")
        template = _as_template(self.prompt_template)
        if template is None and input_prompt_key is not None:
            template = DiyVideoPrompt("{" + input_prompt_key + "}")
        records = [r.data for r in iter_records(storage.read_path())]
        with_video = input_video_key is not None and any(
            r.get(input_video_key) not in (None, [], "") for r in records
        )
        if not with_video and template is None:
            raise VidcapError(
                "PromptedVQAGenerator: no record has a video under "
                f"{input_video_key!r}; vidcap's text mode needs prompt_template or input_prompt_key"
            )
        generator = self._generator
        generator.prompt_template = template or generator.prompt_template
        result = generator.run(
            storage,
            input_image_key=input_image_key or "",
            input_video_key=input_video_key or "video",
            input_conversation_key=input_conversation_key,
            output_key=output_answer_key,
            system_prompt=self.system_prompt,
            prompt_first=template is not None,
            no_video=not with_video,
            **keys,
        )
        self.last_result = generator.last_result
        return result


def _seconds(timecode: Any) -> float:
    """DataFlow's reading of a timestamp: seconds, or ``HH:MM:SS.mmm`` (0.0 when unreadable)."""
    if isinstance(timecode, int | float) and not isinstance(timecode, bool):
        return float(timecode)
    try:
        h, m, s = str(timecode).split(":")
        return float(h) * 3600.0 + float(m) * 60.0 + float(s)
    except ValueError:
        return 0.0


def _video_name(clip_id: Any) -> str:
    """The source video of a clip id: ``trailer_0`` -> ``trailer`` (DataFlow's rule)."""
    name = str(clip_id)
    stem, _, last = name.rpartition("_")
    return stem if stem and last.lstrip("-").isdigit() else name


def merge_video_captions(
    records: list[dict[str, Any]],
    caption_key: str = "caption",
    id_key: str = "id",
    timestamp_start_key: str = "timestamp_start",
    timestamp_end_key: str = "timestamp_end",
    duration_key: str = "duration_sec",
) -> list[dict[str, Any]]:
    """One record per source video (first seen first): ``id``, ``captions`` (``From X to Y,
    caption`` lines in time order, seconds as integers, as DataFlow writes them) and ``num_clips``.
    A clip without start, end (or duration) or caption is left out, with a warning naming it."""
    merged: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for record in records:
        clip_id = record.get(id_key, "")
        start = record.get(timestamp_start_key)
        end = record.get(timestamp_end_key)
        if start is None:
            log.warning("clip %s: no %s, left out", clip_id, timestamp_start_key)
            continue
        if end is None and not record.get(duration_key):
            log.warning("clip %s: no %s or %s, left out", clip_id, timestamp_end_key, duration_key)
            continue
        begin = _seconds(start)
        finish = _seconds(end) if end is not None else begin + float(record[duration_key])
        caption = record.get(caption_key)
        text = str(caption).replace("\n", " ").strip() if caption else ""
        if text:
            merged[_video_name(clip_id)].append((begin, finish, text))
    out = []
    for name, clips in merged.items():
        clips.sort(key=lambda clip: clip[0])
        lines = [f"From {int(a)} to {int(b)}, {text[0].lower()}{text[1:]}" for a, b, text in clips]
        out.append({"id": name, "captions": "\n".join(lines), "num_clips": len(clips)})
    return out


class VideoMergedCaptionGenerator:
    """Merge the captions of a video's clips into one ``From X to Y, caption`` text per source video
    (DataFlow-MM's operator): the step's output has one record per video, ready for a text model."""

    def __init__(
        self,
        caption_key: str = "caption",
        id_key: str = "id",
        timestamp_start_key: str = "timestamp_start",
        timestamp_end_key: str = "timestamp_end",
        duration_key: str = "duration_sec",
    ) -> None:
        self.caption_key = caption_key
        self.id_key = id_key
        self.timestamp_start_key = timestamp_start_key
        self.timestamp_end_key = timestamp_end_key
        self.duration_key = duration_key

    def run(self, storage: FileStorage, caption_key: str | None = None, id_key: str | None = None) -> str:
        """Merge the step's clip records into its next step's file; returns that file's path."""
        merged = merge_video_captions(
            storage.read("dict"),
            caption_key=caption_key or self.caption_key,
            id_key=id_key or self.id_key,
            timestamp_start_key=self.timestamp_start_key,
            timestamp_end_key=self.timestamp_end_key,
            duration_key=self.duration_key,
        )
        return storage.write(merged)
