"""The project's metrics: one `MetricSpec` per metric in `METRICS`, the only list of them.

`medqa eval score` (metrics.json, its intervals and per-risk-level breakdown), `medqa eval compare` (tables,
verdicts, the bar chart), the CLI's printed summaries and the demo report read this registry; adding a metric is one
entry here (plus, when its per-item fields need new code, a local `evaluate` module).

A metric's per-item fields come from `items.jsonl` rows: either fields `score_items` always writes (`kind`,
`answer_len_chars`, …) or those of a local Hugging Face `evaluate` module, one folder each
(`<module>/<module>.py`). `evaluate.load()` of a local path never touches the hub (it copies the script into its
module cache and imports it), so these work offline. Each module reads model generations and returns its value, the
counts behind it and the per-item values (`per_item`), which `medqa eval score` merges into the item rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

METRICS_DIR = Path(__file__).resolve().parent


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False) if value else ""


@dataclass(frozen=True)
class Module:
    """A local `evaluate` module that computes per-item fields: which predictions it reads (`reads`, a function of a
    `medqa.eval.score.Pred`), its `compute()` keyword arguments for those predictions (`inputs`), which of its
    per-item fields the item rows keep (`keep`, all when None) and each field's value on the rows it did not read
    (`defaults`)."""

    name: str
    reads: Callable[[Any], bool]
    inputs: Callable[[list], dict[str, list]]
    defaults: dict[str, Any] = field(default_factory=dict)
    keep: tuple[str, ...] | None = None


@dataclass(frozen=True)
class MetricSpec:
    """One metric. `counts(item)`: does this items.jsonl row count towards it; `value(item)`: its per-item value (a
    0/1 flag, or an item's rate over its samples, for a proportion). `kind` picks the interval (`proportion`: Wilson
    for 0/1 flags, else a bootstrap over items; `mean`: a bootstrap), seeded with the run's seed + `seed_offset`.
    `higher_is_better` gives compare's verdict (None: no better or worse, only higher or lower, named by
    `directions`); `fmt` is how reports print it; `scale` is its value range (the report's bar chart draws the
    metrics on [0, 1]); `by_risk_level` what metrics.json's per-risk-level breakdown of open items holds for it
    ("value", "counts"); `summarised=False`: metrics.json gets it from another block (the teacher's);
    `module` computes its per-item fields, None when they are fields every item row has."""

    name: str
    kind: Literal["proportion", "mean"]
    counts: Callable[[dict], bool]
    value: Callable[[dict], float]
    higher_is_better: bool | None
    seed_offset: int
    fmt: str = ".3f"
    scale: tuple[float, float] | None = (0.0, 1.0)
    directions: tuple[str, str] = ("higher", "lower")
    by_risk_level: tuple[str, ...] = ()
    summarised: bool = True
    module: Module | None = None

    def format(self, value: float | None) -> str:
        return "–" if value is None else format(value, self.fmt)


def _is_open(p) -> bool:
    return not p.options


def _open_inputs(preds: list) -> dict[str, list]:
    return dict(predictions=[p.prediction for p in preds], questions=[p.question for p in preds],
                metas=[_json(p.meta) for p in preds])


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("think_coverage", "proportion", counts=lambda it: True, value=lambda it: float(it["think_ok"]),
               higher_is_better=True, seed_offset=3, by_risk_level=("value",),
               module=Module("think_coverage", reads=lambda p: True,
                             inputs=lambda ps: dict(predictions=[p.prediction for p in ps]))),
    MetricSpec("emergency_coverage", "proportion", counts=lambda it: it["kind"] == "open" and it["needs_emergency"],
               value=lambda it: float(it["has_emergency_referral"]), higher_is_better=True, seed_offset=4,
               by_risk_level=("value", "counts"),
               module=Module("emergency_coverage", reads=_is_open, inputs=_open_inputs,
                             defaults={"needs_emergency": False, "red_flags": [], "has_emergency_referral": False,
                                       "emergency_covered": None})),
    MetricSpec("risky_prescription_rate", "proportion", counts=lambda it: it["kind"] == "open",
               value=lambda it: float(it["risky_prescription"]), higher_is_better=False, seed_offset=5,
               by_risk_level=("value", "counts"),
               module=Module("risky_prescription_rate", reads=_is_open, inputs=_open_inputs,
                             defaults={"risky_prescription": False, "prescription_drugs": [],
                                       "has_specific_dose": False, "has_physician_caveat": False,
                                       "contraindicated_drugs": []})),
    MetricSpec("mc_accuracy", "proportion", counts=lambda it: it["kind"] == "mc",
               value=lambda it: float(it["mc_correct"] or 0.0), higher_is_better=True, seed_offset=6,
               module=Module("mc_accuracy", reads=lambda p: bool(p.options),
                             inputs=lambda ps: dict(predictions=[p.prediction for p in ps],
                                                    references=[p.reference for p in ps],
                                                    options=[json.dumps(p.options, ensure_ascii=False) for p in ps]),
                             defaults={"mc_choice": None, "mc_correct": None})),
    MetricSpec("rougeL_char", "mean", counts=lambda it: it["kind"] == "open" and it.get("rougeL_char") is not None,
               value=lambda it: float(it["rougeL_char"]), higher_is_better=True, seed_offset=0,
               module=Module("rougeL_char", reads=lambda p: _is_open(p) and bool(p.reference),
                             inputs=lambda ps: dict(predictions=[p.prediction for p in ps],
                                                    references=[p.reference for p in ps]),
                             defaults={"rougeL_char": None, "reference_len_chars": None},
                             keep=("rougeL_char", "reference_len_chars"))),
    MetricSpec("answer_len_chars", "mean", counts=lambda it: True, value=lambda it: float(it["answer_len_chars"]),
               higher_is_better=None, seed_offset=1, fmt=".1f", scale=None, directions=("longer", "shorter")),
    MetricSpec("teacher_overall", "mean", counts=lambda it: it.get("teacher_overall") is not None,
               value=lambda it: float(it["teacher_overall"]), higher_is_better=True, seed_offset=10, fmt=".1f",
               scale=(0.0, 10.0), summarised=False),
)


def metric_names() -> tuple[str, ...]:
    """The registry's metric names, in its order (read at call time, so a test may extend `METRICS`)."""
    return tuple(m.name for m in METRICS)


def module_names() -> tuple[str, ...]:
    """The local `evaluate` modules the registry's metrics use."""
    return tuple(m.module.name for m in METRICS if m.module is not None)


def metric(name: str) -> MetricSpec:
    """The registry's spec of `name` (KeyError naming the known ones otherwise)."""
    for spec in METRICS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown metric {name!r}; known: {', '.join(m.name for m in METRICS)}")


def metric_path(name: str) -> Path:
    """The folder of the local `evaluate` module `name`."""
    if name not in module_names():
        raise KeyError(f"unknown metric module {name!r}; known: {', '.join(module_names())}")
    return METRICS_DIR / name


def load_metric(name: str):
    """`evaluate.load` of the local module (in memory: no arrow cache files, safe for parallel runs)."""
    import evaluate

    return evaluate.load(str(metric_path(name)), keep_in_memory=True)
