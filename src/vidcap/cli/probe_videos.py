"""``vidcap probe``: each video's metadata and frame plan, and totals to size a job.

Arguments are video files, folders (searched recursively for video extensions) or datasets
(``.json``/``.jsonl``/``.ndjson``, whose records' ``video`` field, a path or a list of
paths, is relative to the dataset's folder). Nothing is decoded beyond each video's first
frame, so a dataset of thousands of videos probes in seconds.

With ``--model``, the plan is the model family's (``family``) and each video's ``prompt_tokens``
says how long the prompt of ``vidcap run``'s default prompt and that video is, counted with the
model's own processor as the run counts it (absent when the processor cannot be loaded).

With ``--json`` stdout is pure JSON Lines, one object per video (``error`` set for a video
that cannot be read), and the totals go to stderr as one JSON object, so that
``vidcap probe data.jsonl --json > plan.jsonl`` keeps a clean file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidcap.errors import EXIT_OK, EXIT_RECORDS_FAILED, EXIT_USAGE, RecordError, VidcapError
from vidcap.video.types import FramePlan, SamplingOptions

# Counts the prompt tokens of a request holding one planned video (the model's processor).
PromptCounter = Callable[[FramePlan], int]

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m2v", ".ts", ".mts", ".m2ts"}
    | {".ogv", ".flv", ".wmv", ".3gp", ".3g2", ".mxf", ".vob"}
)
DATASET_EXTENSIONS = frozenset((".json", ".jsonl", ".ndjson"))
# Data files that are not videos: read as datasets, so that one vidcap cannot read is refused
# with the same error ``vidcap run`` gives, not probed as a broken video.
TABLE_EXTENSIONS = frozenset((".csv", ".tsv", ".parquet", ".arrow", ".txt", ".xlsx"))


@dataclass(frozen=True)
class _Item:
    """One video to probe: the path to show, the path to open, and where it came from."""

    shown: str
    path: str
    dataset: str | None = None
    record: int | None = None


def _dataset_items(dataset: Path, url: str | None = None) -> Iterator[_Item]:
    """The videos of a dataset's records, read as ``vidcap run`` reads them: a record whose
    video field is missing or malformed stops the probe with the same one-line error, a
    null or empty one has nothing to probe (``run`` marks it skipped). ``url``: the dataset's
    URL when ``dataset`` is its downloaded copy (relative video paths start at its folder)."""
    from vidcap.io.records import iter_records
    from vidcap.io.staging import url_folder
    from vidcap.pipeline.check import record_location, resolve_video_path, video_field_problem, video_paths

    base = url_folder(url) if url else dataset.parent
    for record in iter_records(dataset):
        problem = video_field_problem(record.data, "video")
        if problem:
            raise VidcapError(f"{record_location(dataset, record)}: {problem}")
        for video in video_paths(record.data, "video"):
            path = resolve_video_path(video, base)
            yield _Item(shown=path, path=path, dataset=url or str(dataset), record=record.index)


def _url_items(argument: str) -> Iterator[_Item]:
    """An object-store URL: a dataset (downloaded, then read as a local one) or a video."""
    from vidcap.io import object_store, staging

    if Path(argument).suffix.lower() not in DATASET_EXTENSIONS | TABLE_EXTENSIONS:
        yield _Item(shown=argument, path=argument)
        return
    local = staging.stage_input(argument)
    try:
        yield from _dataset_items(local, url=argument)
    finally:
        staging.unstage_input(local)
        object_store.close_videos()


def expand_paths(paths: list[str]) -> Iterator[_Item]:
    """Videos named by the arguments: files as given, folders searched, datasets read."""
    from vidcap.io.object_store import is_url

    for argument in paths:
        path = Path(argument)
        if is_url(argument):
            yield from _url_items(argument)
        elif path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS):
                if found.is_file():
                    yield _Item(shown=str(found), path=str(found))
        elif path.suffix.lower() in DATASET_EXTENSIONS | TABLE_EXTENSIONS and path.is_file():
            yield from _dataset_items(path)
        else:
            yield _Item(shown=argument, path=argument)


def _with_model_geometry(
    options: SamplingOptions, model: str | None, family: str | None = None
) -> SamplingOptions:
    """``options`` planned for the model's family and patch geometry when a model (or a family)
    is named."""
    if not model and not family:
        return options
    from vidcap.model.info import vision_geometry  # raises VidcapError with one line

    geometry = vision_geometry(model, family=family)
    return geometry.apply(options)


def engine_context(model: str | None, max_model_len: int | None) -> int | None:
    """The context a run's engine will have: ``--max-model-len``, else the model's own (read
    from its config, as vLLM reads it); None when neither is known (no model named)."""
    if max_model_len is not None:
        if max_model_len <= 0:
            raise VidcapError(f"--max-model-len must be > 0, got {max_model_len}")
        return max_model_len
    from vidcap.model.info import context_length  # raises VidcapError with one line

    return context_length(model) if model else None


def over_limit(tokens: int, context: int | None, *, window: bool = False) -> str | None:
    """Why a run's engine would refuse a video (or its largest window) of ``tokens`` visual tokens,
    or None. The engine takes a prompt (text + visual tokens) up to its context, and its encoder
    cache holds a video of that size (``engines/vllm_engine.batch_budget``)."""
    if context is None or tokens < context:
        return None
    what = "its largest window has" if window else "its plan has"
    return (
        f"{what} {tokens:,} visual tokens, more than the engine's context of {context:,} tokens "
        "(--max-model-len, else the model's): a run fails it; lower --fps, --max-frames, --max-pixels "
        "or --total-pixels, or raise --max-model-len"
    )


def prompt_counter(model: str, options: SamplingOptions) -> PromptCounter | None:
    """Counts the tokens of run's default prompt with one planned video, as the engines count
    them (``prompt_token_count`` with the model's processor and family); None when the model's
    processor cannot be loaded here (a hub model not downloaded, a missing library)."""
    import numpy as np

    from vidcap.config import DEFAULT_PROMPT
    from vidcap.engines.caption_engine import CaptionRequest, VideoInput
    from vidcap.engines.chat import prompt_token_count
    from vidcap.families import get_family

    try:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(model)
    except Exception:  # probing still works without it: the prompt length is left out
        return None
    family = get_family(options.family)

    def count(plan: FramePlan) -> int:
        # The processor reads the frames' shape only: no pixels are made (a 0-byte last axis).
        frames = np.zeros((plan.nframes, plan.resized_height, plan.resized_width, 0), dtype=np.uint8)
        video = VideoInput(frames, plan.processor_metadata(), plan.video_tokens)
        return prompt_token_count(processor, CaptionRequest("probe", DEFAULT_PROMPT, [video]), family)

    return count


def probe_one(
    item: _Item,
    options: SamplingOptions,
    window: float | None = None,
    context: int | None = None,
    counter: PromptCounter | None = None,
) -> dict[str, Any]:
    """Metadata and plan of one video as a JSON-ready dict; ``error`` set if it cannot be read.

    ``context``: the run's engine context (``engine_context``): ``over_limit`` says why a run
    would refuse a video whose plan (or largest window) does not fit it.

    With ``window`` (seconds): also ``windows``, each window's span and plan (``video/windows.py``),
    ``window_tokens`` (their visual tokens added up: what captioning the video costs) and
    ``largest_window_tokens`` (the largest prompt's); the other plan fields stay the whole video's.
    ``counter``: adds ``prompt_tokens`` (see ``prompt_counter``).
    """
    import av

    from vidcap.families import plan_video
    from vidcap.video.metadata import libav_message, probe_video
    from vidcap.video.windows import format_span, plan_windows

    row: dict[str, Any] = {"path": item.shown}
    if item.dataset is not None:
        row["dataset"], row["record"] = item.dataset, item.record
    try:
        info = probe_video(item.path)
        row.update(
            container=info.container,
            codec=info.codec,
            width=info.width,
            height=info.height,
            rotation=info.rotation,
            fps=None if info.fps is None else round(info.fps, 4),
            duration=None if info.duration is None else round(info.duration, 4),
            total_frames=info.total_frames,
            pix_fmt=info.pix_fmt,
            bit_depth=info.bit_depth,
        )
        plan = plan_video(info, options)
        whole, windows = plan_windows(info, options, window) if window is not None else (plan, None)
    except RecordError as exc:
        row["error"] = str(exc)
        return row
    except ValueError as exc:  # a frame the planner cannot size (e.g. aspect ratio over 200)
        row["error"] = f"cannot plan frames for {item.shown}: {exc}"
        return row
    except (av.FFmpegError, OSError) as exc:  # whatever else libav trips on: still one row
        row["error"] = f"cannot read video: {item.shown}: {libav_message(exc)}"
        return row
    row.update(
        family=options.family,
        nframes=plan.nframes,
        frame_indices=list(plan.frame_indices),
        timestamps=[round(t, 4) for t in plan.timestamps],
        resized_width=plan.resized_width,
        resized_height=plan.resized_height,
        video_tokens=plan.video_tokens,
    )
    if counter is not None:
        row["prompt_tokens"] = counter(plan)
    notes = list(dict.fromkeys([*info.notes, *plan.notes, *whole.notes]))  # whole: a one-window note
    if windows is not None:
        row["windows"] = [
            {
                "start": round(w.span.start, 4),
                "end": round(w.span.end, 4),
                "nframes": w.plan.nframes,
                "timestamps": [round(t, 4) for t in w.plan.timestamps],
                "resized_width": w.plan.resized_width,
                "resized_height": w.plan.resized_height,
                "video_tokens": w.plan.video_tokens,
            }
            for w in windows
        ]
        row["window_tokens"] = sum(w.plan.video_tokens for w in windows)
        row["largest_window_tokens"] = max(w.plan.video_tokens for w in windows)
        notes += [
            f"window {format_span(w.span)}: {n}" for w in windows for n in w.plan.notes if n not in notes
        ]
    if notes:
        row["notes"] = notes
    problem = over_limit(
        row.get("largest_window_tokens", plan.video_tokens), context, window=windows is not None
    )
    if problem is not None:
        row["over_limit"] = problem
    return row


class _Totals:
    """Running sums for the closing summary."""

    def __init__(self) -> None:
        self.videos = self.errors = self.tokens = self.over_limit = 0
        self.seconds = 0.0
        self.largest: tuple[int, str] = (0, "")

    def add(self, row: dict[str, Any]) -> None:
        if "error" in row:
            self.errors += 1
            return
        self.videos += 1
        self.over_limit += "over_limit" in row
        self.seconds += row.get("duration") or 0.0
        self.tokens += row.get("window_tokens", row["video_tokens"])
        # A windowed video's prompts are its windows: the largest prompt is the largest window.
        largest = row.get("largest_window_tokens", row["video_tokens"])
        if largest > self.largest[0]:
            self.largest = (largest, row["path"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "videos": self.videos,
            "errors": self.errors,
            "over_limit": self.over_limit,
            "hours": round(self.seconds / 3600, 4),
            "visual_tokens": self.tokens,
            "largest_video_tokens": self.largest[0],
            "largest_video": self.largest[1] or None,
        }


def _print_family(name: str) -> None:
    """One line before the table: the family the plan follows, and its reference."""
    from vidcap.families import get_family

    family = get_family(name)
    print(f"model family: {family.label} ({family.name}); frames as {family.reference}")


def _print_table(rows: list[dict[str, Any]], totals: _Totals | None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from vidcap.video.windows import Span, format_span

    console = Console(file=sys.stdout)
    if not console.is_terminal:
        console.width = max(console.width, 140)  # piped to a file: don't fold paths into slivers
    table = Table()
    table.add_column("path", overflow="fold", ratio=3)
    for column in ("container", "codec", "size", "fps", "seconds", "frames", "plan", "resized", "tokens"):
        table.add_column(column, justify="left" if column in ("container", "codec") else "right")
    with_prompt = any("prompt_tokens" in row for row in rows)
    if with_prompt:  # the whole prompt (default prompt + video), as the engine will count it
        table.add_column("prompt", justify="right")
    for row in rows:
        if "error" in row:
            continue
        windows = row.get("windows")
        if windows:  # what a windowed run sends: the windows' frames and tokens added up
            sizes = {f"{w['resized_width']}x{w['resized_height']}" for w in windows}
            nframes, resized = sum(w["nframes"] for w in windows), sizes.pop() if len(sizes) == 1 else "*"
            tokens = row["window_tokens"]
        else:
            nframes, resized = row["nframes"], f"{row['resized_width']}x{row['resized_height']}"
            tokens = row["video_tokens"]
        size = f"{row['width']}x{row['height']}" + (f" r{row['rotation']}" if row["rotation"] else "")
        table.add_row(
            row["path"],
            row["container"].split(",")[0],
            row["codec"],
            size,
            "?" if row["fps"] is None else f"{row['fps']:g}",
            "?" if row["duration"] is None else f"{row['duration']:.2f}",
            "?" if row["total_frames"] is None else str(row["total_frames"]),
            str(nframes),
            resized,
            f"{tokens:,}",
            *([f"{row['prompt_tokens']:,}" if "prompt_tokens" in row else ""] if with_prompt else []),
        )
        for window in row.get("windows", ()):
            span = format_span(Span(window["start"], window["end"]))
            table.add_row(
                f"  window {span}",
                "",
                "",
                "",
                "",
                f"{window['end'] - window['start']:.2f}",
                "",
                str(window["nframes"]),
                f"{window['resized_width']}x{window['resized_height']}",
                f"{window['video_tokens']:,}",
                *([""] if with_prompt else []),
            )
    if table.row_count:
        console.print(table)
    # One line each, never folded at the console's width: people grep for them.
    for row in rows:
        if "error" in row:
            console.print(f"[red]error:[/red] {escape(row['error'])}", highlight=False, soft_wrap=True)
        elif "over_limit" in row:
            console.print(
                f"[yellow]warning:[/yellow] {escape(row['path'])}: {escape(row['over_limit'])}",
                highlight=False,
                soft_wrap=True,
            )
    if totals is not None:
        t = totals.as_dict()
        console.print(
            f"{t['videos']} videos, {t['errors']} unreadable, {t['hours']:.3f} hours, "
            f"{t['visual_tokens']:,} visual tokens; largest prompt: "
            f"{t['largest_video_tokens']:,} video tokens ({t['largest_video']})"
            + (f"; {t['over_limit']} over the engine's context" if t["over_limit"] else ""),
            highlight=False,
        )


def probe_paths(
    paths: list[str],
    json_lines: bool,
    options: SamplingOptions,
    model: str | None,
    window: float | None = None,
    max_model_len: int | None = None,
    family: str | None = None,
) -> int:
    """Probe every video named by ``paths`` and print metadata and plans; return the exit code.

    ``window`` (seconds): show each video's timed windows, each with its plan and tokens.
    ``max_model_len``: the run's; with it or a model, each plan is made for the engine's context
    as a run makes it, and a video over that context gets ``over_limit`` (a warning line).
    ``family``: the model family (``--family``), when the model's config does not say.

    0 when every video was read, 1 when some could not be (each has an ``error``), 2 for a
    usage problem (no videos found, a model whose config cannot be read, a bad dataset).
    """
    try:
        if window is not None and not (math.isfinite(window) and window > 0):
            raise VidcapError("--window must be > 0 seconds")
        options = _with_model_geometry(options, model, family)
        context = engine_context(model, max_model_len)
        if context is not None:  # the default pixel budget follows the context, as in a run
            options = dataclasses.replace(options, model_seq_len=context)
        counter = prompt_counter(model, options) if model else None
        items = expand_paths(paths)
        totals = _Totals()
        rows: list[dict[str, Any]] = []
        several = len(paths) > 1
        for count, item in enumerate(items, start=1):
            several = several or item.dataset is not None or count > 1
            row = probe_one(item, options, window, context, counter)
            totals.add(row)
            if json_lines:
                sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
                sys.stdout.flush()
            else:
                rows.append(row)
    except VidcapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if totals.videos + totals.errors == 0:
        print(f"error: no videos found in {' '.join(paths)}", file=sys.stderr)
        return EXIT_USAGE
    if json_lines:
        if several:
            print(json.dumps({"totals": totals.as_dict()}, ensure_ascii=False), file=sys.stderr)
    else:
        if model or family:
            _print_family(options.family)
        _print_table(rows, totals if several else None)
    return EXIT_RECORDS_FAILED if totals.errors else EXIT_OK
