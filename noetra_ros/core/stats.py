"""Small statistics used by every report, so figures are computed one way everywhere."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % by default)."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def percentiles(samples: Iterable[float], points: Sequence[float] = (50, 90, 99)) -> dict:
    """{'p50': ..., 'p90': ..., 'p99': ..., 'n': N}; NaN when there are no samples."""
    values = np.asarray(list(samples), dtype=float)
    out = {f'p{int(p) if float(p).is_integer() else p}': (
        float(np.percentile(values, p)) if values.size else math.nan) for p in points}
    out['n'] = int(values.size)
    return out
