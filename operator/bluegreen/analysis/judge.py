"""Judging a measured value: pure functions, no I/O, so they can be tested exhaustively.

Kept apart from the providers because the verdict must not depend on where a
number came from: a Prometheus query and an HTTP probe that report the same
value get the same verdict and the same words.

Invariants:

- :func:`judge` answers Inconclusive for no value (None) and for NaN, never
  Failed: "no data" is not evidence that green is bad, and the engine holds
  on repeated Inconclusive results instead of rolling back.
- Bounds are inclusive: ``thresholdRange: {max: 0.01}`` passes 0.01.
- :func:`compare` is None exactly when :func:`incomparable` has a reason to
  give; the runner uses that reason as the message.
- 0/0 is a Ratio of 1.0: blue and green both at zero errors are equal, and a
  metric that reads zero on both sides must not hold the upgrade.
"""

from __future__ import annotations

import math

from bluegreen.api.spec import ComparisonMode, ThresholdRange
from bluegreen.api.status import CheckPhase


def judge(threshold: ThresholdRange, value: float | None) -> CheckPhase:
    """Successful inside [min, max] (inclusive, a missing bound is open), Failed outside, Inconclusive for no value."""
    if value is None or math.isnan(value):
        return CheckPhase.INCONCLUSIVE
    if threshold.min is not None and value < threshold.min:
        return CheckPhase.FAILED
    if threshold.max is not None and value > threshold.max:
        return CheckPhase.FAILED
    return CheckPhase.SUCCESSFUL


def compare(mode: ComparisonMode, *, green: float | None, blue: float | None) -> float | None:
    """Green against blue: green / blue (Ratio) or green - blue (Difference); None when there is no answer."""
    return _compare(mode, green=green, blue=blue)[0]


def incomparable(mode: ComparisonMode, *, green: float | None, blue: float | None) -> str | None:
    """Why :func:`compare` has no answer for these values (for the check's message), or None when it has one."""
    return _compare(mode, green=green, blue=blue)[1]


def _compare(mode: ComparisonMode, *, green: float | None, blue: float | None) -> tuple[float | None, str | None]:
    missing = [side for side, value in (("green", green), ("blue", blue)) if value is None or math.isnan(value)]
    if missing:
        return None, f"no value for {' and '.join(missing)}"
    assert green is not None and blue is not None
    if mode is ComparisonMode.DIFFERENCE:
        result, operator = green - blue, "-"
    elif blue == 0 and green == 0:
        result, operator = 1.0, "/"
    elif blue == 0:
        return None, (f"blue's value is 0 and green's {number(green)}: green / blue has no value; "
                      "use comparative.mode Difference for a metric that can be 0 on blue")
    else:
        result, operator = green / blue, "/"
    if not math.isfinite(result):
        return None, f"green {operator} blue ({number(green)} {operator} {number(blue)}) is not a finite number"
    return result, None


def describe(threshold: ThresholdRange, value: float, unit: str = "") -> str:
    """``0.2 > max 0.01``, ``0.8 < min 0.95``, ``0.004 within max 0.01``: the value against the bound that decides."""
    if threshold.min is not None and value < threshold.min:
        return f"{number(value, unit)} < min {number(threshold.min, unit)}"
    if threshold.max is not None and value > threshold.max:
        return f"{number(value, unit)} > max {number(threshold.max, unit)}"
    return f"{number(value, unit)} within {bounds(threshold, unit)}"


def relation(threshold: ThresholdRange, value: float, unit: str = "") -> str:
    """``above max 1.5``, ``below min 0.9``, ``within max 1.5``: where the value stands, in words."""
    if threshold.min is not None and value < threshold.min:
        return f"below min {number(threshold.min, unit)}"
    if threshold.max is not None and value > threshold.max:
        return f"above max {number(threshold.max, unit)}"
    return f"within {bounds(threshold, unit)}"


def bounds(threshold: ThresholdRange, unit: str = "") -> str:
    """``min 0.9, max 1.1``, or the one bound set."""
    return ", ".join(f"{name} {number(bound, unit)}" for name, bound in (("min", threshold.min), ("max", threshold.max))
                     if bound is not None)


def number(value: float, unit: str = "") -> str:
    """A value as people read it: four significant digits, no exponent for everyday sizes (``0.0123``, ``12.5``)."""
    if not math.isfinite(value):
        return f"{value}"
    size = abs(value)
    if size == 0 or 1e-4 <= size < 1e4:
        text = f"{value:.4g}"
    elif 1e4 <= size < 1e12:
        text = f"{value:.0f}"
    else:
        text = f"{value:.3e}"
    return text + unit
