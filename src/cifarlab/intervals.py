"""Figures over seeds: the mean, the sample standard deviation and a Student's t confidence
interval of the mean, and the same for the paired difference of two sets of runs over the same
seeds. Plain Python (no scipy): the t quantile comes from the t density, integrated."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def t_cdf(x: float, df: int) -> float:
    """P(T <= x) for Student's t with `df` degrees of freedom: 1/2 plus the density integrated
    from 0 to |x| (Simpson's rule; the density is smooth, so 2,000 panels give 1e-9)."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(t: float) -> float:
        return math.exp(log_c - (df + 1) / 2 * math.log1p(t * t / df))

    a, n = abs(x), 2000
    h = a / n
    inner = sum((4 if i % 2 else 2) * density(i * h) for i in range(1, n))
    area = h / 3 * (density(0.0) + inner + density(a))
    return 0.5 + math.copysign(area, x)


def t_quantile(p: float, df: int) -> float:
    """The `p` quantile (0.5 < p < 1) of Student's t with `df` degrees of freedom, by bisection
    on `t_cdf`."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"need 0.5 < p < 1 and df >= 1, not p={p}, df={df}")
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def summary(values: Sequence[float], level: float = 0.95) -> dict[str, float | int | None]:
    """Mean, std (n - 1), min, max, n and the `level` confidence interval of the mean
    (mean +- t * std / sqrt(n)); the interval is None for a single value."""
    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else 0.0
    half = t_quantile(0.5 + level / 2, n - 1) * std / math.sqrt(n) if n > 1 else None
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "n": n,
            "ci_low": None if half is None else mean - half,
            "ci_high": None if half is None else mean + half, "ci_level": level}


def paired_difference(a: dict[int, float], b: dict[int, float], level: float = 0.95
                      ) -> dict[str, float | int | None]:
    """`b` minus `a` over the seeds both have (seed -> value): the summary of the per-seed
    differences, so the seed's shared luck cancels out."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("the two sets of runs share no seed")
    return {**summary([b[s] - a[s] for s in seeds], level), "seeds": seeds}
