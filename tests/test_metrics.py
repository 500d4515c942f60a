"""Report metrics on the real embedded engine: values, buckets, scopes, weights."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tokentrail.api.metrics import Scope, UnknownMetric, check_metric, series, value
from tokentrail.collector.records import LlmCall, Score
from tokentrail.collector.writer import Writer
from tokentrail.schema import Store

HOUR = 3600 * 10**9
T0 = 1_790_000_000 * 10**9 // HOUR * HOUR  # an hour boundary


def _call(n: int, at: int, **fields: object) -> LlmCall:
    values: dict[str, object] = {
        "trace_id": f"{n:032x}", "span_id": f"{n:016x}", "parent_span_id": "",
        "start_time_unix_nano": at, "duration_ns": 100_000_000, "service": "svc",
        "feature": "chat", "request_model": "gpt-4o-mini", "input_tokens": 100,
        "output_tokens": 10, "total_cost_usd": Decimal("0.001"), "price_status": "priced",
        **fields,
    }  # fmt: skip
    return LlmCall(**values)  # type: ignore[arg-type]


@pytest.fixture
def seeded(store: Store, project_id: str) -> str:
    calls = [
        _call(1, T0 + 1, duration_ns=200_000_000),
        _call(2, T0 + 2, status_code="Error"),
        _call(3, T0 + 3, price_status="unpriced", total_cost_usd=Decimal(0), request_model="x"),
        _call(4, T0 + HOUR + 1, sample_weight=10.0),
        _call(5, T0 + HOUR + 2, feature="search", service="other"),
        _call(6, T0 + HOUR + 3, duplicate_of=f"{4:016x}"),
    ]
    scores = [
        Score(f"{1:032x}", "", "helpfulness", "numeric", 0.5, time_unix_nano=T0 + 5,
              score_id="a", feature="chat"),
        Score(f"{4:032x}", "", "helpfulness", "numeric", 1.0, time_unix_nano=T0 + HOUR + 5,
              score_id="b", feature="chat"),
    ]  # fmt: skip
    Writer(store).write(project_id, calls=calls, scores=scores)
    return project_id


def test_hourly_series_weights_and_skips_repeats(store: Store, seeded: str) -> None:
    chat = Scope(feature="chat")
    calls = series(store, seeded, "calls", T0, T0 + 2 * HOUR, 3600, chat)
    assert [(p.start_ns, p.value) for p in calls] == [(T0, 3.0), (T0 + HOUR, 10.0)]
    cost = series(store, seeded, "cost", T0, T0 + 2 * HOUR, 3600, chat)
    assert [p.value for p in cost] == [pytest.approx(0.002), pytest.approx(0.01)]


def test_window_values(store: Store, seeded: str) -> None:
    first_hour = (T0, T0 + HOUR)
    chat = Scope(feature="chat")
    assert value(store, seeded, "error_rate", *first_hour, chat).value == pytest.approx(1 / 3)
    # Unpriced calls are left out of cost per call rather than counted as $0.
    assert value(store, seeded, "cost_per_call", *first_hour, chat).value == pytest.approx(0.001)
    assert value(store, seeded, "latency_p95", *first_hour, chat).value == pytest.approx(
        195, rel=0.05
    )
    assert value(store, seeded, "tokens", *first_hour, Scope(model="x")).value == 110
    whole = (T0, T0 + 2 * HOUR)
    assert value(store, seeded, "calls", *whole, Scope(service="other")).value == 1
    assert value(store, seeded, "calls", *whole).value == 14
    assert value(store, seeded, "score:helpfulness", *whole, chat).value == pytest.approx(0.75)
    assert value(store, seeded, "calls", T0 - HOUR, T0).value is None


def test_unknown_metric_is_named() -> None:
    with pytest.raises(UnknownMetric, match="latency_p95"):
        check_metric("latency")
    assert check_metric("score:helpfulness") == "score:helpfulness"
