"""judge, compare and the words of a verdict: tables for the cases people meet, properties for the rest."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bluegreen.analysis import judge
from bluegreen.api.spec import ComparisonMode, ThresholdRange
from bluegreen.api.status import CheckPhase

OK, FAIL, NONE = CheckPhase.SUCCESSFUL, CheckPhase.FAILED, CheckPhase.INCONCLUSIVE
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9)
maybe = st.none() | finite


def bounds(low: float | None, high: float | None) -> ThresholdRange:
    return ThresholdRange.model_validate({"min": low, "max": high})


@st.composite
def thresholds(draw: st.DrawFn) -> ThresholdRange:
    low, high = draw(maybe), draw(maybe)
    assume(low is not None or high is not None)
    if low is not None and high is not None and low > high:
        low, high = high, low
    return bounds(low, high)


@pytest.mark.parametrize(("low", "high", "value", "phase"), [
    (None, 0.01, 0.0, OK),
    (None, 0.01, 0.01, OK),         # bounds are inclusive
    (None, 0.01, 0.0100001, FAIL),
    (None, 0.01, 0.2, FAIL),
    (0.95, None, 0.95, OK),
    (0.95, None, 0.8, FAIL),
    (0.95, None, 1.0, OK),
    (0.9, 1.1, 1.0, OK),
    (0.9, 1.1, 0.9, OK),
    (0.9, 1.1, 1.1, OK),
    (0.9, 1.1, 0.89, FAIL),
    (0.9, 1.1, 1.2, FAIL),
    (1.0, 1.0, 1.0, OK),
    (None, 0.01, None, NONE),
    (None, 0.01, math.nan, NONE),
    (0.0, None, math.nan, NONE),
    (None, 1.5, math.inf, FAIL),
    (0.0, None, -math.inf, FAIL),
])
def test_judge_table(low: float | None, high: float | None, value: float | None, phase: CheckPhase) -> None:
    assert judge.judge(bounds(low, high), value) is phase


@given(thresholds(), finite)
def test_a_number_passes_exactly_when_no_bound_excludes_it(threshold: ThresholdRange, value: float) -> None:
    inside = (threshold.min is None or value >= threshold.min) and (threshold.max is None or value <= threshold.max)
    assert judge.judge(threshold, value) is (OK if inside else FAIL)


@given(thresholds())
def test_no_value_is_never_a_verdict(threshold: ThresholdRange) -> None:
    assert judge.judge(threshold, None) is NONE
    assert judge.judge(threshold, math.nan) is NONE


@given(thresholds())
def test_the_bounds_themselves_pass(threshold: ThresholdRange) -> None:
    for bound in (threshold.min, threshold.max):
        if bound is not None:
            assert judge.judge(threshold, bound) is OK


@pytest.mark.parametrize(("mode", "green", "blue", "expected"), [
    (ComparisonMode.RATIO, 0.12, 0.05, 2.4),
    (ComparisonMode.RATIO, 0.05, 0.1, 0.5),
    (ComparisonMode.RATIO, 0.0, 0.0, 1.0),    # both at zero: equal
    (ComparisonMode.RATIO, 0.0, 0.3, 0.0),
    (ComparisonMode.RATIO, 0.3, 0.0, None),   # x/0: no ratio
    (ComparisonMode.RATIO, None, 0.3, None),
    (ComparisonMode.RATIO, 0.3, math.nan, None),
    (ComparisonMode.DIFFERENCE, 0.2, 0.0, 0.2),
    (ComparisonMode.DIFFERENCE, 0.01, 0.03, -0.02),
    (ComparisonMode.DIFFERENCE, 0.0, 0.0, 0.0),
    (ComparisonMode.DIFFERENCE, 0.2, None, None),
])
def test_compare_table(mode: ComparisonMode, green: float | None, blue: float | None, expected: float | None) -> None:
    result = judge.compare(mode, green=green, blue=blue)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


@pytest.mark.parametrize(("mode", "green", "blue", "reason"), [
    (ComparisonMode.RATIO, 0.3, 0.0, "blue's value is 0 and green's 0.3: green / blue has no value; use "
                                     "comparative.mode Difference for a metric that can be 0 on blue"),
    (ComparisonMode.RATIO, None, 0.3, "no value for green"),
    (ComparisonMode.DIFFERENCE, 0.3, None, "no value for blue"),
    (ComparisonMode.DIFFERENCE, math.nan, None, "no value for green and blue"),
    (ComparisonMode.RATIO, 1e300, 1e-300, "green / blue (1.000e+300 / 1.000e-300) is not a finite number"),
    (ComparisonMode.DIFFERENCE, 1.7e308, -1.7e308, "green - blue (1.700e+308 - -1.700e+308) is not a finite number"),
])
def test_incomparable_says_why(mode: ComparisonMode, green: float | None, blue: float | None, reason: str) -> None:
    assert judge.incomparable(mode, green=green, blue=blue) == reason
    assert judge.compare(mode, green=green, blue=blue) is None


@given(st.sampled_from(ComparisonMode), maybe | st.just(math.nan), maybe | st.just(math.nan))
def test_compare_has_an_answer_exactly_when_incomparable_has_no_reason(
    mode: ComparisonMode, green: float | None, blue: float | None
) -> None:
    assert (judge.compare(mode, green=green, blue=blue) is None) == (
        judge.incomparable(mode, green=green, blue=blue) is not None)


@given(finite, finite)
def test_difference_is_green_minus_blue_and_antisymmetric(green: float, blue: float) -> None:
    forward = judge.compare(ComparisonMode.DIFFERENCE, green=green, blue=blue)
    backward = judge.compare(ComparisonMode.DIFFERENCE, green=blue, blue=green)
    assert forward == green - blue
    assert backward == -forward


@given(finite, finite.filter(lambda blue: abs(blue) >= 1e-6))
def test_ratio_times_blue_gives_green_back(green: float, blue: float) -> None:
    ratio = judge.compare(ComparisonMode.RATIO, green=green, blue=blue)
    assert ratio is not None
    assert ratio * blue == pytest.approx(green, rel=1e-9, abs=1e-300)


@given(finite)
def test_a_side_compared_with_itself_is_neutral(value: float) -> None:
    assert judge.compare(ComparisonMode.DIFFERENCE, green=value, blue=value) == 0
    assert judge.compare(ComparisonMode.RATIO, green=value, blue=value) == 1


@pytest.mark.parametrize(("low", "high", "value", "unit", "text", "words"), [
    (None, 0.01, 0.2, "", "0.2 > max 0.01", "above max 0.01"),
    (0.95, None, 0.8, "", "0.8 < min 0.95", "below min 0.95"),
    (None, 0.01, 0.004, "", "0.004 within max 0.01", "within max 0.01"),
    (0.9, 1.1, 1.0, "", "1 within min 0.9, max 1.1", "within min 0.9, max 1.1"),
    (None, 0.5, 0.1234567, "s", "0.1235s within max 0.5s", "within max 0.5s"),
    (None, 10000, 123456.7, "", "123457 > max 10000", "above max 10000"),
    (None, 0.001, 0.00001234, "s", "1.234e-05s within max 0.001s", "within max 0.001s"),
])
def test_the_words_of_a_verdict(low: float | None, high: float | None, value: float, unit: str, text: str,
                                words: str) -> None:
    assert judge.describe(bounds(low, high), value, unit) == text
    assert judge.relation(bounds(low, high), value, unit) == words


@given(thresholds(), finite)
def test_the_words_agree_with_the_verdict(threshold: ThresholdRange, value: float) -> None:
    failed = judge.judge(threshold, value) is FAIL
    text = judge.describe(threshold, value)
    assert (" > max " in text or " < min " in text) == failed
    assert (" within " in text) == (not failed)
