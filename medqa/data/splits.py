"""Deterministic stratified splits, the gold set and the red-team set."""

from __future__ import annotations

import random
from collections import defaultdict

from medqa.data.schema import text_size
from medqa.text.think import split_think

# Systematic sampling over the stratum-ordered list: 8 of every 10 to train, then one each to dev and test.
_PATTERN = ("train",) * 4 + ("dev",) + ("train",) * 4 + ("test",)


def stratified_split(records: list[dict], seed: int = 42) -> dict[str, list[dict]]:
    """80/10/10 train/dev/test, stratified by (risk_level, specialty), deterministic with `seed`.

    Records are grouped by stratum, shuffled within it with the seed, the strata concatenated in sorted
    order, and the 10-slot pattern laid over the whole list. Every stratum with ≥ 10 items gets exactly
    its 80/10/10 share, and the overall split is 80/10/10 up to rounding.
    """
    strata: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        strata[(r["meta"]["risk_level"], r["meta"]["specialty"])].append(r)
    rng = random.Random(seed)
    ordered: list[dict] = []
    for key in sorted(strata):
        group = sorted(strata[key], key=lambda r: r["id"])
        rng.shuffle(group)
        ordered.extend(group)
    out: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for i, r in enumerate(ordered):
        out[_PATTERN[i % len(_PATTERN)]].append(r)
    return out


GOLD_CRITERIA = (
    "from dev + test only (never trained on)",
    "well-formed <think>…</think> followed by an answer",
    "reasoning and answer each ≥ 40 characters long (a CJK character counts as two)",
    "no quality flags (short reasoning, answer that may be truncated)",
    "de-identified (personal identifiers scrubbed)",
)


def is_gold(record: dict) -> bool:
    """The documented GOLD_CRITERIA (except the split rule, applied by the caller)."""
    parts = split_think(record["output"])
    meta = record["meta"]
    return (
        parts.well_formed and text_size(parts.think or "") >= 40 and text_size(parts.answer) >= 40
        and not meta.get("quality_flags") and meta.get("is_deidentified", False)
    )


def gold_set(splits: dict[str, list[dict]]) -> list[dict]:
    return [r for r in splits["dev"] + splits["test"] if is_gold(r)]


def red_team_set(shipped: list[dict], splits: dict[str, list[dict]]) -> list[dict]:
    """The shipped red-team prompts plus the high/critical-risk items of dev + test (unseen in training)."""
    extra = [r for r in splits["dev"] + splits["test"] if r["meta"]["risk_level"] in ("high", "critical")]
    return shipped + extra
