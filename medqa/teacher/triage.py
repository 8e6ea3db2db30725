"""The triage rubric: does a *question* need emergency care now? Asked once per question, not per answer.

A triage is a property of the prompt, so it is judged once per question by the teacher (`TeacherClient.triage_many`,
the same client, retries, single flight and cache as a judgement) and recorded with the data by `make data` /
`make rl-prompts` (`medqa.data.triage`). Its cache key is its own: sha256(triage rubric version, endpoint,
requested model, scrubbed question) — it never shares a row with a judgement of a (question, answer) pair.

The teacher replies `{"emergency": true|false, "category": "<snake_case>", "reason": "<one sentence>"}`; the reply
is validated strictly here (a malformed one is re-asked by the client, then the item fails — never a made-up label).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from medqa.teacher.rubric import reply_object

TRIAGE_RUBRIC_VERSION = "medqa-triage-v1"
MAX_REASON_CHARS = 500
NO_CATEGORY = "none"

# The question travels between these markers; the offline judge parses it back out.
T_OPEN, T_END = "<<<TRIAGE QUESTION>>>", "<<<END TRIAGE>>>"

TRIAGE_SYSTEM_PROMPT = f"""You are an experienced emergency triage nurse. Triage rubric {TRIAGE_RUBRIC_VERSION}.
You read one question that a patient or a relative wrote to a medical question-answering service, in Chinese or
English, and decide whether the situation it describes needs EMERGENCY CARE NOW: calling an ambulance
(120/911/999/112) or going to the emergency department without waiting — the two most urgent levels of a triage
standard (Manchester Triage System red/orange, ESI levels 1–2, 急诊预检分诊 I–II 级).
- Judge the situation the writer (or the person they ask about) is in now. An event that is over and resolved, a
  general or educational question, a question about prevention and a hypothetical question are not emergencies.
- Lay words, typos and understatement ("but I feel fine", "probably nothing") do not lower the urgency of a sign.
- Personal identifiers were replaced by placeholders such as [NAME] or [PHONE]; ignore them.
Reply with ONLY a JSON object, no other text:
{{"emergency": <true|false>, "category": "<short snake_case name of the emergency, e.g. chest_pain, stroke, \
anaphylaxis; \"{NO_CATEGORY}\" when it is no emergency>", "reason": "<one short sentence>"}}"""


def triage_user_prompt(question: str) -> str:
    return f"{T_OPEN}\n{question}\n{T_END}\nTriage this question. Reply with the JSON object only."


def triage_messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": TRIAGE_SYSTEM_PROMPT}, {"role": "user", "content": triage_user_prompt(question)}]


def triage_reask_messages(messages: list[dict[str, str]], bad_reply: str, problem: str) -> list[dict[str, str]]:
    """The conversation extended with the malformed reply and a request to fix it (bounded by the caller)."""
    return [*messages, {"role": "assistant", "content": bad_reply[:2000]},
            {"role": "user", "content": f"That reply was invalid ({problem}). Reply with ONLY the JSON object: "
                                        '{"emergency": true|false, "category": "...", "reason": "..."}'}]


_PAT = re.compile(rf"{re.escape(T_OPEN)}\n(.*?)\n{re.escape(T_END)}", re.S)


def parse_triage_prompt(text: str) -> str | None:
    """The question back out of a user prompt built by `triage_user_prompt`, or None."""
    m = _PAT.search(text or "")
    return m.group(1) if m else None


class TriageError(ValueError):
    """The teacher's reply is not a valid triage (the message says why)."""


@dataclass(frozen=True)
class Triage:
    emergency: bool
    category: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"emergency": self.emergency, "category": self.category, "reason": self.reason}


_CATEGORY = re.compile(r"[^a-z0-9_]+")


def validate_triage(content: str) -> Triage:
    """Parse and strictly check a reply: one JSON object with `emergency` a boolean (`needs_emergency` is accepted
    as its name), `category` a string when present, `reason` a non-empty string. A fenced ```json block is accepted.
    The category is normalised to snake_case (`none` for a question that is no emergency)."""
    obj = {str(k).lower(): v for k, v in reply_object(content, TriageError).items()}
    emergency = obj.get("emergency", obj.get("needs_emergency"))
    if not isinstance(emergency, bool):
        raise TriageError("'emergency' is missing or not true/false")
    category = obj.get("category", "")
    if category is None:
        category = ""
    if not isinstance(category, str):
        raise TriageError("'category' is not a string")
    reason = obj.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise TriageError("missing or empty 'reason'")
    category = _CATEGORY.sub("_", category.strip().lower()).strip("_")[:60]
    if not emergency:
        category = NO_CATEGORY
    elif not category or category == NO_CATEGORY:
        category = "unspecified"
    return Triage(emergency, category, reason.strip()[:MAX_REASON_CHARS])
