"""The fingerprint of a run: what its output's records depend on, so a resume can check it.

Recorded in the summary (written before the first record is appended, and again at the
end), it holds the input (path, size, line or element count), the shard's span of it and a
digest of that span's content (computed by the check pass, which reads the span anyway),
and every option that changes what a record's output says (model and its context length,
prompt, system prompt, generation and frame sampling, output field names): those the table
of options marks (``fingerprint`` in ``vidcap.option_table``). Batch size, workers, timeouts
and the like are left out: they change how fast records are captioned, not what is written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from vidcap.config import OPTION_GROUP, RunConfig
from vidcap.errors import VidcapError
from vidcap.io import staging
from vidcap.io.resume import DoneSet
from vidcap.io.shards import InputSpan
from vidcap.io.sidecar import FINGERPRINT_VERSION, read_summary, summary_path
from vidcap.option_table import ALWAYS, OPTIONS, WHEN_SET

# The groups the fingerprint nests under their name, after the ALWAYS options (the layout of
# FINGERPRINT_VERSION): each holds its fingerprinted fields in the group's field order.
_NESTED = ("generation", "sampling")
_GROUPS = ("run", "engine", *_NESTED)


def run_fingerprint(config: RunConfig, *, prompt: str, span: InputSpan, digest: str | None) -> dict[str, Any]:
    """The fingerprint of a run of ``config`` over ``span`` with the prompt template ``prompt``."""
    return {
        "version": FINGERPRINT_VERSION,
        "input": {
            "path": staging.source_name(span.path),  # an input URL's, for a staged copy
            "size": span.size,
            "format": span.format,
            "units": span.units,
        },
        "span": {"start": span.start, "stop": span.stop, "digest": digest},
        "options": _options(config, prompt),
    }


def _options(config: RunConfig, prompt: str) -> dict[str, Any]:
    """The options of the table (vidcap.option_table) that change what a record's output says:
    the ALWAYS ones, the nested groups, then the WHEN_SET ones that differ from their default
    (left out otherwise, so that outputs written before such an option existed still resume)."""
    groups = {name: dataclasses.asdict(getattr(config, name)) for name in _GROUPS}
    defaults = {name: dataclasses.asdict(getattr(RunConfig(), name)) for name in _GROUPS}
    groups["run"]["prompt"] = prompt  # the template the run uses, whichever way it was given
    marked = [o for o in OPTIONS if o.fingerprint is not None]
    options: dict[str, Any] = {
        o.key: groups[OPTION_GROUP[o.key]][o.key]
        for o in marked
        if o.fingerprint == ALWAYS and OPTION_GROUP[o.key] not in _NESTED
    }
    for name in _NESTED:
        keep = {o.key for o in marked if OPTION_GROUP[o.key] == name}
        options[name] = {k: v for k, v in groups[name].items() if k in keep}
    for o in marked:
        if o.fingerprint == WHEN_SET:
            group = OPTION_GROUP[o.key]
            value = groups[group][o.key]
            if value != defaults[group][o.key]:
                options[o.key] = list(value) if isinstance(value, tuple) else value
    return options


_NAMES = {
    "input.path": "input file",
    "input.size": "input size (bytes)",
    "input.units": "input lines",
    "span.start": "shard's first line",
    "span.stop": "shard's end line",
    "span.digest": "content of the shard's input lines",
}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def fingerprint_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, one short phrase each (``model 'a' -> 'b'``)."""
    before, after = _flatten(old), _flatten(new)
    differences = []
    for key in dict.fromkeys([*after, *before]):
        if key == "version" or before.get(key) == after.get(key):
            continue
        name = _NAMES.get(key) or key.removeprefix("options.").replace("_", "-")
        if key == "span.digest":
            differences.append(f"{name} (digest)")
        else:
            differences.append(f"{name} {_short(before.get(key))} -> {_short(after.get(key))}")
    return differences


def check_resumable(output: Path, fingerprint: dict[str, Any], done: DoneSet) -> None:
    """Refuse to resume onto ``output`` unless its summary's fingerprint is ``fingerprint``.

    An output with no done record is always fine (nothing would be mixed). Otherwise the
    summary must exist and carry the same fingerprint: a run writes it before its first
    record, so records without one were written by something else (another version, a
    copy, a hand edit). Raises VidcapError naming the output, what differs, and the ways out.
    """
    if done.count == 0:
        return
    way_out = "use --overwrite to start it over, or choose another --output"
    summary = read_summary(output)
    name = summary_path(output).name
    if summary is None:
        raise VidcapError(
            f"cannot resume {output}: it holds {done.count} records but no summary ({name}), so "
            f"nothing says which input, shard and options wrote them; {way_out}"
        )
    old = summary.get("fingerprint")
    if not isinstance(old, dict):
        version = summary.get("vidcap_version", "unknown")
        raise VidcapError(
            f"cannot resume {output}: its summary ({name}, vidcap {version}) has no run fingerprint, so "
            f"nothing says which input, shard and options wrote its {done.count} records; {way_out}"
        )
    changed = fingerprint_differences(old, fingerprint)
    if changed:
        raise VidcapError(
            f"cannot resume {output}: its {done.count} records were written by a different run: "
            f"{'; '.join(changed)}; {way_out}"
        )
