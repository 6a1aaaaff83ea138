"""Faithful JSON: every value survives dumps -> loads with its type, value and key order."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidcap.io import jsonio


def canon(value: object) -> object:
    """A comparable form that tells apart what == does not: 1/1.0/True, 0.0/-0.0, NaN, key order."""
    if isinstance(value, dict):
        return ("dict", [(k, canon(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [canon(v) for v in value])
    if isinstance(value, float):
        return ("float", value.hex())
    return (type(value).__name__, value)


# Any code point, lone surrogates included (JSON can carry them as \ud800 escapes).
any_text = st.text(st.characters(codec=None, exclude_categories=()))
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(any_text, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400)
@given(json_values)
def test_round_trip_any_value(value: object) -> None:
    data = jsonio.dumps(value)
    assert canon(jsonio.loads(data)) == canon(value)
    assert canon(jsonio.loads(data.decode("utf-8"))) == canon(value)
    # Writing what was read gives the same bytes again.
    assert jsonio.dumps(jsonio.loads(data)) == data


@settings(max_examples=200)
@given(json_values)
def test_pretty_round_trip(value: object) -> None:
    assert canon(jsonio.loads(jsonio.dumps_pretty(value))) == canon(value)


# Floats excluded: orjson and the stdlib spell some differently (1e-7 vs 1e-07), same value.
layout_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200)
@given(layout_values)
def test_pretty_matches_stdlib_layout(value: object) -> None:
    assert jsonio.dumps_pretty(value).decode() == json.dumps(value, indent=2, ensure_ascii=False)


AWKWARD_LINE = (
    '{"id":"007","zeta":1,"alpha":2,"big":123456789012345678901234567890,"neg":-98765432109876543210,'
    '"u64":18446744073709551615,"i64min":-9223372036854775808,"f":0.1,"tiny":5e-324,"e":1e+300,'
    '"negzero":-0.0,"t":true,"n":null,"emoji":"😀🎬","cjk":"视频字幕","rtl":"مرحبا עולם",'
    '"esc":"tab\\tquote\\"nl\\n","nested":{"b":[1,{"c":[]},{}],"a":"x"},"numstr":"00123"}'
)


def test_awkward_record_values_and_key_order() -> None:
    record = jsonio.loads(AWKWARD_LINE)
    assert list(record) == [
        "id", "zeta", "alpha", "big", "neg", "u64", "i64min", "f", "tiny", "e",
        "negzero", "t", "n", "emoji", "cjk", "rtl", "esc", "nested", "numstr",
    ]  # fmt: skip
    assert record["id"] == "007"
    assert record["big"] == 123456789012345678901234567890 and type(record["big"]) is int
    assert record["neg"] == -98765432109876543210
    assert record["u64"] == 2**64 - 1 and record["i64min"] == -(2**63)
    assert math.copysign(1, record["negzero"]) == -1
    assert list(record["nested"]) == ["b", "a"]
    assert canon(jsonio.loads(jsonio.dumps(record))) == canon(record)
    # Same values as the stdlib reads them (the reference for faithfulness).
    assert canon(record) == canon(json.loads(AWKWARD_LINE))


def test_dumps_is_compact_utf8_without_ascii_escapes() -> None:
    assert jsonio.dumps({"a": [1, 2], "é": "😀"}) == '{"a":[1,2],"é":"😀"}'.encode()
    assert jsonio.dumps({"big": 2**70, "é": "😀"}) == f'{{"big":{2**70},"é":"😀"}}'.encode()


@pytest.mark.parametrize(
    "text", ["12345678901234567890", "-9223372036854775809", "[1e400]", "99999999999999999999"]
)
def test_values_orjson_would_change_are_parsed_like_the_stdlib(text: str) -> None:
    assert canon(jsonio.loads(text)) == canon(json.loads(text))


def test_non_finite_floats_are_not_written_as_null() -> None:
    value = {"a": float("nan"), "b": [float("inf"), -math.inf], "c": None}
    data = jsonio.dumps(value)
    assert data == b'{"a":NaN,"b":[Infinity,-Infinity],"c":null}'
    assert canon(jsonio.loads(data)) == canon(value)


def test_lone_surrogate_is_escaped_and_survives() -> None:
    value = {"s": "a\ud800b", "\udfff": 1}
    data = jsonio.dumps(value)
    data.decode("utf-8")  # valid UTF-8 despite the surrogates
    assert canon(jsonio.loads(data)) == canon(value)


def test_invalid_json_raises_stdlib_error_with_position() -> None:
    with pytest.raises(json.JSONDecodeError) as info:
        jsonio.loads(b'{"a": 1 "b": 2}')
    assert info.value.msg == "Expecting ',' delimiter"
    assert (info.value.lineno, info.value.colno) == (1, 9)


def test_invalid_utf8_raises_unicode_error() -> None:
    with pytest.raises(UnicodeDecodeError):
        jsonio.loads(b'{"a": "\xff"}')


def test_element_lines() -> None:
    text = '[\n  {"a": 1},\n  {"b":\n 2}, "x",\n\n  [\n]\n]'
    assert jsonio.element_lines(text) == [2, 3, 4, 6]
    assert jsonio.element_lines(" [ ] ") == []
