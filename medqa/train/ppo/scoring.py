"""Sequence scores for PPO: `w_rules·R_rules + w_teacher·R_teacher` plus format penalties.

The teacher judgement is requested as soon as a rollout batch is decoded (`submit`) and collected after the
reference/value forwards (`collect`), so its latency hides behind them.

The mix and the rule for a failed judgement are `medqa.rewards.total_rewards` (logged as `teacher/failed_share`):
a failed item's teacher part is the mean teacher term of the items judged in this step's global batch (all
ranks), or, when none was, the running mean of earlier steps (`NEUTRAL_TEACHER` before any). The run stops
with `TeacherUnavailable` by `medqa.rewards.TeacherStopRule` (the teacher arguments' `teacher_fail_threshold` and
`teacher_fail_patience`; all ranks see the same global share).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from medqa.rewards import (
    RULES,
    TEACHER_SCALE,
    TeacherStopRule,
    TeacherUnavailable,
    imputed_teacher_term,
    rule_reward,
    total_rewards,
)
from medqa.text.think import THINK_CLOSE

RewardFn = Callable[[list[str], list[str], list[dict]], list[float]]  # (questions, answers, metas) -> scores

__all__ = ["RewardFn", "Scorer", "Scores", "TeacherUnavailable", "build_distributed_teacher"]


@dataclass
class Scores:
    scores: torch.Tensor  # (B,) the sequence scores placed on the last token
    parts: list[dict[str, float]]  # per item: total, rules, teacher, penalty, each rule's score
    metrics: dict[str, float] = field(default_factory=dict)  # global-batch means for metrics.jsonl


def build_distributed_teacher(teacher_args, rank: int) -> tuple[Any, Any]:
    """(Teacher, DistributedTeacher), built on every rank (a collective) from the one teacher flag set
    (`medqa.teacher.setup`). Only rank 0 sends requests, so only rank 0 starts the offline judge when asked."""
    from dataclasses import replace

    from medqa.teacher.distributed import DistributedTeacher
    from medqa.teacher.setup import build_teacher

    if rank == 0:
        teacher = build_teacher(teacher_args)
    else:  # its config is never used to send; no second offline judge, no key check
        teacher = build_teacher(replace(teacher_args, teacher_offline=False), require_key=False, quiet=True)
    try:
        return teacher, DistributedTeacher(teacher.config, teacher.cache_path)
    except BaseException:
        teacher.close()
        raise


class Scorer:
    """Rules (+ teacher) -> per-sequence scores, with the fallback policy above. `all_reduce` sums over ranks."""

    def __init__(self, cfg, teacher: Any | None, all_reduce: Callable[[torch.Tensor], torch.Tensor],
                 reward_fn: RewardFn | None = None, stop_rule: TeacherStopRule | None = None):
        self.cfg, self.teacher, self.all_reduce, self.reward_fn = cfg, teacher, all_reduce, reward_fn
        self.stop_rule = stop_rule or TeacherStopRule()
        self.teacher_mean: float | None = None  # running mean of judged teacher scores (0..1), last resort

    def state_dict(self) -> dict:
        return {"teacher_mean": self.teacher_mean, "fail_streak": self.stop_rule.streak}

    def load_state_dict(self, state: dict) -> None:
        self.teacher_mean, self.stop_rule.streak = state["teacher_mean"], int(state["fail_streak"])

    def submit(self, questions: list[str], answers: list[str]) -> Any:
        if self.teacher is None or self.reward_fn is not None:
            return None
        return self.teacher.submit(list(zip(questions, answers, strict=True)))

    def collect(self, handle: Any, questions: list[str], answers: list[str], metas: list[dict],
                has_eos: torch.Tensor) -> Scores:
        penalties = [(0.0 if eos else self.cfg.missing_eos_penalty)
                     + (0.0 if THINK_CLOSE in a else self.cfg.missing_think_penalty)
                     for a, eos in zip(answers, has_eos.tolist(), strict=True)]
        if self.reward_fn is not None:
            base = [float(s) for s in self.reward_fn(questions, answers, metas)]
            parts = [{"custom": b} for b in base]
            metrics: dict[str, float] = {}
        else:
            base, parts, metrics = self._rules_and_teacher(handle, questions, answers, metas)
        totals = [b + p for b, p in zip(base, penalties, strict=True)]
        for part, p, total in zip(parts, penalties, totals, strict=True):
            part.update(penalty=p, total=total)
        return Scores(torch.tensor(totals, dtype=torch.float32), parts, metrics)

    def _rules_and_teacher(self, handle, questions, answers, metas):
        rules = [rule_reward(q, a, m) for q, a, m in zip(questions, answers, metas, strict=True)]
        metrics: dict[str, float] = {}
        n = len(rules)
        safety = [name for name, rule in RULES.items() if rule.category == "safety"]
        sums = [sum(r.parts[name].score for r in rules) for name in RULES]
        hits = [sum(r.parts[name].score < 0 for r in rules) for name in safety]
        if handle is None:  # reward: rules
            stats = self.all_reduce(torch.tensor([float(n), *sums, *hits], dtype=torch.float64))
            total_n = max(stats[0].item(), 1.0)
            metrics.update({f"rules/{k}": v.item() / total_n for k, v in zip(RULES, stats[1:1 + len(RULES)], strict=True)})
            metrics.update({f"safety/{k}_hit_rate": v.item() / total_n for k, v in zip(safety, stats[1 + len(RULES):], strict=True)})
            return [r.total for r in rules], [{"rules": r.total} for r in rules], metrics

        results = handle.result()
        judged = [r.overall_score / TEACHER_SCALE if r.ok else None for r in results]
        cached = sum(bool(r.ok and r.cached) for r in results)
        ok = [j for j in judged if j is not None]
        stats = self.all_reduce(torch.tensor([float(n), float(len(ok)), float(sum(ok)), float(cached), *sums, *hits],
                                             dtype=torch.float64))
        total_n, total_ok, total_score, total_cached = (v.item() for v in stats[:4])
        failed_share = 1.0 - total_ok / max(total_n, 1.0)
        imputed = imputed_teacher_term(total_score, total_ok, self.teacher_mean)
        if total_ok > 0:
            self.teacher_mean = imputed if self.teacher_mean is None else 0.9 * self.teacher_mean + 0.1 * imputed
        self.stop_rule.observe(failed_share, next((r.error for r in results if not r.ok), None))
        mixed = total_rewards(rules, results, self.cfg.weights, imputed=imputed)
        totals = [m.total for m in mixed]
        parts = [{"rules": m.rules_total, "teacher": m.teacher, "teacher_failed": float(m.teacher_failed)} for m in mixed]
        metrics.update({"teacher/failed_share": failed_share, "teacher/cache_hit_rate": total_cached / max(total_n, 1.0),
                        "teacher/imputed": imputed})
        offset = 4
        metrics.update({f"rules/{k}": v.item() / max(total_n, 1.0)
                        for k, v in zip(RULES, stats[offset:offset + len(RULES)], strict=True)})
        metrics.update({f"safety/{k}_hit_rate": v.item() / max(total_n, 1.0)
                        for k, v in zip(safety, stats[offset + len(RULES):], strict=True)})
        return totals, parts, metrics
