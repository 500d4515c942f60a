"""Drift on the real embedded engine: known scenarios in, the right verdicts out.

One project holds a feature per scenario, written with synthetic timestamps in
a 7-day baseline and the 24 hours after it, from fixed seeds, at the same call
rate on both sides. Each scenario changes one thing between the windows (or
nothing, for the control), and the tests check that exactly that is flagged.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tokentrail.api.drift.models import DriftReport, FeatureDrift, MetricDrift
from tokentrail.api.drift.report import DriftQuery, drift_report
from tokentrail.api.drift.stats import Side, judge, mean_test, proportion_test, rank_test
from tokentrail.api.routes import api_router
from tokentrail.api.timewindow import rfc3339
from tokentrail.collector.records import LlmCall, Score
from tokentrail.collector.writer import Writer
from tokentrail.schema import Store

HOUR = 3_600 * 10**9
END = 1_790_000_000 * 10**9 // HOUR * HOUR
SPLIT = END - 24 * HOUR
START = SPLIT - 7 * 24 * HOUR
CALLS_PER_HOUR = 10

Draw = Callable[[random.Random], float]


def around(mean: float, spread: float) -> Draw:
    """Uniform on mean ± spread: a known mean, and never negative here."""
    return lambda rng: rng.uniform(mean - spread, mean + spread)


USUAL_COST = around(0.002, 0.0005)


@dataclass(frozen=True)
class Regime:
    """How one feature's calls look in one window."""

    cost: Draw = USUAL_COST
    model: str = "small-1"
    error_rate: float = 0.02
    latency_median_ms: float = 800.0
    helpfulness: float | None = None  # mean of a numeric score given to every call
    thumbs_up: float | None = None  # chance a boolean score given to every call is true
    calls_per_hour: float = CALLS_PER_HOUR


STEADY = Regime(helpfulness=0.8, thumbs_up=0.85)
SCENARIOS: dict[str, tuple[Regime, Regime]] = {
    "control": (STEADY, STEADY),
    # A model change: twice the cost per call, same traffic, same tokens.
    "pricier": (Regime(), Regime(cost=around(0.004, 0.001), model="large-2")),
    "support": (Regime(helpfulness=0.8), Regime(helpfulness=0.6)),
    # Same mean cost, five times the spread.
    "noisy": (Regime(cost=around(0.002, 0.0003)), Regime(cost=around(0.002, 0.0015))),
    "flaky": (Regime(error_rate=0.02), Regime(error_rate=0.15)),
    "slow": (Regime(), Regime(latency_median_ms=1600.0)),
    "tiny": (Regime(calls_per_hour=0.05), Regime(calls_per_hour=0.2)),
}


def _calls_and_scores(
    feature: str, regime: Regime, start: int, end: int, rng: random.Random
) -> tuple[list[LlmCall], list[Score]]:
    hours = (end - start) // HOUR
    count = round(regime.calls_per_hour * hours)
    calls, scores = [], []
    for _ in range(count):
        at = rng.randrange(start, end)
        trace, span = uuid.UUID(int=rng.getrandbits(128)).hex, f"{rng.getrandbits(64):016x}"
        failed = rng.random() < regime.error_rate
        calls.append(
            LlmCall(
                trace_id=trace, span_id=span, parent_span_id="", start_time_unix_nano=at,
                duration_ns=int(regime.latency_median_ms * math.exp(rng.gauss(0, 0.3)) * 1e6),
                feature=feature, request_model=regime.model, response_model=regime.model,
                input_tokens=rng.randint(400, 600), output_tokens=rng.randint(80, 120),
                total_cost_usd=Decimal(f"{regime.cost(rng):.12f}"), price_status="priced",
                status_code="Error" if failed else "Unset",
            )
        )  # fmt: skip
        given = at + 60 * 10**9
        if regime.helpfulness is not None and given < end:
            value = min(1.0, max(0.0, rng.gauss(regime.helpfulness, 0.1)))
            scores.append(_score(trace, span, "helpfulness", "numeric", value, given, feature))
        if regime.thumbs_up is not None and given < end:
            value = float(rng.random() < regime.thumbs_up)
            scores.append(_score(trace, span, "thumbs_up", "boolean", value, given, feature))
    return calls, scores


def _score(
    trace: str, span: str, name: str, kind: str, value: float, at: int, feature: str
) -> Score:
    return Score(
        trace, span, name, kind, value, time_unix_nano=at, score_id=f"{span}-{name}",
        feature=feature,
    )  # fmt: skip


@pytest.fixture(scope="module")
def scenarios(store: Store) -> str:
    """The project holding every scenario, written once for the module."""
    project = uuid.uuid4().hex
    writer = Writer(store)
    for seed, (feature, (before, after)) in enumerate(SCENARIOS.items()):
        rng = random.Random(seed)
        for regime, start, end in ((before, START, SPLIT), (after, SPLIT, END)):
            calls, scores = _calls_and_scores(feature, regime, start, end, rng)
            writer.write(project, calls=calls, scores=scores)
    return project


@pytest.fixture(scope="module")
def report(store: Store, scenarios: str) -> DriftReport:
    return drift_report(store, scenarios, DriftQuery(END, window_hours=24, baseline_hours=168))


def feature(report: DriftReport, name: str) -> FeatureDrift:
    (found,) = [f for f in report.features if f.feature == name]
    return found


def metric(group: FeatureDrift, name: str) -> MetricDrift:
    (found,) = [m for m in group.metrics if m.metric == name]
    return found


def drifted(group: FeatureDrift) -> set[str]:
    return {m.metric for m in group.metrics if m.drifted}


ALL_METRICS = {
    "cost_per_call", "tokens_per_call", "spend_rate", "latency_p95", "error_rate",
    "score:helpfulness", "score:thumbs_up",
}  # fmt: skip


# --- scenarios ------------------------------------------------------------------------


def test_the_control_feature_raises_no_alarm(report: DriftReport):
    control = feature(report, "control")

    assert {m.metric for m in control.metrics} == ALL_METRICS
    assert [m.metric for m in control.metrics if m.verdict != "stable"] == []
    assert not control.drifted
    assert metric(control, "score:thumbs_up").test == "two_proportion_z"
    assert metric(control, "score:helpfulness").test == "welch_t"


def test_a_model_change_that_doubles_cost_per_call_drifts_cost(report: DriftReport):
    pricier = feature(report, "pricier")
    cost = metric(pricier, "cost_per_call")

    assert drifted(pricier) == {"cost_per_call", "spend_rate"}
    assert cost.change_pct == pytest.approx(100, abs=5)
    assert (cost.test, cost.effect_size_kind) == ("welch_t", "cohens_d")
    assert cost.effect_size is not None and cost.effect_size > 2
    assert cost.p_value is not None and cost.alpha is not None and cost.p_value < cost.alpha
    assert cost.baseline.samples == pytest.approx(168 * CALLS_PER_HOUR, rel=0.01)
    assert metric(pricier, "spend_rate").change_pct == pytest.approx(100, abs=10)


def test_a_falling_helpfulness_score_drifts_that_score(report: DriftReport):
    support = feature(report, "support")
    helpfulness = metric(support, "score:helpfulness")

    assert drifted(support) == {"score:helpfulness"}
    assert helpfulness.baseline.value == pytest.approx(0.8, abs=0.01)
    assert helpfulness.current.value == pytest.approx(0.6, abs=0.01)
    assert helpfulness.effect_size is not None and helpfulness.effect_size < -1


def test_a_feature_that_only_got_noisier_has_not_drifted_in_its_means(report: DriftReport):
    # Drift here is a moved mean: the bill is calls times mean cost, and a wider
    # spread around the same mean costs the same. The spread is reported.
    noisy = feature(report, "noisy")
    cost = metric(noisy, "cost_per_call")

    assert drifted(noisy) == set()
    assert cost.verdict == "stable"
    assert cost.effect_size is not None and abs(cost.effect_size) < 0.2
    assert cost.baseline.stddev is not None and cost.current.stddev is not None
    assert cost.current.stddev > 4 * cost.baseline.stddev


def test_an_error_rate_jump_drifts_through_the_proportion_test(report: DriftReport):
    flaky = feature(report, "flaky")
    errors = metric(flaky, "error_rate")

    assert drifted(flaky) == {"error_rate"}
    assert (errors.test, errors.effect_size_kind) == ("two_proportion_z", "cohens_h")
    assert errors.baseline.value is not None and errors.current.value is not None
    assert errors.current.value > 3 * errors.baseline.value
    assert errors.effect_size is not None and errors.effect_size > 0.2


def test_slower_calls_drift_latency_with_a_positive_cliffs_delta(report: DriftReport):
    # Checks the sign convention of mannWhitneyUTest's U on the real engine.
    slow = feature(report, "slow")
    latency = metric(slow, "latency_p95")

    assert drifted(slow) == {"latency_p95"}
    assert (latency.test, latency.effect_size_kind) == ("mann_whitney_u", "cliffs_delta")
    assert latency.effect_size is not None and latency.effect_size > 0.8
    assert latency.change_pct == pytest.approx(100, abs=20)


def test_a_tiny_sample_is_insufficient_data_not_a_guess(report: DriftReport):
    tiny = feature(report, "tiny")

    assert {m.verdict for m in tiny.metrics} == {"insufficient_data"}
    assert all(m.p_value is None and m.effect_size is None for m in tiny.metrics)
    assert not tiny.drifted
    # Hours without calls count as $0 hours on both sides.
    spend = metric(tiny, "spend_rate")
    assert (spend.baseline.samples, spend.current.samples) == (168, 24)


def test_drifted_features_come_first(report: DriftReport):
    flags = [f.drifted for f in report.features]

    assert flags == sorted(flags, reverse=True)
    assert {f.feature for f in report.features if f.drifted} == {
        "pricier", "support", "flaky", "slow",
    }  # fmt: skip


def test_duplicate_calls_are_not_samples(store: Store):
    project = uuid.uuid4().hex
    calls, _ = _calls_and_scores("dup", Regime(), SPLIT - 5 * HOUR, END, random.Random(1))
    repeats = [replace(c, span_id=c.span_id[::-1], duplicate_of=c.span_id) for c in calls]
    Writer(store).write(project, calls=calls + repeats)

    result = drift_report(store, project, DriftQuery(END, window_hours=24, baseline_hours=24))

    cost = metric(feature(result, "dup"), "cost_per_call")
    assert cost.baseline.samples + cost.current.samples == len(calls)


def test_by_model_splits_the_model_change_into_one_sided_groups(store: Store, scenarios: str):
    query = DriftQuery(END, window_hours=24, baseline_hours=168, feature="pricier", by_model=True)

    result = drift_report(store, scenarios, query)

    by_model = {f.model: f for f in result.features}
    assert set(by_model) == {"small-1", "large-2"}
    assert metric(by_model["small-1"], "cost_per_call").current.samples == 0
    assert metric(by_model["large-2"], "cost_per_call").verdict == "insufficient_data"


def test_a_model_filter_keeps_its_calls_and_their_scores(store: Store, scenarios: str):
    query = DriftQuery(END, window_hours=24, baseline_hours=168, model="small-1")

    result = drift_report(store, scenarios, query)

    control = feature(result, "control")
    assert control.model == "small-1"
    assert {m.metric for m in control.metrics} == ALL_METRICS
    assert metric(feature(result, "support"), "score:helpfulness").drifted


# --- statistics -----------------------------------------------------------------------


def test_proportion_test_matches_a_hand_computed_z():
    # 10/100 against 20/100: pooled 0.15, z = 0.1 / sqrt(0.15·0.85·0.02) ≈ 1.980.
    result = proportion_test("error_rate", 10, 100, 20, 100, sufficient=True)

    assert result.p_value == pytest.approx(0.04771, abs=1e-4)
    assert result.effect_size == pytest.approx(2 * math.asin(0.2**0.5) - 2 * math.asin(0.1**0.5))


def test_identical_constant_sides_are_stable_and_different_ones_certain():
    same = mean_test("m", Side(1.0, 50, 0.0), Side(1.0, 50, 0.0), math.nan, sufficient=True)
    moved = mean_test("m", Side(1.0, 50, 0.0), Side(2.0, 50, 0.0), math.nan, sufficient=True)

    assert (same.p_value, same.effect_size) == (1.0, 0.0)
    assert moved.p_value == 0.0 and moved.effect_size == math.inf


def test_cliffs_delta_comes_from_the_baselines_u():
    # U counts (baseline, current) pairs with the baseline larger: 0 → current all larger.
    result = rank_test("latency_p95", Side(1.0, 10), Side(2.0, 20), 0.0, 1e-6, sufficient=True)

    assert result.effect_size == 1.0


def test_bonferroni_over_the_tested_metrics_and_a_minimum_effect():
    def welch(p: float, current: float) -> Any:
        return mean_test("m", Side(1.0, 100, 1.0), Side(current, 100, 1.0), p, sufficient=True)

    # Three tested metrics hold p to 0.01 / 3: 0.004 would pass alone, not here; p = 1e-9
    # with d = 0.1 is a real but trivial change.
    untested = mean_test("m", Side(1.0, 5, 1.0), Side(2.0, 5, 1.0), 0.0, sufficient=False)
    judged = judge([welch(0.003, 2.0), welch(0.004, 2.0), welch(1e-9, 1.1), untested], 0.01)

    assert [j.verdict for j in judged] == ["drifted", "stable", "stable", "insufficient_data"]
    assert judged[0].alpha == pytest.approx(0.01 / 3)


# --- HTTP -----------------------------------------------------------------------------


@pytest.fixture
def client(store: Store, scenarios: str) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(api_router(store, lambda: scenarios, record_scores=lambda *_: None))
    with TestClient(app) as test_client:
        yield test_client


def test_the_route_reports_windows_and_verdicts(client: TestClient):
    response = client.get(
        "/api/v1/drift", params={"window": "24h", "baseline": "7d", "end": rfc3339(END)}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["current"] == {"start": rfc3339(SPLIT), "end": rfc3339(END)}
    assert body["baseline"] == {"start": rfc3339(START), "end": rfc3339(SPLIT)}
    assert (body["alpha"], body["min_samples"]) == (0.01, 30)
    assert body["features"][0]["drifted"] is True


def test_the_route_filters_by_feature_and_takes_the_knobs(client: TestClient):
    params = {"end": rfc3339(END), "feature": "tiny", "min_samples": "2", "alpha": "0.05"}

    body = client.get("/api/v1/drift", params=params).json()

    (tiny,) = body["features"]
    assert tiny["feature"] == "tiny" and tiny["model"] is None
    assert metric(FeatureDrift(**tiny), "cost_per_call").verdict != "insufficient_data"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"window": "yesterday"}, "window"),
        ({"window": "90m"}, "window"),  # spend rate needs whole hours
        ({"window": "0h"}, "window"),
        ({"baseline": "40d"}, "baseline"),
        ({"by": "user"}, "by"),
        ({"alpha": "0"}, "alpha"),
        ({"min_samples": "1"}, "min_samples"),
        ({"feature": "x" * 201}, "feature"),
        ({"end": "2024-05-01T00:00:00"}, "end"),  # no UTC offset: ambiguous
    ],
)
def test_bad_parameters_are_422_naming_the_field(
    client: TestClient, query: dict[str, str], field: str
):
    response = client.get("/api/v1/drift", params=query)

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", field]
    assert error["msg"]
