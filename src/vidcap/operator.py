"""``VideoToCaptionGenerator``: DataFlow's video caption operator, on vidcap's pipeline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vidcap.config import RunConfig, RunOptions, validate
from vidcap.errors import VidcapError
from vidcap.executors.job import RunResult, run_captioning
from vidcap.io.records import iter_records
from vidcap.progress import Progress, make_progress
from vidcap.prompts import DiyVideoPrompt, as_prompt_template
from vidcap.serving import _Serving
from vidcap.storage import FileStorage
from vidcap.video.types import SamplingOptions


class VideoToCaptionGenerator:
    """Caption every record's video(s) with a VLM and write the records with a caption added.

    Args:
        vlm_serving: a serving object (``LocalModelVLMServing_vllm`` and siblings).
        prompt_template: a string or ``DiyVideoPrompt``; ``{field}`` placeholders are filled
            from each record. Default: "Please describe the video in detail.".
        sampling: which frames and at what size (default: qwen-vl-utils' fps 2.0 plan).
        batch_size: records per generation batch (and per flushed write).
        decode_workers: decode processes (default: from the CPU count; 0 decodes in-process).
        resume: keep records already in this step's output and caption only the rest
            (default False: like DataFlow, each run rewrites the step's file).
    """

    def __init__(
        self,
        vlm_serving: _Serving,
        prompt_template: str | DiyVideoPrompt | None = None,
        *,
        sampling: SamplingOptions | None = None,
        batch_size: int = 32,
        decode_workers: int | None = None,
        resume: bool = False,
        show_progress: bool = True,
    ) -> None:
        self.vlm_serving = vlm_serving
        self.prompt_template = as_prompt_template(prompt_template)
        self.sampling = sampling or SamplingOptions()
        self.batch_size = batch_size
        self.decode_workers = decode_workers
        self.resume = resume
        self.show_progress = show_progress
        self.last_result: RunResult | None = None

    def run(
        self,
        storage: FileStorage,
        input_image_key: str = "image",
        input_video_key: str = "video",
        input_conversation_key: str = "conversation",
        output_key: str = "caption",
        *,
        input_audio_key: str = "audio",
        status_key: str = "status",
        error_key: str = "error",
        info_key: str = "info",
        system_prompt: str | None = None,
        no_video: bool = False,
        prompt_first: bool = False,
        progress: Progress | None = None,
    ) -> str:
        """Caption the storage step's records into its next step's file; returns ``output_key``.

        The positional parameters are DataFlow-MM's, in its order and with its defaults.
        Relative video paths are opened from the current directory, as DataFlow does (the CLI
        opens them from the input file's folder).
        vidcap captions videos only: a record that holds images under ``input_image_key`` or
        audio under ``input_audio_key`` is refused before any work (the model would not see
        them). ``system_prompt``: for every request; ``no_video``: a text-only pass (``vidcap run
        --no-video``); ``prompt_first``: the template even where a conversation has a prompt.
        When chaining caption steps, give each step its own ``output_key``,
        ``status_key``, ``error_key`` and ``info_key`` (finish reason, token counts, quality
        flags): a record that already has one of these fields is refused before any work.
        """
        if not output_key:
            raise VidcapError("output_key must be a non-empty string")
        _refuse_other_media(storage.read_path(), {"image": input_image_key, "audio": input_audio_key})
        options = RunOptions(
            input=str(storage.read_path()),
            output=str(storage.write_path()),
            prompt=self.prompt_template.prompt_template,  # the same template as run_captioning's
            input_video_key=input_video_key,
            conversation_key=input_conversation_key,
            output_key=output_key,
            status_key=status_key,
            error_key=error_key,
            info_key=info_key,
            system_prompt=system_prompt,
            no_video=no_video,
            prompt_first=prompt_first,
            batch_size=self.batch_size,
            decode_workers=self.decode_workers,
            overwrite=not self.resume,
            # DataFlow opens a record's relative video path from the current directory, whichever
            # step's file the record is in.
            video_root=str(Path.cwd()),
        )
        config = RunConfig(
            run=options,
            engine=self.vlm_serving.engine_config,
            generation=self.vlm_serving.generation,
            sampling=dataclasses.replace(self.sampling),
        )
        validate(config)
        storage.write_path().parent.mkdir(parents=True, exist_ok=True)
        with self.vlm_serving.create_engine() as engine:
            self.last_result = run_captioning(
                config,
                engine,
                template=self.prompt_template,
                progress=progress or make_progress(enabled=self.show_progress),
            )
        return output_key


def _refuse_other_media(path: Path, keys: dict[str, str]) -> None:
    """Stop, naming the first record, when records hold images or audio: vidcap would drop them."""
    for record in iter_records(path):
        for kind, key in keys.items():
            if key and record.data.get(key) not in (None, "", [], {}):
                raise VidcapError(
                    f"{path}: record {record.index} has {kind} under '{key}'; vidcap captions videos "
                    f"only and would not show the model its {kind}: remove the field or caption it elsewhere"
                )
