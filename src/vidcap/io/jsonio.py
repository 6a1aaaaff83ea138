"""Faithful JSON: orjson for speed, the stdlib ``json`` wherever orjson would change a value.

Every value read with :func:`loads` comes back equal (same type, same key order) after
:func:`dumps` and :func:`loads` again. orjson alone does not guarantee that, and not always
by raising an error:

* ``loads``: integers beyond the 64-bit range come back as *floats*, silently
  (``123456789012345678901234567890`` -> ``1.2345678901234568e+29``); ``NaN``/``Infinity``,
  ``1e400`` and escaped lone surrogates (``"\\ud800"``) are rejected.
* ``dumps``: NaN and infinities are written as ``null``, silently; integers beyond 64 bits,
  non-string keys and lone surrogates are rejected.

The stdlib handles all of these, so it takes over whenever orjson might be wrong.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

# A run of 19+ digits may be an integer orjson turns into a float: 19 digits already
# overflow i64 when negative (-9999999999999999999). Digits inside strings or fractions
# match too; those just take the (correct, slower) stdlib path.
_LONG_DIGITS_B = re.compile(rb"[0-9]{19}")
_LONG_DIGITS_S = re.compile(r"[0-9]{19}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(text: str | bytes) -> Any:
    """Parse one JSON document faithfully.

    Raises ``json.JSONDecodeError`` (with the stdlib's message, line and column) for invalid
    JSON and ``UnicodeDecodeError`` for bytes that are not UTF-8.
    """
    pattern = _LONG_DIGITS_B if isinstance(text, bytes) else _LONG_DIGITS_S
    if pattern.search(text) is None:  # type: ignore[arg-type]
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # maybe valid for the stdlib (NaN, 1e400, "\ud800"); it also words errors better
    if isinstance(text, bytes):
        # Decode ourselves: json.loads(bytes) would guess UTF-16/32 and accept a BOM.
        text = text.decode("utf-8")
    return json.loads(text)


def _has_non_finite(obj: Any) -> bool:
    """True if ``obj`` contains a float NaN or infinity anywhere (iterative: no recursion limit)."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _escape_surrogate(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _stdlib_dumps(obj: Any, indent: int | None) -> bytes:
    separators = (",", ": ") if indent is not None else (",", ":")
    text = json.dumps(obj, ensure_ascii=False, allow_nan=True, indent=indent, separators=separators)
    # A lone surrogate cannot be encoded as UTF-8; a raw one can only sit inside a string
    # literal, so its \\uXXXX escape there is valid JSON and reads back as the same string.
    return _LONE_SURROGATE.sub(_escape_surrogate, text).encode("utf-8")


def _dumps(obj: Any, indent: int | None) -> bytes:
    try:
        out = orjson.dumps(obj, option=orjson.OPT_INDENT_2 if indent else 0)
    except TypeError:  # orjson.JSONEncodeError: big int, non-str key, lone surrogate, ...
        return _stdlib_dumps(obj, indent)
    # orjson writes NaN/inf as null; only look for them when a null was written at all.
    if b"null" in out and _has_non_finite(obj):
        return _stdlib_dumps(obj, indent)
    return out


def dumps(obj: Any) -> bytes:
    """Serialize ``obj`` as compact UTF-8 JSON (no ASCII escaping, no newline at the end).

    NaN and infinities are written as ``NaN``/``Infinity``/``-Infinity`` (what the stdlib and
    :func:`loads` accept), so a value read from a file is written back unchanged.
    """
    return _dumps(obj, None)


def dumps_pretty(obj: Any) -> bytes:
    """Serialize ``obj`` like ``json.dumps(obj, indent=2, ensure_ascii=False)``, as UTF-8 bytes."""
    return _dumps(obj, 2)


def element_lines(text: str) -> list[int]:
    """1-based line on which each element of a top-level JSON array starts.

    Slow (stdlib scanner, element by element); only used to point error messages at the
    right line of a ``.json`` file. ``text`` must be a valid JSON array.
    """
    decoder = json.JSONDecoder()
    ws = re.compile(r"[ \t\n\r]*")
    lines: list[int] = []
    pos = ws.match(text, 0).end()  # type: ignore[union-attr]
    if text[pos : pos + 1] != "[":
        raise ValueError("not a JSON array")
    pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
    line, counted_to = 1, 0
    if text[pos : pos + 1] == "]":
        return lines
    while True:
        line += text.count("\n", counted_to, pos)
        counted_to = pos
        lines.append(line)
        _, pos = decoder.raw_decode(text, pos)
        pos = ws.match(text, pos).end()  # type: ignore[union-attr]
        if text[pos : pos + 1] != ",":
            return lines
        pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
