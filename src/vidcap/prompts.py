"""Prompts: templates filled from record fields, and the record's conversation.

Which prompt a record gets, in order:
1. a non-empty human turn in the record's conversation is used as it is;
2. otherwise the template (``--prompt``/``--prompt-file``, a ``DiyVideoPrompt`` or a string)
   with ``{field}`` placeholders filled from the record (``{{``/``}}`` are literal braces);
3. otherwise ``DEFAULT_PROMPT``.
The output record's human turn then shows the prompt that was actually sent.
"""

from __future__ import annotations

import copy
import string
from typing import Any

from vidcap.config import DEFAULT_PROMPT
from vidcap.errors import RecordError, VidcapError

_HUMAN_ROLES = ("human", "user")


class DiyVideoPrompt:
    """A prompt template whose ``{field}`` placeholders are filled from each record.

    ``DiyVideoPrompt("Describe the video focusing on: {aspect}")`` takes ``aspect`` from the
    record. A record that lacks a field gets an error status; the run goes on.
    """

    def __init__(self, prompt_template: str) -> None:
        self.prompt_template = prompt_template
        try:
            parsed = list(string.Formatter().parse(prompt_template))
        except ValueError as exc:
            raise VidcapError(f"invalid prompt template {prompt_template!r}: {exc}") from None
        self.fields: tuple[str, ...] = tuple(
            dict.fromkeys(name.split(".")[0].split("[")[0] for _, name, _, _ in parsed if name)
        )
        if any(not name or name.isdigit() for name in self.fields):
            raise VidcapError(
                f"invalid prompt template {prompt_template!r}: placeholders must name record fields"
            )

    def build_prompt(self, **fields: Any) -> str:
        """The template filled with ``fields``; a missing field raises ``RecordError``."""
        missing = [name for name in self.fields if name not in fields]
        if missing:
            raise RecordError(f"prompt template needs field '{missing[0]}', which the record does not have")
        try:
            return self.prompt_template.format(**fields)
        except (KeyError, IndexError, AttributeError, ValueError) as exc:
            raise RecordError(f"cannot fill prompt template: {exc}") from None

    def __repr__(self) -> str:
        return f"DiyVideoPrompt({self.prompt_template!r})"


class VideoCaptionGeneratorPrompt(DiyVideoPrompt):
    """DataFlow-MM's default video caption prompt: "Please describe the video in detail."."""

    def __init__(self) -> None:
        super().__init__(DEFAULT_PROMPT)


def as_prompt_template(prompt: str | DiyVideoPrompt | None) -> DiyVideoPrompt:
    """One template type for every way a prompt can be given."""
    if isinstance(prompt, DiyVideoPrompt):
        return prompt
    if prompt is None:
        return DiyVideoPrompt(DEFAULT_PROMPT)
    if not isinstance(prompt, str) or not prompt.strip():
        raise VidcapError("the prompt must be a non-empty string or a DiyVideoPrompt")
    return DiyVideoPrompt(prompt)


def _human_turn(conversation: Any) -> dict | None:
    if not isinstance(conversation, list):
        return None
    for turn in conversation:
        if isinstance(turn, dict) and (turn.get("from") in _HUMAN_ROLES or turn.get("role") == "user"):
            return turn
    return None


def _turn_text_key(turn: dict) -> str:
    return "value" if "value" in turn or "from" in turn else "content"


def conversation_prompt(conversation: Any) -> str | None:
    """The text of the conversation's first human turn, if it is a non-empty string."""
    turn = _human_turn(conversation)
    if turn is None:
        return None
    text = turn.get(_turn_text_key(turn))
    return text if isinstance(text, str) and text.strip() else None


def conversation_system_prompt(conversation: Any) -> str | None:
    """The text of a system turn in the conversation, if any."""
    if not isinstance(conversation, list):
        return None
    for turn in conversation:
        if isinstance(turn, dict) and "system" in (turn.get("from"), turn.get("role")):
            text = turn.get(_turn_text_key(turn))
            if isinstance(text, str) and text.strip():
                return text
    return None


def resolve_prompt(
    record: dict, template: DiyVideoPrompt, conversation_key: str, *, template_first: bool = False
) -> str:
    """The prompt for one record (see the module docstring for the order); ``template_first``:
    the template even where the conversation has a prompt."""
    from_conversation = None if template_first else conversation_prompt(record.get(conversation_key))
    if from_conversation is not None:
        return from_conversation
    return template.build_prompt(**record)


def with_prompt_shown(conversation: Any, prompt: str) -> Any:
    """A copy of the conversation whose first human turn holds ``prompt`` (others untouched)."""
    if _human_turn(conversation) is None:
        return conversation
    updated = copy.deepcopy(conversation)
    turn = _human_turn(updated)
    assert turn is not None
    turn[_turn_text_key(turn)] = prompt
    return updated
