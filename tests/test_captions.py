"""Structured captions: lenient parsing of what guided decoding produces, then proper JSON out."""

from __future__ import annotations

import json

import pytest

from vidcap.generation import GenerationOptions
from vidcap.io.jsonio import dumps
from vidcap.pipeline.captions import caption_value

SCHEMA = {
    "type": "object",
    "properties": {"summary": {"type": "string"}, "count": {"type": "integer"}},
    "required": ["summary", "count"],
    "additionalProperties": False,
}
STRUCTURED = GenerationOptions(json_schema=SCHEMA)


def test_raw_control_characters_in_strings_are_accepted_and_written_escaped() -> None:
    # What an engine's JSON grammar lets through: a raw newline and a raw tab inside a string.
    text = '{"summary":"a man walks\nthen\tsits","count":2}'
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)  # strict JSON refuses it: the case this parser exists for
    value = caption_value([text], STRUCTURED, raw_key="caption_raw")
    assert value.error is None
    assert value.caption == {"summary": "a man walks\nthen\tsits", "count": 2}
    line = dumps({"caption": value.caption})
    assert b"\\n" in line and b"\\t" in line and b"\n" not in line and b"\t" not in line
    assert json.loads(line) == {"caption": {"summary": "a man walks\nthen\tsits", "count": 2}}


def test_still_invalid_or_off_schema_captions_are_errors_with_the_raw_text() -> None:
    cut = '{"summary":"a man\nwalks","cou'
    value = caption_value([cut], STRUCTURED, raw_key="caption_raw")
    assert value.error is not None and value.error.startswith("structured caption is not valid JSON")
    assert value.extra == {"caption_raw": cut}
    off = caption_value(['{"summary":"x\ty","count":"two"}'], STRUCTURED, raw_key="caption_raw")
    assert off.error == (
        "structured caption does not match the schema at count: 'two' is not of type 'integer'"
    )


def test_several_structured_captions() -> None:
    texts = ['{"summary":"one\n","count":1}', '{"summary":"two","count":2}']
    value = caption_value(texts, GenerationOptions(json_schema=SCHEMA, num_captions=2), raw_key="r")
    assert value.caption == [{"summary": "one\n", "count": 1}, {"summary": "two", "count": 2}]
