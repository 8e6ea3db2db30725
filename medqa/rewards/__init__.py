"""Rewards for RL: `R = w_rules·R_rules + w_teacher·R_teacher` (0.6 / 0.4 by default).

`rule_reward` runs the rule registry (`medqa.rewards.rules.RULES`); `total_rewards` mixes it with the teacher's
judgements for a batch and owns the rule for a failed judgement (the batch's mean teacher term); PPO, GRPO,
`medqa eval score --teacher` and the demo all call it. `TeacherStopRule` is the one rule for stopping an RL run
whose teacher keeps failing (`TeacherUnavailable`; the run exits with `medqa.errors.ExitCode.STOPPED`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from medqa.rewards.rules import MAX_TOTAL, MIN_TOTAL, RULES, Rule, RuleResult, text_units

TEACHER_SCALE = 10.0  # teacher overall scores are on 0–10; the reward uses overall / 10 in [0, 1]
W_RULES, W_TEACHER = 0.6, 0.4  # the default mix
NEUTRAL_TEACHER = 0.5  # the teacher term of a failed judgement when nothing in its batch was judged
REWARD_FILE = "reward.json"  # written by PPO and GRPO into their output folder: the reward the run optimised


def write_run_reward(out_dir: str | Path, reward: str, weights: RewardArguments) -> dict[str, Any]:
    """Record in an RL output folder the reward it optimises: `combined` (the mix `weights`) or `rules` (the rule
    total alone, recorded as `RewardArguments.rules_only()`), so evaluation scores it with the same mix."""
    from medqa.runs.io import atomic_write

    record = {"reward": reward, **asdict(weights.weights if reward == "combined" else RewardArguments.rules_only())}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with atomic_write(Path(out_dir) / REWARD_FILE) as fh:
        json.dump(record, fh, indent=2)
        fh.write("\n")
    return record


def run_reward_weights(run_dir: str | Path | None) -> RewardArguments:
    """The mix an RL output folder optimised (its `reward.json`); the defaults for None or a folder without one (a
    base or SFT model was trained on no reward), and for a weight the record predates. A malformed record is a
    ValueError naming it."""
    path = Path(run_dir) / REWARD_FILE if run_dir else None
    if path is None or not path.is_file():
        return RewardArguments()
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        weights = RewardArguments(**{f.name: float(record[f.name]) for f in fields(RewardArguments)
                                     if f.name in record})
        weights.check_reward()
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a reward record ({err})") from err
    return weights


@dataclass(frozen=True)
class RewardBreakdown:
    total: float
    parts: dict[str, RuleResult] = field(default_factory=dict)
    note: str = ""
    rules_total: float | None = None  # with a teacher (`total_rewards`): the rule total that was mixed in
    teacher: float | None = None  # with a teacher: the teacher term used (imputed when the judgement failed)
    teacher_failed: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"total": self.total, "rules": {k: {"score": v.score, "reason": v.reason}
                                                               for k, v in self.parts.items()}}
        if self.note:
            out["note"] = self.note
        return out

    def reward_parts(self) -> dict[str, float]:
        """`reward_parts` of an output row: the rule total, the teacher term and whether it was imputed."""
        if self.teacher is None:
            return {"rules": self.total}
        return {"rules": float(self.rules_total), "teacher": self.teacher, "teacher_failed": float(self.teacher_failed)}


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


def teacher_term(teacher: Any) -> float | None:
    """The teacher term of the reward, `overall / 10` in [0, 1]; None when the judgement failed or is missing.

    `teacher`: a `TeacherResult` (from `medqa.teacher`), a teacher output row / dict, an overall score on 0–10,
    or None."""
    score, _ = _teacher_score(teacher)
    if score is None:
        return None
    if not 0.0 <= score <= TEACHER_SCALE:
        raise ValueError(f"teacher overall score {score} outside 0..{TEACHER_SCALE:g}")
    return score / TEACHER_SCALE


def imputed_teacher_term(judged_sum: float, judged_n: float, fallback: float | None = None) -> float:
    """The teacher term a failed judgement takes: the mean term of the items judged in the same batch (from their
    sum and count, so a caller can add them up over processes first); with none judged, `fallback` (e.g. a running
    mean of earlier batches) or else `NEUTRAL_TEACHER`, the middle of the scale."""
    if judged_n > 0:
        return judged_sum / judged_n
    return NEUTRAL_TEACHER if fallback is None else fallback


def total_rewards(rules: Sequence[RewardBreakdown], teachers: Sequence[Any], weights: RewardArguments | None = None,
                  imputed: float | None = None) -> list[RewardBreakdown]:
    """The reward of a batch: `weights.mix(rules.total, overall/10)` per item (the defaults when None) — the one mix
    of rules and teacher that PPO, GRPO, `medqa eval score --teacher` and the demo use.

    A failed (or missing) judgement takes the mean teacher term of the items judged in the same batch
    (`imputed_teacher_term`); `imputed` overrides that mean, for a batch spread over processes. Why the mean: it
    keeps every item of a batch (a GRPO group, a PPO step) on one scale — a failed item is neither rewarded nor
    punished for the judge's failure relative to its judged neighbours, and differs from them by its rules
    alone. Dropping the term (TRL's None) or using the rule total alone would move a failed item by up to
    `w_teacher` or by `1 - w_rules` times its rules, which the policy would learn as signal.

    `teachers`: one per item, anything `teacher_term` reads. Each breakdown has the rule parts plus `teacher`
    (the term used) and `teacher_failed`."""
    if len(rules) != len(teachers):
        raise ValueError(f"{len(rules)} rule results for {len(teachers)} teacher judgements")
    weights = (weights or RewardArguments()).weights
    terms = [teacher_term(t) for t in teachers]
    if imputed is None:
        judged = [t for t in terms if t is not None]
        imputed = imputed_teacher_term(sum(judged), len(judged))
    out = []
    for r, term, teacher in zip(rules, terms, teachers, strict=True):
        parts = dict(r.parts)
        if term is None:
            why = _teacher_score(teacher)[1]
            parts["teacher"] = RuleResult(round(imputed, 4), f"{why}; the batch's mean teacher term instead")
        else:
            parts["teacher"] = RuleResult(round(term, 4), f"teacher overall {term * TEACHER_SCALE:g}/{TEACHER_SCALE:g}")
        t = imputed if term is None else term
        out.append(RewardBreakdown(round(weights.mix(r.total, t), 4), parts, note=weights.note, rules_total=r.total,
                                   teacher=t, teacher_failed=term is None))
    return out


@dataclass
class RewardArguments:
    """The mix `w_rules·R_rules + w_teacher·R_teacher` (medqa.rewards.total_rewards), declared once: PPO's and GRPO's
    options inherit it, every caller of `total_rewards` passes it (`.weights`), a run records it in its output
    folder (`reward.json`, `write_run_reward`) and evaluation reads it back (`run_reward_weights`). A new weight is
    a field here, its term in `mix` and its name in `medqa.runs.checkpoints.SHAPING` (a test asks for it)."""

    w_rules: float = field(default=W_RULES, metadata={"help": "weight of the rule reward"})
    w_teacher: float = field(default=W_TEACHER, metadata={"help": "weight of the teacher's overall/10"})

    def check_reward(self) -> None:
        values = [getattr(self, f.name) for f in fields(RewardArguments)]
        if min(values) < 0 or sum(values) <= 0:
            raise ValueError(f"reward weights must be >= 0 with a positive sum, got {self.weights.note}")

    def mix(self, rules: float, teacher: float) -> float:
        """One item's reward from its rule total and its teacher term (overall/10)."""
        return self.w_rules * rules + self.w_teacher * teacher

    @property
    def note(self) -> str:
        return f"{self.w_rules:g}·rules + {self.w_teacher:g}·teacher"

    @property
    def weights(self) -> RewardArguments:
        """These weights alone (a stage's config inherits this class; this drops its other options)."""
        return RewardArguments(**{f.name: getattr(self, f.name) for f in fields(RewardArguments)})

    @classmethod
    def rules_only(cls) -> RewardArguments:
        """The mix of a run trained on the rule total alone."""
        return cls(**{f.name: float(f.name == "w_rules") for f in fields(cls)})


class TeacherUnavailable(RuntimeError):
    """The teacher failed for too many items for too long (`TeacherStopRule`); RL entry points exit with
    `medqa.errors.ExitCode.STOPPED` (3)."""


@dataclass
class TeacherStopRule:
    """When an RL run stops for a failing teacher: after `patience` steps in a row in which more than `threshold`
    of the step's items (over all processes) had no judgement. PPO and GRPO feed it one failed share per step."""

    threshold: float = 0.5
    patience: int = 3
    streak: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1 or self.patience < 1:
            raise ValueError(f"teacher_fail_threshold must be in (0, 1] and teacher_fail_patience >= 1 "
                             f"(got {self.threshold}, {self.patience})")

    @classmethod
    def from_args(cls, teacher_args: Any) -> TeacherStopRule:
        """The rule a `medqa.teacher.setup.TeacherArgs` configures (`teacher_fail_threshold`, `_patience`)."""
        return cls(teacher_args.teacher_fail_threshold, teacher_args.teacher_fail_patience)

    def observe(self, failed_share: float, last_error: str | None = None) -> None:
        """Count this step; raise TeacherUnavailable once the streak reaches `patience`."""
        self.streak = self.streak + 1 if failed_share > self.threshold else 0
        if self.streak >= self.patience:
            raise TeacherUnavailable(
                f"the teacher failed for {failed_share:.0%} of the items in {self.streak} steps in a row "
                f"(threshold {self.threshold:.0%}, patience {self.patience}); last error: "
                f"{last_error or 'on another rank'}. Check the endpoint and key (make teacher-check), "
                "or run PPO with reward: rules.")


__all__ = ["MAX_TOTAL", "MIN_TOTAL", "NEUTRAL_TEACHER", "RULES", "RewardBreakdown", "Rule", "RuleResult",
           "TEACHER_SCALE", "TeacherStopRule", "TeacherUnavailable", "W_RULES", "W_TEACHER",
           "imputed_teacher_term", "rule_reward", "teacher_term", "text_units", "total_rewards"]
