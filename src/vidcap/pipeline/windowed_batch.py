"""Windowed records in today's batch loop: a bridge from ``runner._finish_batch`` to
``pipeline/windows.py``, kept out of the runner so that the runner's diff stays a few lines.

For one batch's windowed records (input order): every window's request goes to the engine in one
``generate`` call, each record's windows are assembled, then (``--summary-prompt``) every
summary request goes in a second call. A streaming feed does not need this module: it submits a
record's window requests as its frames are ready, its summary request once its windows are all
in, and uses ``pipeline/windows.py`` directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vidcap.config import RunConfig
from vidcap.engines.base import CaptionEngine, CaptionOutput, CaptionRequest
from vidcap.pipeline.assemble import output_record
from vidcap.pipeline.assess import SeenCaptions
from vidcap.pipeline.stats import RunStats
from vidcap.pipeline.windows import (
    WindowedResult,
    add_summary,
    assemble_windows,
    record_of_request,
    summary_request,
    window_requests,
)
from vidcap.video.load import WindowedVideo


@dataclass
class WindowedEntry:
    """One windowed record of a batch, decoded, with what the main process decided about it."""

    index: int
    data: dict[str, Any]
    prompt: str
    system_prompt: str | None
    paths: tuple[str, ...]
    video: WindowedVideo
    notes: dict[str, Any]  # the ``{output_key}_notes`` field, or {}


def caption_windowed(
    entries: list[WindowedEntry],
    *,
    config: RunConfig,
    engine: CaptionEngine,
    stats: RunStats,
    seen: SeenCaptions,
    length_problem: Callable[[CaptionRequest], str | None],
) -> dict[int, dict[str, Any]]:
    """The output records of ``entries`` by input index; counts them in ``stats``.

    ``length_problem`` is the run's check of a prompt against the engine's context: a window
    (or summary) it refuses gets that error without reaching the engine.
    """
    opts, generation = config.run, config.generation
    refused: dict[str, CaptionOutput] = {}
    requests: list[CaptionRequest] = []
    for entry in entries:
        stats.videos += 1
        stats.frames += sum(w.plan.nframes for w in entry.video.windows)
        for request in window_requests(
            entry.index, entry.video, prompt=entry.prompt, system_prompt=entry.system_prompt
        ):
            problem = length_problem(request)
            if problem is None:
                requests.append(request)
            else:
                refused[request.request_id] = CaptionOutput(request.request_id, error=problem)
    outputs = {o.request_id: o for o in _generate(engine, requests, stats)}
    outputs.update(refused)

    results: dict[int, WindowedResult] = {}
    summaries: list[CaptionRequest] = []
    for entry in entries:
        result = assemble_windows(
            entry.index, entry.video, outputs, opts=opts, generation=generation, seen=seen
        )
        results[entry.index] = result
        if opts.summary_prompt is None:
            continue
        request = summary_request(
            entry.index, result, summary_prompt=opts.summary_prompt, system_prompt=entry.system_prompt
        )
        if request is None:
            continue
        problem = length_problem(request)
        if problem is None:
            summaries.append(request)
        else:
            add_summary(
                result,
                CaptionOutput(request.request_id, error=problem),
                opts=opts,
                generation=generation,
                seen=seen,
            )
    for output in _generate(engine, summaries, stats):
        add_summary(
            results[record_of_request(output.request_id)], output, opts=opts, generation=generation, seen=seen
        )

    records: dict[int, dict[str, Any]] = {}
    for entry in entries:
        result = results[entry.index]
        stats.prompt_tokens += result.prompt_tokens
        stats.generated_tokens += result.generated_tokens
        stats.count_flags(result.info["flags"])
        if result.status == "ok":
            stats.ok += 1
        else:
            stats.count_error(result.error or "", entry.paths)
        records[entry.index] = output_record(
            entry.data,
            opts,
            status=result.status,
            caption=result.caption,
            error=result.error,
            prompt=entry.prompt,
            extra={**result.fields(), **entry.notes},
        )
    return records


def _generate(engine: CaptionEngine, requests: list[CaptionRequest], stats: RunStats) -> list[CaptionOutput]:
    if not requests:
        return []
    started = time.monotonic()
    outputs = engine.generate(requests)
    stats.generate_s += time.monotonic() - started
    return outputs
