"""Build the report: count and plot every record, choose the records to show, draw their frames
in the decode worker pool, and write the page atomically.
"""

from __future__ import annotations

import base64
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from vidcap.errors import RecordError, VidcapError
from vidcap.io.files import atomic_write, make_parent_folder
from vidcap.report.charts import bar_chart, histogram
from vidcap.report.fields import STATUSES, ReportFields
from vidcap.report.page import PAGE_SIZE, render_page
from vidcap.report.recorded import Sampling, resolve_fields, resolve_sampling
from vidcap.report.source import OutputFile, RecordView, iter_views, open_output
from vidcap.report.thumbs import Strip, StripTask, draw_strip
from vidcap.video.pool import OrderedPool, default_workers

DEFAULT_LIMIT = 1000
"""Without ``--sample``/``--all``, a report shows at most this many records (a seeded random sample)."""
MAX_PROBLEM_LINES = 20  # stderr lines about unreadable videos; the page lists them all


@dataclass(frozen=True)
class ReportOptions:
    """What to report on and how; see ``vidcap report --help`` for each option."""

    outputs: tuple[Path, ...]
    html: Path
    sampling: Sampling | None = None  # None: as the run summary records them, else vidcap run's defaults
    model: str | None = None  # for its patch factor; default: the run summary's model, if a local folder
    field_names: dict[str, str] = field(default_factory=dict)  # ReportFields attribute -> name, from flags
    video_root: Path | None = None
    only: tuple[str, ...] = ()
    sample: int | None = None
    seed: int = 0
    show_all: bool = False
    frames: int = 12
    workers: int | None = None
    decode_timeout: float = 120.0


@dataclass
class ReportResult:
    """What was written: the page, how many records it shows of how many, and the video problems."""

    html: Path
    shown: int
    total: int
    matching: int
    problems: list[str]
    bytes: int


@dataclass
class _Tally:
    """Counts over every record of the outputs (the page's header), and the records --only keeps."""

    records: int = 0
    statuses: Counter = field(default_factory=Counter)
    flags: Counter = field(default_factory=Counter)
    lengths: list[int] = field(default_factory=list)  # words per caption of a video or a window
    summary_lengths: list[int] = field(default_factory=list)  # words per summary (--summary-prompt)
    candidates: list[int] = field(default_factory=list)


def _say(message: str) -> None:
    print(f"report: {message}", file=sys.stderr)


def _ordered(counts: Counter) -> dict[str, int]:
    """Statuses in vidcap's order first, then any others by count."""
    known = {s: counts[s] for s in STATUSES if counts[s]}
    return known | {k: v for k, v in counts.most_common() if k not in known}


def _matches(view: RecordView, only: tuple[str, ...]) -> bool:
    """``--only``: a status name (error, ok, skipped) or a flag; several values mean any of them."""
    if not only:
        return True
    return view.status in only or any(flag in only for flag in view.all_flags())


def _tally(outputs: list[OutputFile], fields: ReportFields, only: tuple[str, ...]) -> _Tally:
    tally = _Tally()
    for view in iter_views(outputs, fields):
        tally.records += 1
        tally.statuses[view.status] += 1
        tally.flags.update(view.all_flags())
        tally.lengths.extend(len(text.split()) for text in view.captions())
        summary = view.summary()
        if summary:
            tally.summary_lengths.append(len(summary.split()))
        if _matches(view, only):
            tally.candidates.append(view.position)
    return tally


def _choose(candidates: list[int], opts: ReportOptions) -> tuple[list[int], str]:
    """The positions to show, in output order, and a sentence saying how they were chosen."""
    count = len(candidates)
    limit = opts.sample if opts.sample is not None else (None if opts.show_all else DEFAULT_LIMIT)
    if limit is None or count <= limit:
        return candidates, f"All {count:,} of them are on this page, {PAGE_SIZE} at a time (use the pager)."
    chosen = sorted(random.Random(opts.seed).sample(candidates, limit))
    how = "--sample" if opts.sample is not None else f"the default cap of {DEFAULT_LIMIT:,}; --all for all"
    return chosen, (
        f"A random sample of {limit:,} of them is on this page (seed {opts.seed}, {how}), "
        f"{PAGE_SIZE} at a time (use the pager)."
    )


def _strip_tasks(view: RecordView, opts: ReportOptions) -> Iterator[tuple[str, StripTask]]:
    """(label, task) per strip of a record: each video, or each window of each video."""
    assert opts.sampling is not None  # resolved by build_report
    sampling = opts.sampling.options
    pairs = list(zip(view.shown_videos, view.videos, strict=True))
    segments = [(w.start, w.end) for w in view.windows] if view.windows else [(view.start, view.end)]
    for start, end in segments:
        for shown, path in pairs:
            task = StripTask(path, sampling, start=start, end=end, max_frames=opts.frames)
            yield shown, task


def _strip_json(label: str, strip: Strip | None, error: str | None) -> dict[str, Any]:
    if strip is None:
        return {"label": label, "error": error, "frames": [], "planned": None, "notes": []}
    frames = [[t, "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()] for t, jpeg in strip.frames]
    return {
        "label": label,
        "error": None,
        "frames": frames,
        "planned": strip.planned,
        "width": strip.width,
        "height": strip.height,
        "notes": list(strip.notes),
    }


def _bound(value: float | None) -> float | None:
    """A window bound to the microsecond: ``29.600147999999997`` is ``29.600148``."""
    return None if value is None else round(value, 6)


def _notes_once(record_notes: tuple[str, ...], strips: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The strips without the notes already said: the record's own notes (the run wrote them,
    ``caption_notes``, maybe prefixed with the video's name or the window) and those of an
    earlier strip (a stream's notes repeat for every window)."""
    said = set(record_notes)

    def new(note: str) -> bool:
        return note not in said and not any(n.endswith(f": {note}") for n in record_notes)

    shown = []
    for strip in strips:
        notes = [n for n in strip["notes"] if new(n)]
        said.update(strip["notes"])
        shown.append({**strip, "notes": notes})
    return shown


def _shot_json(view: RecordView) -> dict[str, Any]:
    """A shot record's id, kind and span in its source video (seconds)."""
    return {"id": view.shot_id, "kind": view.shot_kind, "start": _bound(view.start), "end": _bound(view.end)}


def _record_json(view: RecordView, strips: list[dict[str, Any]]) -> dict[str, Any]:
    per_segment = max(len(view.videos), 1)
    strips = _notes_once(view.notes, strips)
    record = {
        "n": view.position + 1,
        "id": view.id,
        "where": view.where,
        "status": view.status,
        "caption": view.caption,
        "caption_kind": view.caption_kind,
        "summary_prompt": view.summary_prompt,
        "error": view.error,
        "notes": list(view.notes),
        "problems": list(view.problems),
        "info": view.info,
        "flags": list(view.flags),
        "all_flags": list(view.all_flags()),
        "strips": [] if view.windows else strips,
        "windows": [],
        # A shot of `vidcap clips`: its span in the source video, shown above its frames.
        "shot": None if view.shot_id is None else _shot_json(view),
    }
    for number, window in enumerate(view.windows):
        record["windows"].append(
            {
                "start": _bound(window.start),
                "end": _bound(window.end),
                "caption": window.caption,
                "status": window.status,
                "info": window.info,
                "flags": list(window.flags),
                "strips": strips[number * per_segment : (number + 1) * per_segment],
            }
        )
    return record


def _draw(views: list[RecordView], opts: ReportOptions, problems: list[str]) -> list[dict[str, Any]]:
    """Every chosen record as page data, its strips drawn in the worker pool (in order)."""
    jobs = [(view, label, task) for view in views for label, task in _strip_tasks(view, opts)]
    workers = opts.workers if opts.workers is not None else min(default_workers(), max(len(jobs), 1))
    if jobs:
        _say(f"drawing frames of {len(jobs):,} videos with {workers} decode worker(s)")
    drawn: dict[int, list[dict[str, Any]]] = {view.position: [] for view in views}
    with OrderedPool(
        draw_strip,
        workers=workers,
        max_pending=2 * max(workers, 1) + 2,
        timeout_s=opts.decode_timeout,
        error_types=(RecordError,),  # anything else is a bug: its message keeps its type name
    ) as pool:
        for (view, label, _), outcome in zip(jobs, pool.imap(task for _, _, task in jobs), strict=True):
            if outcome.error is not None:
                problems.append(f"{view.where} (id {view.id}): {label}: {outcome.error}")
                if len(problems) <= MAX_PROBLEM_LINES:
                    _say(f"video not shown: {problems[-1]}")
            drawn[view.position].append(_strip_json(label, outcome.result, outcome.error))
    if len(problems) > MAX_PROBLEM_LINES:
        _say(f"... and {len(problems) - MAX_PROBLEM_LINES} more videos not shown (listed on the page)")
    return [_record_json(view, drawn[view.position]) for view in views]


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def _short_model(model: Any) -> Any:
    """A local model folder by its name (the full path is long and says little here)."""
    return Path(model).name if isinstance(model, str) and Path(model).is_absolute() else model


def _busy(summary: dict) -> Any:
    engine = summary.get("engine")  # issue 10's engine statistics, where the run has them
    return engine.get("busy_fraction") if isinstance(engine, dict) else None


_SUMMARY_COLUMNS: tuple[tuple[str, Callable[[dict], Any]], ...] = (
    ("model", lambda s: _short_model(s.get("model"))),
    ("backend", lambda s: s.get("backend")),
    ("complete", lambda s: s.get("complete")),
    ("records written", lambda s: s.get("records_written", s.get("records"))),
    ("elapsed s", lambda s: s.get("elapsed_s")),
    ("videos/s", lambda s: s.get("videos_per_s")),
    ("records/s", lambda s: s.get("records_per_s")),
    ("generated tokens/s", lambda s: s.get("generated_tokens_per_s")),
    ("engine busy", _busy),
)


def _summary_table(outputs: list[OutputFile]) -> str:
    with_summary = [o for o in outputs if o.summary is not None]
    if not with_summary:
        return (
            '<p class="muted">No run summary (OUTPUT.summary.json) beside the output: '
            "figures come from the records.</p>"
        )
    columns = [(n, f) for n, f in _SUMMARY_COLUMNS if any(f(o.summary) is not None for o in with_summary)]
    head = "".join(f"<th>{escape(name)}</th>" for name, _ in columns)
    rows = "".join(
        f"<tr><td>{escape(o.path.name)}</td>"
        + "".join(f"<td>{escape(_fmt(get(o.summary)))}</td>" for _, get in columns)
        + "</tr>"
        for o in with_summary
    )
    return f'<table class="summary"><tr><th>run summary of</th>{head}</tr>{rows}</table>'


def _header(
    opts: ReportOptions, outputs: list[OutputFile], tally: _Tally, chosen: int, how: str, problems: list[str]
) -> str:
    statuses = ", ".join(f"{n:,} {s}" for s, n in _ordered(tally.statuses).items())
    flagged = ", ".join(f"{n:,} {f}" for f, n in tally.flags.most_common()) or "none"
    selection = f"{tally.records:,} records ({statuses}; flags: {flagged})."
    if opts.only:
        selection += f" --only {','.join(opts.only)}: {len(tally.candidates):,} match."
    assert opts.sampling is not None  # resolved by build_report
    options = asdict(opts.sampling.options)
    if options["fps"] is None and options["nframes"] is None:
        options["fps"] = 2.0  # what the plan uses when neither is given
    sampling = ", ".join(f"{k} {v}" for k, v in options.items() if v is not None)
    notes = [n for o in outputs for n in o.notes] + [f"video not shown: {p}" for p in problems]
    notes_html = "".join(f"<li>{escape(n)}</li>" for n in notes)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sources = ", ".join(str(o.path) for o in outputs)
    return (
        f"<h1>vidcap report</h1><p>{escape(sources)} · generated {when}</p>"
        f"<p>{escape(selection)} {escape(how)}</p>"
        f'<p class="muted">Frames: the plan <code>vidcap run</code> makes with {escape(sampling)} '
        f"({escape(opts.sampling.source)}); at most {opts.frames} of each video's planned frames are shown, "
        "evenly spread, with their time in the video.</p>"
        + (f'<ul class="notes-top">{notes_html}</ul>' if notes else "")
        + _summary_table(outputs)
        + '<div class="charts">'
        + bar_chart("records by status", _ordered(tally.statuses))
        + bar_chart("records by flag", dict(tally.flags.most_common()))
        + histogram("caption length", tally.lengths, unit="words per caption (of a video, or of a window)")
        + (
            histogram("summary length", tally.summary_lengths, unit="words per summary (--summary-prompt)")
            if tally.summary_lengths
            else ""
        )
        + "</div>"
    )


def build_report(opts: ReportOptions) -> ReportResult:
    """Write the report page for ``opts.outputs`` to ``opts.html``; see the module doc.

    Raises VidcapError for an output that cannot be read (one line naming the file and line);
    a video that cannot be read is shown as such on the page and does not stop the report.
    """
    if opts.frames < 1:
        raise VidcapError("--frames must be >= 1")
    if opts.sample is not None and opts.sample < 1:
        raise VidcapError("--sample must be >= 1")
    outputs = [open_output(Path(p), opts.video_root) for p in opts.outputs]
    for output in outputs:
        for note in output.notes:
            _say(note)
    opts = replace(opts, sampling=resolve_sampling(opts.sampling, opts.model, outputs))
    fields = resolve_fields(opts.field_names, outputs)

    tally = _tally(outputs, fields, opts.only)
    if tally.records == 0:
        raise VidcapError(f"{', '.join(map(str, opts.outputs))}: no records to report on")
    if not tally.candidates:
        seen = ", ".join([*_ordered(tally.statuses), *tally.flags]) or "none"
        raise VidcapError(f"no record matches --only {','.join(opts.only)} (present: {seen})")
    chosen, how = _choose(tally.candidates, opts)
    wanted = set(chosen)
    views = [v for v in iter_views(outputs, fields) if v.position in wanted]

    problems: list[str] = []
    records = _draw(views, opts, problems)
    shown_statuses = _ordered(Counter(r["status"] for r in records))
    shown_flags = dict(Counter(f for r in records for f in r["all_flags"]).most_common())
    page = render_page(
        title=f"vidcap report: {opts.outputs[0].name}",
        header_html=_header(opts, outputs, tally, len(chosen), how, problems),
        records=records,
        statuses=shown_statuses,
        flags=shown_flags,
    )
    make_parent_folder(opts.html, "the report")
    try:
        atomic_write(opts.html, [page])
    except OSError as exc:
        raise VidcapError(f"{opts.html}: cannot write the report: {exc.strerror or exc}") from None
    return ReportResult(
        html=opts.html,
        shown=len(records),
        total=tally.records,
        matching=len(tally.candidates),
        problems=problems,
        bytes=len(page),
    )
