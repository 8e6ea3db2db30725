"""Rewards for PPO: `R = w_rules·R_rules + w_teacher·R_teacher` (0.6 / 0.4 by default).

`rule_reward` runs the rule registry (`medqa.rewards.rules.RULES`); `combined_reward` mixes it with a teacher
judgement and falls back to the rules alone, saying so, when the judgement failed or is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medqa.rewards.rules import MAX_TOTAL, MIN_TOTAL, RULES, Rule, RuleResult, text_units

TEACHER_SCALE = 10.0  # teacher overall scores are on 0–10; the reward uses overall / 10 in [0, 1]


@dataclass(frozen=True)
class RewardBreakdown:
    total: float
    parts: dict[str, RuleResult] = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"total": self.total, "rules": {k: {"score": v.score, "reason": v.reason}
                                                               for k, v in self.parts.items()}}
        if self.note:
            out["note"] = self.note
        return out


def rule_reward(question: str, answer_text: str, meta: Mapping[str, Any] | None = None,
                rules: Mapping[str, Rule] = RULES) -> RewardBreakdown:
    """Run every rule; the total is the plain sum (range MIN_TOTAL..MAX_TOTAL), with each rule's score and reason."""
    parts = {name: rule.fn(question, answer_text, meta) for name, rule in rules.items()}
    return RewardBreakdown(round(sum(p.score for p in parts.values()), 4), parts)


def _teacher_score(teacher: Any) -> tuple[float | None, str]:
    """(overall on 0–10, or None when the judgement failed or is missing; why)."""
    if teacher is None:
        return None, "no teacher judgement"
    if isinstance(teacher, (int, float)) and not isinstance(teacher, bool):
        return float(teacher), ""
    if isinstance(teacher, Mapping):
        if teacher.get("teacher_error") or teacher.get("error"):
            return None, f"teacher failed: {teacher.get('teacher_error') or teacher.get('error')}"
        inner = teacher.get("teacher", teacher)
        if isinstance(inner, Mapping) and isinstance(inner.get("overall_score"), (int, float)):
            return float(inner["overall_score"]), ""
        return None, "teacher judgement has no overall_score"
    if getattr(teacher, "ok", False) and getattr(teacher, "overall_score", None) is not None:
        return float(teacher.overall_score), ""
    return None, f"teacher failed: {getattr(teacher, 'error', None) or 'no judgement'}"


def combined_reward(rules: RewardBreakdown, teacher: Any, w_rules: float = 0.6, w_teacher: float = 0.4) -> RewardBreakdown:
    """`w_rules·rules.total + w_teacher·overall/10`; rules-only (the rule total, unweighted) when the teacher
    judgement failed or is missing — the breakdown's `note` says which, so PPO can log the failed fraction.

    `teacher`: a `TeacherResult` (from `medqa.teacher`), a teacher output row / dict, an overall score
    on 0–10, or None.
    """
    score, why = _teacher_score(teacher)
    parts = dict(rules.parts)
    if score is None:
        return RewardBreakdown(rules.total, parts, note=f"rules-only: {why}")
    if not 0.0 <= score <= TEACHER_SCALE:
        raise ValueError(f"teacher overall score {score} outside 0..{TEACHER_SCALE:g}")
    t = score / TEACHER_SCALE
    parts["teacher"] = RuleResult(round(t, 4), f"teacher overall {score:g}/{TEACHER_SCALE:g}")
    total = round(w_rules * rules.total + w_teacher * t, 4)
    return RewardBreakdown(total, parts, note=f"combined: {w_rules:g}·rules + {w_teacher:g}·teacher")


__all__ = ["MAX_TOTAL", "MIN_TOTAL", "RULES", "RewardBreakdown", "Rule", "RuleResult", "TEACHER_SCALE",
           "combined_reward", "rule_reward", "text_units"]
