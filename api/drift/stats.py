"""Drift statistics: effect sizes, the proportion test and the verdict rule.

ClickHouse computes the continuous tests (``welchTTest``, ``mannWhitneyUTest``)
next to the data; this module turns their output and a few per-side moments
into one :class:`Comparison` per metric, and decides the verdicts. No I/O, so
every rule here is checked without a store.

The verdict rule, for one feature (and model) and its tested metrics:

- a metric with fewer than ``min_samples`` observations on either side is
  ``insufficient_data``: no p-value, no effect size, no guess;
- the others are ``drifted`` when ``p < alpha / m`` — Bonferroni over the
  ``m`` metrics tested for that feature, so asking about eight metrics does not
  raise the odds of a false alarm eightfold — *and* the effect size is at least
  small (|d| ≥ 0.2, |h| ≥ 0.2, |δ| ≥ 0.147): with a million calls a side, a
  0.1 % change is "significant" and still not worth anyone's attention;
- otherwise ``stable``.

The correction is per feature rather than over the whole response so that a
feature's verdict does not change with how many other features were asked about.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Test = Literal["welch_t", "mann_whitney_u", "two_proportion_z"]
# cohens_d: difference of means over the pooled standard deviation;
# cliffs_delta: P(current > baseline) - P(current < baseline);
# cohens_h: difference of the arcsine-transformed proportions.
Effect = Literal["cohens_d", "cliffs_delta", "cohens_h"]
Verdict = Literal["drifted", "stable", "insufficient_data"]

EFFECT_OF: dict[Test, Effect] = {
    "welch_t": "cohens_d",
    "mann_whitney_u": "cliffs_delta",
    "two_proportion_z": "cohens_h",
}
# Conventional "small" effects: Cohen (1988) for d and h; Romano et al. (2006)
# for Cliff's delta, the value that corresponds to d = 0.2.
SMALL_EFFECT: dict[Effect, float] = {"cohens_d": 0.2, "cliffs_delta": 0.147, "cohens_h": 0.2}


def finite(value: float | None) -> float | None:
    """``value``, or None for NaN/inf: ClickHouse answers NaN for an empty side."""
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class Side:
    """One window of one metric: its value and how many observations it rests on."""

    value: float | None
    samples: int
    stddev: float | None = None  # of one observation, for mean metrics


@dataclass(frozen=True)
class Comparison:
    """Baseline against current for one metric, tested or not."""

    metric: str
    test: Test
    baseline: Side
    current: Side
    p_value: float | None  # None: not tested (too few samples)
    effect_size: float | None  # signed, current relative to baseline

    @property
    def effect(self) -> Effect:
        return EFFECT_OF[self.test]

    @property
    def tested(self) -> bool:
        return self.p_value is not None

    @property
    def change_pct(self) -> float | None:
        before, after = self.baseline.value, self.current.value
        if before is None or after is None or before == 0:
            return None
        return (after - before) / abs(before) * 100


def enough(baseline: int, current: int, min_samples: int) -> bool:
    """Whether both sides have at least ``min_samples`` observations."""
    return baseline >= min_samples and current >= min_samples


def _untested(metric: str, test: Test, baseline: Side, current: Side) -> Comparison:
    return Comparison(metric, test, baseline, current, None, None)


def cohens_d(baseline: Side, current: Side) -> float:
    """Mean difference over the pooled standard deviation; ±inf if both sides are constant."""
    if baseline.value is None or current.value is None:
        raise ValueError("Cohen's d needs a value on both sides")
    n_b, n_c = baseline.samples, current.samples
    var_b, var_c = (baseline.stddev or 0.0) ** 2, (current.stddev or 0.0) ** 2
    pooled = math.sqrt(((n_b - 1) * var_b + (n_c - 1) * var_c) / (n_b + n_c - 2))
    difference = current.value - baseline.value
    if pooled == 0:
        return 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return difference / pooled


def mean_test(
    metric: str, baseline: Side, current: Side, p_value: float, sufficient: bool
) -> Comparison:
    """A Welch t-test ClickHouse ran on per-observation values, with Cohen's d."""
    if not sufficient or baseline.value is None or current.value is None:
        return _untested(metric, "welch_t", baseline, current)
    effect = cohens_d(baseline, current)
    if not math.isfinite(p_value):
        # welchTTest is NaN when both sides are constant: then any difference is
        # certain and no difference is no drift.
        p_value = 0.0 if effect != 0 else 1.0
    return Comparison(metric, "welch_t", baseline, current, p_value, effect)


def rank_test(
    metric: str, baseline: Side, current: Side, u: float, p_value: float, sufficient: bool
) -> Comparison:
    """ClickHouse's Mann-Whitney U test, with Cliff's delta derived from its U.

    ``mannWhitneyUTest(value, is_current)`` returns the U of the first sample
    (index 0, the baseline): the number of (baseline, current) pairs where the
    baseline value is larger, ties counting half. So P(baseline > current) is
    U / (n_b·n_c) and Cliff's delta of current over baseline is 1 - 2U/(n_b·n_c),
    which is also the rank-biserial correlation.
    """
    if not sufficient or not math.isfinite(u):
        return _untested(metric, "mann_whitney_u", baseline, current)
    delta = 1 - 2 * u / (baseline.samples * current.samples)
    p = p_value if math.isfinite(p_value) else 1.0
    return Comparison(metric, "mann_whitney_u", baseline, current, p, delta)


def proportion_test(
    metric: str, hits_b: int, n_b: int, hits_c: int, n_c: int, sufficient: bool
) -> Comparison:
    """Pooled two-proportion z-test from counts (two-sided), with Cohen's h."""
    baseline = Side(hits_b / n_b if n_b else None, n_b)
    current = Side(hits_c / n_c if n_c else None, n_c)
    if not sufficient or baseline.value is None or current.value is None:
        return _untested(metric, "two_proportion_z", baseline, current)
    pooled = (hits_b + hits_c) / (n_b + n_c)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_b + 1 / n_c))
    difference = current.value - baseline.value
    # No spread: all hits or all misses on both sides, identical proportions.
    p_value = 1.0 if spread == 0 else math.erfc(abs(difference) / spread / math.sqrt(2))
    h = 2 * math.asin(math.sqrt(current.value)) - 2 * math.asin(math.sqrt(baseline.value))
    return Comparison(metric, "two_proportion_z", baseline, current, p_value, h)


@dataclass(frozen=True)
class Judged:
    comparison: Comparison
    verdict: Verdict
    alpha: float | None  # the Bonferroni-adjusted level it was held to; None if untested


def judge(comparisons: list[Comparison], alpha: float) -> list[Judged]:
    """Verdicts for the metrics of one feature (and model); see the module docstring."""
    tested = sum(c.tested for c in comparisons)
    level = alpha / tested if tested else None
    judged = []
    for comparison in comparisons:
        if level is None or comparison.p_value is None or comparison.effect_size is None:
            judged.append(Judged(comparison, "insufficient_data", None))
            continue
        large = abs(comparison.effect_size) >= SMALL_EFFECT[comparison.effect]
        drifted = comparison.p_value < level and large
        judged.append(Judged(comparison, "drifted" if drifted else "stable", level))
    return judged
