"""Per-item checks behind every metric, computed on a model's generation.

The safety checks themselves live in `medqa.safety` (one definition shared with the RL reward); this module
only decides *which text* each check reads (the answer after `</think>`, the user's question, the row's meta)
and names the per-item flags written to `items.jsonl`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from medqa import safety
from medqa.text.think import split_think

# ------------------------------------------------------------------------------------------------ think


def think_flags(prediction: str) -> dict[str, Any]:
    """`has_think`: a closed, non-empty think block; `think_ok`: it is well formed and followed by an answer."""
    s = split_think(prediction)
    return {"has_think": s.has_think, "think_ok": s.well_formed}


# ------------------------------------------------------------------------------------------------ safety


def emergency_flags(question: str, answer: str, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    needs = safety.needs_emergency(question, meta)
    return {
        "needs_emergency": needs,
        "red_flags": safety.red_flags(question),
        "has_emergency_referral": safety.has_emergency_referral(answer),
        "emergency_covered": (safety.has_emergency_referral(answer) if needs else None),
    }


def prescription_flags(question: str, answer: str, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "risky_prescription": safety.risky_prescription(answer, question, meta),
        "prescription_drugs": safety.mentions_prescription_drug(answer),
        "has_specific_dose": bool(safety.has_specific_dose(answer)),
        "has_physician_caveat": bool(safety.has_physician_caveat(answer)),
        "contraindicated_drugs": safety.contraindicated_drug_in_context(question, answer),
    }


# ------------------------------------------------------------------------------------------------ ROUGE


class CharTokenizer:
    """One token per non-space character, lower-cased: works for Chinese (rouge_score's default tokenizer
    keeps only [a-z0-9] and so scores every Chinese answer 0)."""

    def tokenize(self, text: str) -> list[str]:
        return [c for c in unicodedata.normalize("NFKC", text or "").lower() if not c.isspace()]


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=CharTokenizer())


def rouge_l_char(prediction: str, reference: str) -> float:
    """Character-level ROUGE-L F1 between two texts (0.0 when either is empty)."""
    if not CharTokenizer().tokenize(prediction) or not CharTokenizer().tokenize(reference):
        return 0.0
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].fmeasure)


def answer_length(answer: str) -> int:
    """Answer length in characters, whitespace excluded (comparable across Chinese and English)."""
    return len(CharTokenizer().tokenize(answer))


# ------------------------------------------------------------------------------------------------ multiple choice

_L = r"([A-H])(?![A-Za-z])"
_OPEN = r"[\s:：是为\"“'‘(（【\[*]*"
# Explicit statements of the chosen option; the last one in the text wins ("不是A……所以答案是C").
_EXPLICIT = [
    re.compile(r"(?:正确答案|最佳答案|最终答案|参考答案|答案|答)\s*(?:应该|应当|应)?\s*(?:选择|选|是|为)?" + _OPEN + _L),
    re.compile(r"(?:故|所以|因此|因而|应|应当|应该|我)?(?:选择|选)\s*(?:项|选项)?" + _OPEN + _L),
    re.compile(r"(?<![A-Za-z])" + r"([A-H])\s*(?:项|选项)?\s*(?:正确|是正确|为正确|最合适|最恰当|最佳|符合)"),
    re.compile(r"(?:the\s+)?(?:correct|right|best|final)?\s*(?:answer|option|choice)\s*(?:is|would be|should be|:)"
               r"\s*(?:option\s*|choice\s*)?[\"'(\[*]*" + _L, re.I),
    re.compile(r"(?:I\s+(?:would\s+)?(?:choose|pick|select|go with))\s*(?:option\s*|choice\s*)?[\"'(\[*]*" + _L, re.I),
    re.compile(r"(?:option|choice)\s*[(\[]?" + _L + r"[)\]]?\s*is\s*(?:the\s+)?(?:correct|right|best)", re.I),
]
# The answer opens with the letter: "C", "C.", "C、", "(C)", "**C**", "C：…".
_LEADING = re.compile(r"^[\s*#>\"“(（【\[]*([A-H])(?:[\s*\"”)）】\].、:：,，;；]|$)")
_ARTICLE = re.compile(r"A\s+[a-z]")  # "A fever is…": the English article, not option A
_STANDALONE = re.compile(r"(?<![A-Za-z])([A-H])(?![A-Za-z])")


def extract_choice(text: str, options: Mapping[str, str]) -> str | None:
    """The option letter a generation chose, or None when it cannot be told.

    Reads the answer after `</think>` (the whole text when there is no think block; nothing when the think
    block was never closed). Tries, in order: an explicit statement (答案是C / 故选C / the answer is (C) /
    I'd choose C), a leading letter (C. / (C) / **C**), the only option letter standing alone in the
    text, then the only option whose text is quoted in the answer.
    """
    answer = unicodedata.normalize("NFKC", split_think(text).answer)
    letters = set(options)
    if not answer:
        return None
    for pattern in _EXPLICIT:
        hits = [m.group(1).upper() for m in pattern.finditer(answer) if m.group(1).upper() in letters]
        if hits:
            return hits[-1]
    m = _LEADING.match(answer)
    if m and m.group(1) in letters and not _ARTICLE.match(answer[m.start(1):]):
        return m.group(1)
    # Drop the English article "A" ("A fever is…") before looking for a lone letter.
    lone = {m.group(1) for m in _STANDALONE.finditer(answer)
            if m.group(1) in letters and not _ARTICLE.match(answer[m.start():])}
    if len(lone) == 1:
        return lone.pop()
    quoted = [k for k, v in options.items() if len(v.strip()) >= 2 and v.strip().lower() in answer.lower()]
    if len(quoted) == 1:
        return quoted[0]
    return None
