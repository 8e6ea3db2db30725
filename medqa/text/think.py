"""The `<think>…</think>` answer format, parsed in one place for data checks, rewards, metrics and the demo."""

from __future__ import annotations

import re
from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_THINK_RE = re.compile(r"^\s*<think>(.*?)</think>(.*)$", re.S)
_UNIT = re.compile(r"[\u4e00-\u9fff]|[A-Za-z0-9]+(?:'[A-Za-z]+)?")


def text_units(text: str) -> int:
    """Length of a reasoning or answer part in units: one per CJK character, one per Latin word or number."""
    return len(_UNIT.findall(text or ""))


@dataclass(frozen=True)
class ThinkSplit:
    think: str | None  # reasoning inside the tags (stripped), None when there is no closed think block
    answer: str  # the text after </think> (stripped); the whole text when there is no think block
    well_formed: bool  # exactly one leading <think>…</think> followed by a non-empty answer

    @property
    def has_think(self) -> bool:
        return bool(self.think)


def split_think(text: str) -> ThinkSplit:
    """Split a model output or reference into reasoning and answer.

    Well-formed means: the text starts (after whitespace) with `<think>`, has exactly one open and one
    close tag, non-empty reasoning, and an answer after `</think>` with real content (`has_content`: not
    empty, not only punctuation or chat special tokens).
    """
    text = text or ""
    m = _THINK_RE.match(text)
    if not m:
        # An unclosed <think> means the generation was cut (or the data truncated): no answer at all.
        answer = "" if THINK_OPEN in text else text.strip()
        return ThinkSplit(None, answer, False)
    think, answer = m.group(1).strip(), m.group(2).strip()
    single = text.count(THINK_OPEN) == 1 and text.count(THINK_CLOSE) == 1
    return ThinkSplit(think or None, answer, bool(single and think and has_content(answer)))


_SPECIAL_TOKEN = re.compile(r"<\|[^|<>]*\|>")
_CONTENT = re.compile(r"[\u4e00-\u9fff]|[^\W_]", re.UNICODE)


def has_content(text: str) -> bool:
    """True when the text has at least one letter, digit or CJK character once chat special tokens
    (`<|im_end|>`) are removed: "。", "**" or "<|im_end|>" alone is not an answer."""
    return bool(_CONTENT.search(_SPECIAL_TOKEN.sub("", text or "")))


def join_think(think: str, answer: str) -> str:
    """The canonical project format: `<think>\\n…\\n</think>\\n` + answer."""
    return f"{THINK_OPEN}\n{think.strip()}\n{THINK_CLOSE}\n{answer.strip()}"
