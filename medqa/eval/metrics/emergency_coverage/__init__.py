"""Local `evaluate` module: load with `evaluate.load(<this folder>)` (see medqa.eval.metrics.load_metric)."""
