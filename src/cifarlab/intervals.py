"""Figures over seeds: the mean, the sample standard deviation and a Student's t confidence
interval of the mean, and the same for the paired difference of two sets of runs over the same
seeds. Plain Python (no scipy): the t quantile comes from a table."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

# Student's t 97.5% quantiles (the two-sided 95% interval) for 1 to 30 degrees of freedom, as
# printed in every t table (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2), to 4 decimals.
T_975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
         2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
         2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)


def t_quantile(p: float, df: int) -> float:
    """The `p` quantile of Student's t with `df` degrees of freedom, for p = 0.975 (the 95%
    interval): the table up to 30, then the normal quantile with the first three terms of its
    Cornish-Fisher expansion in 1/df (within 1e-5 of the exact value beyond 30)."""
    if p != 0.975 or df < 1:
        raise ValueError(f"the table holds p = 0.975 (95% intervals) and df >= 1, not p={p}, "
                         f"df={df}")
    if df <= len(T_975):
        return T_975[df - 1]
    z = statistics.NormalDist().inv_cdf(p)
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


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
