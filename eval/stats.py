"""Statistics the report states in plain words: bootstrap confidence intervals and two-proportion tests."""

from __future__ import annotations

import math
import random
from typing import Sequence


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float] | None:
    """(mean, low, high): percentile bootstrap of the mean."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    alpha = (1 - confidence) / 2
    return sum(values) / n, means[int(alpha * resamples)], means[min(resamples - 1, int((1 - alpha) * resamples))]


def two_proportions(success_a: int, n_a: int, success_b: int, n_b: int) -> dict | None:
    """Two-sided z-test for p_a != p_b, with a sentence a support lead can read."""
    if min(n_a, n_b) == 0:
        return None
    pa, pb = success_a / n_a, success_b / n_b
    pooled = (success_a + success_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return {"p_a": pa, "p_b": pb, "z": 0.0, "p_value": 1.0,
                "plain": "Both groups have identical rates; there is nothing to tell apart."}
    z = (pa - pb) / se
    p = math.erfc(abs(z) / math.sqrt(2))
    if p < 0.05:
        plain = (f"The difference ({pa:.0%} vs {pb:.0%}) is statistically significant (p = {p:.3f}): "
                 "it is unlikely to be chance.")
    else:
        plain = (f"The difference ({pa:.0%} vs {pb:.0%}) is not statistically significant (p = {p:.2f}): "
                 f"with {n_a} and {n_b} samples it could be chance. Collect more before deciding.")
    return {"p_a": pa, "p_b": pb, "z": z, "p_value": p, "plain": plain}


def percentile(values: Sequence[float], q: float) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    k = (len(values) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)
