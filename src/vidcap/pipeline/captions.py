"""Turn an engine's texts for one record into the caption value, or an error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vidcap.generation import GenerationOptions


@dataclass
class CaptionValue:
    """The caption to store (str, list of str, object, list of objects) or an error."""

    caption: Any = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def caption_value(texts: list[str], generation: GenerationOptions, *, raw_key: str) -> CaptionValue:
    """One caption (``num_captions`` 1) or a list; with a JSON schema, parsed and validated objects.

    An empty caption is an error: a dataset row with an empty caption is worse than a row
    marked failed. A structured caption is parsed leniently (raw control characters inside
    strings are accepted); one that still does not parse, or does not validate, is an error
    too, and the raw text is kept under ``raw_key`` for inspection.
    """
    values: list[Any] = []
    for text in texts:
        if not text.strip():
            return CaptionValue(error="the model returned an empty caption")
        if generation.json_schema is None:
            values.append(text)
            continue
        parsed, problem = _parse_and_validate(text, generation.json_schema)
        if problem is not None:
            raw = texts if len(texts) > 1 else text
            return CaptionValue(error=f"structured caption {problem}", extra={raw_key: raw})
        values.append(parsed)
    return CaptionValue(caption=values[0] if generation.num_captions == 1 else values)


def _parse_and_validate(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    import json

    import jsonschema

    try:
        # strict=False: guided decoding's JSON grammar (xgrammar's, and others') lets raw control
        # characters such as newlines and tabs into strings, which strict JSON forbids. They are
        # kept as the characters they are; the writer escapes them, so the output is proper JSON.
        value = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        return None, f"does not match the schema at {where}: {exc.message}"
    return value, None
