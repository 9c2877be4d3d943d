"""Checks shared by the joint and base supervisors: clocks, stamps and numeric arrays.

Every function here returns a reason string (or None) instead of raising, so a malformed
message can never throw out of an input callback.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

# Reason codes; counters are named 'rejected_<code>'.
ZERO_STAMP = 'zero_stamp'
INVALID_STAMP = 'invalid_stamp'
STALE_STAMP = 'stale_stamp'
FUTURE_STAMP = 'future_stamp'
INVALID_CLOCK = 'invalid_clock'


def as_time(value: Any) -> float | None:
    """`value` as a finite float, or None (bool, NaN, Inf, non-numbers are not times)."""
    if isinstance(value, bool):
        return None
    try:
        t = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return t if math.isfinite(t) else None


def stamp_problem(stamp: Any, now: float, max_age: float, future_tolerance: float) -> str | None:
    """Why a header stamp cannot be used at time `now`, or None when it is fine.

    A zero stamp is rejected (stricter than diff_drive, which replaces it with the current time):
    an unstamped command cannot be aged, so it could be replayed forever.
    """
    t = as_time(stamp)
    if t is None or t < 0.0:
        return INVALID_STAMP
    if t == 0.0:
        return ZERO_STAMP
    if t - now > future_tolerance:
        return FUTURE_STAMP
    if now - t > max_age:
        return STALE_STAMP
    return None


def as_float_array(values: Any, ndim: int) -> np.ndarray | None:
    """A float64 copy with exactly `ndim` dimensions, or None when it cannot be converted."""
    if values is None or isinstance(values, (str, bytes, dict)):
        return None
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return None
    except Exception:  # noqa: BLE001 - odd objects (e.g. failing __array__) count as malformed
        return None
    if arr.ndim != ndim:
        return None
    return arr


def as_names(names: Any) -> tuple[str, ...] | None:
    """A tuple of joint names, or None when `names` is not a sequence of strings."""
    if names is None or isinstance(names, (str, bytes, dict)):
        return None
    try:
        out = tuple(names)
    except TypeError:
        return None
    if not all(isinstance(n, str) for n in out):
        return None
    return out
