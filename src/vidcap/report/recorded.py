"""What the run used, so that the report shows the frames the model saw: its frame-sampling options,
its field names and its model's patch factor.

Each comes from, in order: the report's own flags (``--config``, ``--fps``, ``--output-key``, ...);
the run's summary (``OUTPUT.summary.json``: the options its run fingerprint records, issue 9, and
its ``status_key``); vidcap run's defaults. Nothing here reaches the network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidcap.errors import VidcapError
from vidcap.report.fields import ReportFields
from vidcap.report.source import OutputFile
from vidcap.video.plan import check_sampling
from vidcap.video.types import SamplingOptions

FINGERPRINT_OPTIONS = ("fingerprint", "options")
"""Where a run summary keeps the options that shape its records (the resume fingerprint)."""
# Run option name -> ReportFields attribute.
FIELD_OPTIONS = {
    "output_key": "caption",
    "status_key": "status",
    "error_key": "error",
    "info_key": "info",
    "input_video_key": "video",
}
DEFAULTS_SOURCE = "vidcap run's defaults; pass the run's --config or sampling flags if it used others"


@dataclass(frozen=True)
class Sampling:
    """Frame-sampling options and a few words on where they came from (shown on the page)."""

    options: SamplingOptions
    source: str


def recorded_options(outputs: list[OutputFile]) -> dict[str, Any]:
    """The run options recorded in the first summary that has them, else ``{}``."""
    for output in outputs:
        value: Any = output.summary
        for key in FINGERPRINT_OPTIONS:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, dict):
            return value
    return {}


def resolve_fields(given: dict[str, str], outputs: list[OutputFile]) -> ReportFields:
    """Field names: ``given`` (ReportFields attribute -> name, from flags), else the summary's, else
    the defaults."""
    names: dict[str, str] = {}
    status_key = next((o.summary.get("status_key") for o in outputs if o.summary), None)
    if isinstance(status_key, str):
        names["status"] = status_key
    for option, value in recorded_options(outputs).items():
        if option in FIELD_OPTIONS and isinstance(value, str):
            names[FIELD_OPTIONS[option]] = value
    merged = {**names, **given}
    # What decoding assumed sits beside the caption, named after it (``vidcap run``'s ``{output_key}_notes``).
    merged.setdefault("notes", f"{merged.get('caption', ReportFields.caption)}_notes")
    return ReportFields(**merged)


def _from_summary(outputs: list[OutputFile]) -> Sampling | None:
    values = recorded_options(outputs).get("sampling")
    if not isinstance(values, dict):
        return None
    known = {f.name for f in dataclasses.fields(SamplingOptions)}
    try:
        options = SamplingOptions(**{k: v for k, v in values.items() if k in known})
        check_sampling(options)
    except (TypeError, ValueError, VidcapError):
        return None  # another version's shape: fall back to defaults
    return Sampling(options, "as the run recorded them in its summary")


def resolve_sampling(given: Sampling | None, model: str | None, outputs: list[OutputFile]) -> Sampling:
    """The run's frame-sampling options, with the model's patch factor (see the module doc).

    An explicit ``model`` is read as ``vidcap run`` reads it; otherwise the summary's model is
    used only when it is a local folder here. Raises VidcapError for options that cannot work.
    """
    if given is None:
        recorded = _from_summary(outputs)
        if recorded is not None and model is None:
            return recorded  # the recorded options carry the run's patch factor already
        given = recorded or Sampling(SamplingOptions(), DEFAULTS_SOURCE)
    check_sampling(given.options)  # VidcapError naming the flag
    source = "--model"
    if model is None:
        found = next((o.summary.get("model") for o in outputs if o.summary), None)
        if isinstance(found, str) and (Path(found).expanduser() / "config.json").is_file():
            model, source = found, "the run summary's model"
    if model is None:
        return given
    from vidcap.model.info import vision_geometry  # raises VidcapError with one line

    geometry = vision_geometry(model)
    options = geometry.apply(given.options)
    return Sampling(options, f"{given.source}; patch factor from {source}")
