"""95 % confidence intervals: Wilson for proportions, seeded percentile bootstrap for means and differences."""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for k successes out of n (None when n == 0)."""
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"k={k} outside 0..n={n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean(values: Sequence[float], seed: int = 0, n_boot: int = 2000,
                   alpha: float = 0.05) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean (None when empty; a point interval for one value)."""
    import numpy as np

    vals = np.asarray(values, dtype=float)
    if vals.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = vals[rng.integers(0, vals.size, size=(n_boot, vals.size))].mean(axis=1)
    lo, hi = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def paired_bootstrap_diff(a: Sequence[float], b: Sequence[float], seed: int = 0, n_boot: int = 2000,
                          alpha: float = 0.05) -> tuple[float, float, float] | None:
    """Mean of (b - a) over paired items and its percentile bootstrap interval: (delta, lo, hi)."""
    import numpy as np

    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    diffs = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if diffs.size == 0:
        return None
    lo_hi = bootstrap_mean(diffs.tolist(), seed=seed, n_boot=n_boot, alpha=alpha)
    assert lo_hi is not None
    return float(diffs.mean()), lo_hi[0], lo_hi[1]
