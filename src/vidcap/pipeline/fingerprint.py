"""The fingerprint of a run: what its output's records depend on, so a resume can check it.

Recorded in the summary (written before the first record is appended, and again at the
end), it holds the input (path, size, line or element count), the shard's span of it and a
digest of that span's content (computed by the check pass, which reads the span anyway),
and every option that changes what a record's output says (model and its context length,
prompt, system prompt, generation and frame sampling, output field names). Batch size,
workers, timeouts and the like are left out: they change how fast records are captioned,
not what is written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from vidcap.config import RunConfig
from vidcap.errors import VidcapError
from vidcap.io import staging
from vidcap.io.resume import DoneSet
from vidcap.io.shards import InputSpan
from vidcap.io.sidecar import FINGERPRINT_VERSION, read_summary, summary_path


def run_fingerprint(config: RunConfig, *, prompt: str, span: InputSpan, digest: str | None) -> dict[str, Any]:
    """The fingerprint of a run of ``config`` over ``span`` with the prompt template ``prompt``."""
    opts = config.run
    return {
        "version": FINGERPRINT_VERSION,
        "input": {
            "path": staging.source_name(span.path),  # an input URL's, for a staged copy
            "size": span.size,
            "format": span.format,
            "units": span.units,
        },
        "span": {"start": span.start, "stop": span.stop, "digest": digest},
        "options": {
            "model": config.engine.model,
            # The context length bounds the default pixel budget, so it changes the frames too.
            "max_model_len": config.engine.max_model_len,
            "prompt": prompt,
            "system_prompt": opts.system_prompt,
            "input_video_key": opts.input_video_key,
            "conversation_key": opts.conversation_key,
            "output_key": opts.output_key,
            "status_key": opts.status_key,
            "error_key": opts.error_key,
            "info_key": opts.info_key,
            "generation": dataclasses.asdict(config.generation),
            # The family and its frame size follow from the model (above): left out, so older
            # outputs still resume.
            "sampling": {
                k: v
                for k, v in dataclasses.asdict(config.sampling).items()
                if k not in ("family", "frame_size", "frame_tokens")
            },
            # Windows change what is captioned, and the summary prompt what the caption says.
            # Left out when unset, so that outputs written before windows existed still resume.
            **({"window": opts.window} if opts.window is not None else {}),
            **({"summary_prompt": opts.summary_prompt} if opts.summary_prompt is not None else {}),
            # A text pass (--no-video) sends no frames: its output is not a video run's.
            **({"no_video": True} if opts.no_video else {}),
            **({"prompt_first": True} if opts.prompt_first else {}),
            # --fail-on and --retries change statuses and captions; also left out when unset.
            **({"fail_on": list(opts.fail_on)} if opts.fail_on else {}),
            **({"retries": opts.retries} if opts.retries else {}),
        },
    }


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
