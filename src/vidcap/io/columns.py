"""The fields vidcap adds to every output record, and their types, from the run's options.

A typed output (Parquet) gives these fields one fixed type whatever the records hold, so that
the outputs of one dataset's shards read together (``pyarrow.dataset``, ``datasets``): an
``error`` column is a string column in an output where no record failed too, and a column is
there even when no record of that output has the field (``info`` where no record reached the
engine, ``windows`` where every video was missing, ``caption_notes`` where nothing was assumed).

Types are written as the Parquet writer's sketches: ``"str"``, ``"int"``, ``"float"``,
``("list", item)``, ``("struct", {field: type})``, or None for "typed from the values" (a
structured caption's object, whose fields come from ``--json-schema``).

The options are a run fingerprint's ``options`` (see ``pipeline/fingerprint.py``), which the
runner has before it writes and every shard's summary keeps for ``vidcap merge``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

WINDOWS_KEY = "windows"
"""The output field holding a windowed record's windows (``--window``)."""

_TEXTS = ("list", "str")


def info_type(*, several: bool, retries: bool) -> Any:
    """The info object's type (``pipeline/assess.py``): ``several`` captions make
    ``finish_reason`` a list; ``retries``: the run has ``--retries``, so info may count them."""
    fields: dict[str, Any] = {
        "finish_reason": _TEXTS if several else "str",
        "prompt_tokens": "int",
        "generated_tokens": "int",
        "flags": _TEXTS,
    }
    if retries:
        fields["retries"] = "int"
    return ("struct", fields)


def output_columns(options: Mapping[str, Any]) -> dict[str, Any]:
    """vidcap's own fields of an output record and their types, in record order (see the module doc).

    ``options``: a run fingerprint's ``options`` (output field names, ``generation``,
    ``window``, ``retries``).
    """
    out, status, error, info = (options[k] for k in ("output_key", "status_key", "error_key", "info_key"))
    generation = options.get("generation") or {}
    several = int(generation.get("num_captions") or 1) > 1
    structured = generation.get("json_schema") is not None
    # A structured caption is an object (or a list of them) whose fields the schema decides, and
    # its raw text may be a string or the parsed object (--fail-on): both are typed from values.
    caption = None if structured else (_TEXTS if several else "str")
    raw = None if structured else caption
    columns: dict[str, Any] = {
        out: caption,
        status: "str",
        error: "str",
        f"{out}_raw": raw,
        info: info_type(several=several, retries=bool(options.get("retries"))),
    }
    if options.get("window") is not None:
        window = {
            "start": "float",
            "end": "float",
            out: caption,
            status: "str",
            error: "str",
            f"{out}_raw": raw,
            info: info_type(several=several, retries=False),
        }
        columns[WINDOWS_KEY] = ("list", ("struct", window))
    columns[f"{out}_notes"] = _TEXTS
    return columns
