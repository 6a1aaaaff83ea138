"""Per-caption info: why generation stopped, token counts, and quality flags.

Every record the engine answered gets an info object (``--info-key``, default ``info``)::

    {"finish_reason": "stop", "prompt_tokens": 812, "generated_tokens": 64, "flags": []}

With ``--num-captions`` > 1, ``finish_reason`` is a list (one per caption, in caption order);
the token counts are the record's (its prompt once, every caption's generated tokens added
up), and a flag is set when any of the record's captions has it.

The flags (they change a record's status only when ``--fail-on`` names them: see
:func:`flag_failure`):

- ``truncated``: generation stopped at ``--max-tokens`` (finish reason ``length``);
- ``repetition``: the caption's tail is one short unit repeated back to back (see
  :func:`is_repetitive` for the rule);
- ``duplicate``: exactly the same caption text as another record's earlier in this run
  (:class:`SeenCaptions` keeps a bounded set of hashes);
- ``empty``: the caption is empty or blank (such a record is an ``error`` already).

vLLM 0.32 has a repetition detector of its own (``SamplingParams.repetition_detection``), but
it acts while generating: it ends the caption early, which changes the text, and only the
vllm backend has it. The check here reads the finished text, the same way for every backend,
and leaves the caption as the model wrote it.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Sequence
from typing import Any

FLAGS = ("truncated", "repetition", "duplicate", "empty")
"""Every flag this module sets, in the order the summary lists them."""

# The repetition rule, in words and in characters (for text with few spaces, or none).
MAX_WORD_PERIOD = 10  # the repeated unit is 1 to 10 words...
MIN_REPEATS = 4  # ...seen at least 4 times back to back...
MIN_LOOP_WORDS = 12  # ...over at least 12 words...
MIN_LOOP_SHARE = 0.3  # ...and at least 30% of the caption (its tail).
MAX_CHAR_PERIOD = 20
MIN_LOOP_CHARS = 40


def periodic_tail(units: Sequence[Any], max_period: int) -> tuple[int, int]:
    """The longest tail of ``units`` that repeats one unit of at most ``max_period`` items back
    to back, as ``(period, length)``; the tail may end part way through the unit (a loop cut by
    ``--max-tokens``). ``(0, 0)`` when ``units`` is empty."""
    best = (0, 0)
    n = len(units)
    for period in range(1, min(max_period, n // 2) + 1):
        # Walk back while each item equals the one a period earlier.
        i = n - 1
        while i - period >= 0 and units[i] == units[i - period]:
            i -= 1
        length = (n - 1 - i) + period
        if length > best[1]:
            best = (period, length)
    return best


def _loops(units: Sequence[Any], max_period: int, min_length: int) -> bool:
    period, length = periodic_tail(units, max_period)
    return (
        period > 0
        and length >= min_length
        and length >= MIN_REPEATS * period
        and length >= MIN_LOOP_SHARE * len(units)
    )


def is_repetitive(text: str) -> bool:
    """True when the caption ends in a loop: a unit of 1-10 words repeated back to back at least
    4 times over at least 12 words and 30% of the words, or a unit of 1-20 characters repeated at
    least 4 times over at least 40 characters and 30% of the text (for text without spaces)."""
    words = text.split()
    if _loops(words, MAX_WORD_PERIOD, MIN_LOOP_WORDS):
        return True
    chars = text.rstrip()
    return _loops(chars, MAX_CHAR_PERIOD, MIN_LOOP_CHARS)


class SeenCaptions:
    """The hashes of caption texts seen so far in a run, at most ``limit`` of them (the oldest
    are forgotten first), so that memory stays bounded on any dataset size."""

    def __init__(self, limit: int = 1_000_000) -> None:
        self.limit = limit
        self._set: set[bytes] = set()
        self._order: deque[bytes] = deque()

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()

    def check_and_add(self, texts: Sequence[str]) -> bool:
        """True when one of ``texts`` (one record's captions) was seen in an earlier record;
        then remembers them all. Blank texts are not counted (the ``empty`` flag covers them)."""
        keys = {self._key(t) for t in texts if t.strip()}
        seen = any(k in self._set for k in keys)
        for key in keys - self._set:
            self._set.add(key)
            self._order.append(key)
            if len(self._order) > self.limit:
                self._set.discard(self._order.popleft())
        return seen

    def preview(self) -> SeenCaptions:
        """A view that checks captions against these but remembers none of them: for a caption
        that may yet be replaced (a ``--retries`` try), which must not count as seen."""
        return _SeenPreview(self)


class _SeenPreview(SeenCaptions):
    """``SeenCaptions.preview``: ``check_and_add`` only checks."""

    def __init__(self, seen: SeenCaptions) -> None:
        super().__init__(seen.limit)
        self._set = seen._set  # shared, read only

    def check_and_add(self, texts: Sequence[str]) -> bool:
        """True when one of ``texts`` was seen in an earlier record; remembers nothing."""
        return any(self._key(t) in self._set for t in texts if t.strip())


def caption_info(
    texts: Sequence[str] | None,
    finish_reasons: Sequence[str | None],
    *,
    prompt_tokens: int,
    generated_tokens: int,
    num_captions: int,
    seen: SeenCaptions,
) -> dict[str, Any]:
    """The info object of one record the engine answered (see the module doc)."""
    texts = list(texts or [])
    reasons = list(finish_reasons)
    flags: list[str] = []
    if "length" in reasons:
        flags.append("truncated")
    if any(is_repetitive(t) for t in texts):
        flags.append("repetition")
    if texts and seen.check_and_add(texts):
        flags.append("duplicate")
    if texts and any(not t.strip() for t in texts):
        flags.append("empty")
    if num_captions == 1:
        finish_reason: Any = reasons[0] if reasons else None
    else:
        finish_reason = reasons or None
    return {
        "finish_reason": finish_reason,
        "prompt_tokens": prompt_tokens,
        "generated_tokens": generated_tokens,
        "flags": flags,
    }


def flag_failure(flags: Sequence[str], fail_on: Sequence[str]) -> str | None:
    """The error of a caption whose flags ``--fail-on`` names, or None when it passes."""
    hit = [f for f in flags if f in fail_on]
    if not hit:
        return None
    return f"caption flagged {', '.join(hit)} (--fail-on {','.join(fail_on)}); its text is kept"


def retry_seed(seed: int | None, attempt: int) -> int:
    """The seed of retry ``attempt`` (1, 2, ...) of a caption ``--fail-on`` failed: the run's seed
    (0 when it has none) plus the attempt, so a seeded run's retries repeat too."""
    return (seed or 0) + attempt
