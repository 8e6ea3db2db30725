"""The project's metrics as local Hugging Face `evaluate` modules, one folder each (`<name>/<name>.py`).

`evaluate.load()` of a local path never touches the hub (it copies the script into its module cache and
imports it), so these work offline. Each module reads model generations and returns its value, the counts
behind it and the per-item values (`per_item`), which `medqa eval score` writes to `items.jsonl`.
"""

from __future__ import annotations

from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("think_coverage", "emergency_coverage", "risky_prescription_rate", "rougeL_char", "mc_accuracy")


def metric_path(name: str) -> Path:
    if name not in METRIC_NAMES:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRIC_NAMES)}")
    return METRICS_DIR / name


def load_metric(name: str):
    """`evaluate.load` of the local module (in memory: no arrow cache files, safe for parallel runs)."""
    import evaluate

    return evaluate.load(str(metric_path(name)), keep_in_memory=True)
