"""Evaluation on model generations: per-item checks (`items`), `evaluate` metric modules (`metrics/`),
confidence intervals (`stats`), scoring (`score`) and the two-run comparison report (`compare`)."""
