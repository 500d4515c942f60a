"""Rollups against raw rows on the real embedded engine: every report must equal raw.

Each scenario writes calls and scores the ways production does (plain ingest, a
retried batch, a late parent, a call turning duplicate, a price re-write, a
score replaced by id), then compares the reports, which read rollups with raw
edges, against reference queries written here straight on the raw tables, over
windows with ragged edges. Reports are also compared with themselves computed
from raw rows only (``rollups=False``), which must agree to the last digit.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tokentrail.api.call_totals import quantile
from tokentrail.api.feature_breakdowns import model_reports, top_users
from tokentrail.api.features import feature_reports
from tokentrail.api.metrics import CALL_METRICS, Scope, series, value
from tokentrail.api.rollup_plan import HOUR_S, MINUTE_RETENTION_S, MINUTE_S, RAW, plan
from tokentrail.api.routes import api_router
from tokentrail.api.timewindow import TimeWindow, rfc3339
from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.collector.records import LlmCall, Score, Span
from tokentrail.collector.rollup_feed import reconcile
from tokentrail.collector.writer import Writer, llm_call_columns
from tokentrail.schema import Store
from tokentrail.schema.prices import seed_shipped_prices

NS = 10**9
MS = 10**6
MINUTE = 60 * NS
HOUR = 3600 * NS
# Recent enough for the minute rollups (kept 15 days), on an hour boundary.
T0 = (time.time_ns() - 8 * HOUR) // HOUR * HOUR
SPREAD = 5 * HOUR  # traffic covers [T0, T0 + SPREAD)
WHOLE = TimeWindow(T0 - HOUR, T0 + SPREAD + HOUR)


# --- traffic ----------------------------------------------------------------------------


def hex_id(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(4 * digits):0{digits}x}"


def make_calls(
    rng: random.Random, count: int, start: int = T0, spread: int = SPREAD
) -> list[LlmCall]:
    """Calls at arbitrary nanoseconds with every measure varied; weights stay binary-exact."""
    calls = []
    for _ in range(count):
        status = rng.choice(["priced", "priced", "provided", "unpriced"])
        model = rng.choice(["gpt-4o", "claude-sonnet-4", "mystery-1"])
        calls.append(
            LlmCall(
                trace_id=hex_id(rng, 32), span_id=hex_id(rng, 16), parent_span_id="",
                start_time_unix_nano=start + rng.randrange(spread),
                duration_ns=rng.choice([0, 3 * MS, 120 * MS, 850 * MS, 2_400 * MS])
                + rng.randrange(MS),
                service=rng.choice(["web", "worker"]), environment=rng.choice(["prod", "dev"]),
                feature=rng.choice(["chat", "chat", "search", ""]),
                user_id=rng.choice(["u1", "u2", "u3", ""]),
                request_model=model,
                response_model=rng.choice(["", f"{model}-2025-01-01"]),
                input_tokens=rng.randrange(5_000), output_tokens=rng.randrange(800),
                cache_read_tokens=rng.randrange(100), reasoning_tokens=rng.randrange(50),
                total_cost_usd=Decimal(0) if status == "unpriced"
                else Decimal(rng.randrange(10**10)) / 10**12,
                price_status=status,
                status_code=rng.choice(["Unset", "Unset", "Ok", "Error"]),
                sample_weight=rng.choice([1.0, 1.0, 4.0, 0.5]),
            )
        )  # fmt: skip
    return calls


def make_scores(rng: random.Random, calls: list[LlmCall]) -> list[Score]:
    scores = []
    for n, call in enumerate(calls[::3]):
        kind = rng.choice(["numeric", "boolean", "categorical"])
        label = rng.choice(["polite", "rude"]) if kind == "categorical" else ""
        scores.append(
            Score(
                call.trace_id, call.span_id, rng.choice(["helpful", "tone"]), kind,
                value=0.0 if label else rng.choice([0.0, 0.25, 0.5, 1.0]), string_value=label,
                time_unix_nano=call.start_time_unix_nano + rng.randrange(MINUTE),
                score_id=f"s{n}", feature=call.feature,
            )
        )  # fmt: skip
    return scores


def ragged_windows(rng: random.Random, count: int) -> Iterator[TimeWindow]:
    """Windows starting and ending anywhere, from a second to the whole spread."""
    yield WHOLE
    for _ in range(count):
        start = T0 - MINUTE + rng.randrange(SPREAD)
        length = rng.choice([NS, 59 * NS, 61 * NS, 17 * MINUTE + 3, 2 * HOUR + 13 * NS, SPREAD])
        yield TimeWindow(start, start + length + rng.randrange(NS))


# --- references on raw rows --------------------------------------------------------------

_RAW_CALLS = """
WHERE project_id = {project_id:String} AND duplicate_of = ''
    AND Timestamp >= fromUnixTimestamp64Nano({start_ns:Int64})
    AND Timestamp < fromUnixTimestamp64Nano({end_ns:Int64})
"""
_RAW_MEASURES = """
    sum(sample_weight) AS calls,
    sumIf(sample_weight, status_code = 'Error') AS errors,
    sum(input_tokens * sample_weight) AS input_tokens,
    sum(output_tokens * sample_weight) AS output_tokens,
    sum(total_cost_usd * toDecimal64(sample_weight, 6)) AS cost_usd,
    sumIf(sample_weight, price_status = 'unpriced') AS unpriced_calls,
    arraySort(groupUniqArrayIf(if(response_model != '', response_model, request_model),
                               price_status = 'unpriced')) AS unpriced_models,
    quantilesExactInclusive(0.5, 0.95)(duration_ns) AS latency_ns
"""
RAW_BY_FEATURE = (
    f"SELECT feature, {_RAW_MEASURES} FROM llm_calls FINAL {_RAW_CALLS} GROUP BY feature"
)
RAW_BY_MODEL = f"""
SELECT if(response_model != '', response_model, request_model) AS model, {_RAW_MEASURES}
FROM llm_calls FINAL {_RAW_CALLS} AND feature = {{feature:String}} GROUP BY model
"""
RAW_USERS = f"""
SELECT user_id, sum(total_cost_usd * toDecimal64(sample_weight, 6)) AS cost_usd,
    sum(sample_weight) AS calls
FROM llm_calls FINAL {_RAW_CALLS} AND feature = {{feature:String}}
GROUP BY user_id ORDER BY cost_usd DESC, user_id LIMIT {{limit:UInt32}}
"""
RAW_SERIES = f"""
SELECT toUnixTimestamp64Nano(toStartOfInterval(Timestamp, toIntervalSecond({{step_s:UInt32}}),
        fromUnixTimestamp64Nano({{origin_ns:Int64}}))) AS bucket_ns,
    sum(sample_weight) AS calls, sum(total_cost_usd * toDecimal64(sample_weight, 6)) AS cost
FROM llm_calls FINAL {_RAW_CALLS} AND feature = {{feature:String}}
GROUP BY bucket_ns ORDER BY bucket_ns
"""
RAW_SCORES = """
SELECT feature, name, count() AS count, sum(value) AS value_sum
FROM scores FINAL
WHERE project_id = {project_id:String} AND data_type != 'categorical'
    AND Timestamp >= fromUnixTimestamp64Nano({start_ns:Int64})
    AND Timestamp < fromUnixTimestamp64Nano({end_ns:Int64})
GROUP BY feature, name
"""


def raw(store: Store, sql: str, project_id: str, window: TimeWindow, **params: Any) -> list[dict]:
    return store.query(sql, {"project_id": project_id, **window.params(), **params}).dicts()


def assert_calls_match(report: Any, ref: dict[str, Any]) -> None:
    assert report.calls == round(ref["calls"])
    assert report.errors == round(ref["errors"])
    assert (report.input_tokens, report.output_tokens) == (
        round(ref["input_tokens"]),
        round(ref["output_tokens"]),
    )
    assert report.cost_usd == ref["cost_usd"]  # Decimal: exact
    assert report.unpriced_calls == round(ref["unpriced_calls"])
    p50, p95 = ref["latency_ns"]
    # Histogram buckets are 4.4 % wide, read at their middle.
    assert report.latency_ms.p50 == pytest.approx(p50 / MS, rel=0.025, abs=1e-3)
    assert report.latency_ms.p95 == pytest.approx(p95 / MS, rel=0.025, abs=1e-3)


def assert_features_match_raw(store: Store, project_id: str, window: TimeWindow) -> None:
    reports = feature_reports(store, project_id, window, "")
    assert reports == feature_reports(store, project_id, window, "", rollups=False)
    by_feature = {report.feature: report for report in reports}
    calls = {row["feature"]: row for row in raw(store, RAW_BY_FEATURE, project_id, window)}
    assert {f for f, r in by_feature.items() if r.calls or r.cost_usd} <= set(calls)
    for feature, ref in calls.items():
        assert_calls_match(by_feature[feature], ref)
        assert by_feature[feature].unpriced_models == ref["unpriced_models"]
    for ref in raw(store, RAW_SCORES, project_id, window):
        mean = by_feature[ref["feature"]].scores[ref["name"]]
        assert (mean.count, mean.mean) == (
            ref["count"],
            pytest.approx(ref["value_sum"] / ref["count"]),
        )


def ledger_matches_raw(store: Store, project_id: str) -> bool:
    """The rollups' own bookkeeping holds each counted row exactly once."""
    ((ledger, facts),) = store.query(
        "SELECT (SELECT sum(sign) FROM llm_call_ledger WHERE project_id = {p:String}),"
        " (SELECT count() FROM llm_calls FINAL WHERE project_id = {p:String}"
        "  AND duplicate_of = '')",
        {"p": project_id},
    ).rows
    return bool(ledger == facts)


# --- scenarios ---------------------------------------------------------------------------


@pytest.fixture
def traffic(store: Store, project_id: str) -> tuple[list[LlmCall], list[Score]]:
    rng = random.Random(4)
    calls = make_calls(rng, 400)
    scores = make_scores(rng, calls)
    writer = Writer(store)
    for start in range(0, len(calls), 50):  # batches, as ingest writes them
        writer.write(project_id, calls=calls[start : start + 50])
    writer.write(project_id, scores=scores)
    return calls, scores


def test_plain_ingest_matches_raw_over_ragged_windows(
    store: Store, project_id: str, traffic: Any
) -> None:
    for window in ragged_windows(random.Random(7), 12):
        assert_features_match_raw(store, project_id, window)
    assert ledger_matches_raw(store, project_id)


def test_a_retried_batch_changes_nothing(store: Store, project_id: str, traffic: Any) -> None:
    calls, scores = traffic
    before = feature_reports(store, project_id, WHOLE, "")
    Writer(store).write(project_id, calls=calls[:120], scores=scores[:30])
    Writer(store).write(project_id, calls=calls[:120] + calls[:5])  # repeated inside a batch too

    assert feature_reports(store, project_id, WHOLE, "") == before
    assert_features_match_raw(store, project_id, WHOLE)
    assert ledger_matches_raw(store, project_id)


def test_a_late_parent_moves_the_call_to_its_feature(store: Store, project_id: str) -> None:
    seed_shipped_prices(store)
    pipeline = IngestPipeline(store)
    trace, root, child = "ab" * 16, "a1" * 8, "b1" * 8
    at = T0 + 17 * MINUTE + 5

    def span(span_id: str, parent: str, **attributes: object) -> Span:
        return Span(
            trace_id=trace, span_id=span_id, parent_span_id=parent, name="s", kind="Client",
            start_time_unix_nano=at, end_time_unix_nano=at + 400 * MS,
            attributes=dict(attributes), resource_attributes={"service.name": "svc"},
        )  # fmt: skip

    llm = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
           "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 1000}  # fmt: skip
    pipeline.ingest(project_id, [span(child, root, **llm)])
    assert [r.feature for r in feature_reports(store, project_id, WHOLE, "")] == [""]

    pipeline.ingest(project_id, [span(root, "", **{"tokentrail.feature": "x"})])

    (report,) = feature_reports(store, project_id, WHOLE, "")
    assert (report.feature, report.calls) == ("x", 1)
    assert_features_match_raw(store, project_id, WHOLE)
    assert_features_match_raw(store, project_id, TimeWindow(at - 3, at + 1))
    assert ledger_matches_raw(store, project_id)


def test_a_call_that_becomes_a_duplicate_is_retracted(
    store: Store, project_id: str, traffic: Any
) -> None:
    calls, _ = traffic
    repeated = [dataclasses.replace(call, duplicate_of="f" * 16) for call in calls[10:40]]
    chat_before = value(store, project_id, "calls", *WHOLE.params().values(), Scope())

    Writer(store).write(project_id, calls=repeated)

    chat_after = value(store, project_id, "calls", *WHOLE.params().values(), Scope())
    gone = sum(call.sample_weight for call in calls[10:40])
    assert chat_after.value == pytest.approx((chat_before.value or 0) - gone)
    for window in ragged_windows(random.Random(8), 6):
        assert_features_match_raw(store, project_id, window)
    assert ledger_matches_raw(store, project_id)


def test_a_price_rewrite_replaces_the_old_cost(store: Store, project_id: str, traffic: Any) -> None:
    calls, _ = traffic
    repriced = [
        dataclasses.replace(call, total_cost_usd=Decimal("0.123456789012"), price_status="priced")
        for call in calls
        if call.price_status == "unpriced"
    ]

    Writer(store).write(project_id, calls=repriced)
    Writer(store).write(project_id, calls=repriced)  # a second recompute finds nothing new

    reports = feature_reports(store, project_id, WHOLE, "")
    assert all(report.unpriced_calls == 0 and not report.unpriced_models for report in reports)
    for window in ragged_windows(random.Random(9), 6):
        assert_features_match_raw(store, project_id, window)
    assert ledger_matches_raw(store, project_id)


def test_a_score_replaced_by_id_counts_once(store: Store, project_id: str) -> None:
    writer = Writer(store)
    (call,) = make_calls(random.Random(1), 1)
    call.feature = "chat"
    writer.write(project_id, calls=[call])
    first = Score(call.trace_id, "", "thumbs_up", "boolean", 0.0, "false", "api",
                  time_unix_nano=T0 + 10 * MINUTE, score_id="fb-42", feature="chat")  # fmt: skip
    writer.write(project_id, scores=[first])
    # Re-posted an hour later with another value: it moves bucket and value.
    again = dataclasses.replace(first, value=1.0, string_value="true", time_unix_nano=T0 + HOUR)
    writer.write(project_id, scores=[again])
    writer.write(project_id, scores=[again])

    (report,) = feature_reports(store, project_id, WHOLE, "")
    assert report.scores["thumbs_up"].model_dump() == {"mean": 1.0, "count": 1}
    chat = Scope(feature="chat")
    points = series(store, project_id, "score:thumbs_up", *WHOLE.params().values(), 3600, chat)
    assert [(p.start_ns, p.value, p.samples) for p in points] == [(T0 + HOUR, 1.0, 1.0)]
    assert_features_match_raw(store, project_id, WHOLE)


def test_writes_around_the_writer_are_settled_by_reconcile(store: Store, project_id: str) -> None:
    calls = make_calls(random.Random(5), 60)
    # A bulk load straight into the raw table: the rollups do not see it ...
    store.insert_columns("llm_calls", llm_call_columns(project_id, calls))
    assert feature_reports(store, project_id, WHOLE, "") != feature_reports(
        store, project_id, WHOLE, "", rollups=False
    )

    reconcile(store, project_id, WHOLE.start_ns, WHOLE.end_ns)
    reconcile(store, project_id, WHOLE.start_ns, WHOLE.end_ns)  # idempotent

    assert_features_match_raw(store, project_id, WHOLE)
    assert ledger_matches_raw(store, project_id)


# --- other reports -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step_s", "origin_ns"),
    [(60, 0), (300, 0), (3600, 0), (5400, 0), (86_400, 0), (3600, T0 + 17 * NS), (900, 7)],
)
def test_timeseries_buckets_match_raw(
    store: Store, project_id: str, traffic: Any, step_s: int, origin_ns: int
) -> None:
    chat = Scope(feature="chat")
    for window in ragged_windows(random.Random(step_s), 3):
        bounds = (window.start_ns, window.end_ns, step_s)
        ref = raw(store, RAW_SERIES, project_id, window, step_s=step_s, origin_ns=origin_ns,
                  feature="chat")  # fmt: skip
        cost = series(store, project_id, "cost", *bounds, chat, origin_ns)
        assert [(p.start_ns, p.value) for p in cost] == [
            (r["bucket_ns"], pytest.approx(float(r["cost"]))) for r in ref
        ]
        assert [p.samples for p in cost] == [pytest.approx(r["calls"]) for r in ref]
        for metric in (*CALL_METRICS, "score:helpful"):
            assert series(store, project_id, metric, *bounds, chat, origin_ns) == series(
                store, project_id, metric, *bounds, chat, origin_ns, rollups=False
            )


def test_model_breakdown_matches_raw(store: Store, project_id: str, traffic: Any) -> None:
    for window in ragged_windows(random.Random(11), 4):
        models = model_reports(store, project_id, window, "chat")
        assert models == model_reports(store, project_id, window, "chat", rollups=False)
        refs = raw(store, RAW_BY_MODEL, project_id, window, feature="chat")
        assert {m.model for m in models} == {r["model"] for r in refs}
        by_model = {m.model: m for m in models}
        for ref in refs:
            assert_calls_match(by_model[ref["model"]], ref)
        assert [m.cost_usd for m in models] == sorted((m.cost_usd for m in models), reverse=True)


def test_top_users_match_raw(store: Store, project_id: str, traffic: Any) -> None:
    for window in ragged_windows(random.Random(12), 4):
        users = top_users(store, project_id, window, "chat", limit=3)
        assert users == top_users(store, project_id, window, "chat", 3, rollups=False)
        refs = raw(store, RAW_USERS, project_id, window, feature="chat", limit=3)
        assert [(u.user_id, u.cost_usd, u.calls) for u in users] == [
            (r["user_id"], r["cost_usd"], round(r["calls"])) for r in refs
        ]


def test_old_windows_read_hours_and_raw_edges(store: Store, project_id: str) -> None:
    # Past the minute rollups' retention: hours inside, raw rows at the edges.
    old = T0 - 40 * 24 * HOUR
    calls = make_calls(random.Random(6), 80, start=old, spread=3 * HOUR)
    Writer(store).write(project_id, calls=calls)
    window = TimeWindow(old + 7 * MINUTE + 3, old + 2 * HOUR + 59 * NS)
    assert set(plan(window.start_ns, window.end_ns, (HOUR_S, MINUTE_S)).ranges) == {HOUR_S, RAW}
    assert_features_match_raw(store, project_id, window)


# --- endpoints ---------------------------------------------------------------------------


@pytest.fixture
def client(store: Store, project_id: str) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(api_router(store, lambda: project_id, lambda *_: None))
    with TestClient(app) as test_client:
        yield test_client


def test_endpoints_serve_the_reports(client: TestClient, traffic: Any) -> None:
    window = {"start": rfc3339(WHOLE.start_ns), "end": rfc3339(WHOLE.end_ns)}

    series_ = client.get("/api/v1/features/chat/timeseries",
                         params={**window, "metric": "cost", "interval": "5m"})  # fmt: skip
    models = client.get("/api/v1/features/chat/models", params=window)
    users = client.get("/api/v1/features/chat/users", params={**window, "limit": 2})

    assert series_.status_code == 200, series_.text
    body = series_.json()
    assert (body["feature"], body["metric"], body["interval"]) == ("chat", "cost", "5m")
    assert body["points"] and all(p["start"].endswith("0.000000000Z") for p in body["points"])
    assert models.status_code == 200 and models.json()["models"]
    assert users.status_code == 200 and len(users.json()["users"]) == 2


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"metric": "latency"}, "metric", "unknown metric 'latency'"),
        ({"metric": "score:"}, "metric", "unknown metric"),
        ({"metric": "cost", "interval": "90s"}, "interval", "whole number of minutes"),
        ({"metric": "cost", "interval": "0h"}, "interval", "whole number"),
        ({"metric": "cost", "interval": "1m"}, "interval", "at most 2000"),
    ],
)
def test_timeseries_names_the_bad_parameter(
    client: TestClient, params: dict[str, str], field: str, message: str
) -> None:
    week = {"start": rfc3339(T0 - 7 * 24 * HOUR), "end": rfc3339(T0)}

    response = client.get("/api/v1/features/chat/timeseries", params={**week, **params})

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", field] and message in error["msg"]


# --- pieces ----------------------------------------------------------------------------


def test_plan_covers_the_window_once_with_aligned_rollup_ranges() -> None:
    rng = random.Random(3)
    for _ in range(200):
        start = T0 + rng.randrange(-HOUR, 3 * HOUR)
        end = start + rng.randrange(1, 5 * HOUR)
        chosen = plan(start, end, (HOUR_S, MINUTE_S), step_ns=rng.choice([None, 300 * NS]))
        pieces = sorted((lo, hi, g) for g, found in chosen.ranges.items() for lo, hi in found)
        assert pieces[0][0] == start and pieces[-1][1] == end
        assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
        assert all(lo % (g * NS) == hi % (g * NS) == 0 for lo, hi, g in pieces if g != RAW)
        assert all(len(found) <= 2 for found in chosen.ranges.values())


def test_plan_keeps_series_buckets_whole() -> None:
    window = (T0 + 5, T0 + 6 * HOUR + 5)
    # 90-minute buckets start inside hours: only minutes may answer.
    assert HOUR_S not in plan(*window, (HOUR_S, MINUTE_S), 5400 * NS, 0).ranges
    assert HOUR_S in plan(*window, (HOUR_S, MINUTE_S), 7200 * NS, 0).ranges
    # One bucket (a window value): any grain fits.
    assert HOUR_S in plan(*window, (HOUR_S, MINUTE_S)).ranges
    assert plan(*window, ()).ranges == {RAW: [window]}


def test_minute_rollups_keep_what_the_planner_reads(store: Store) -> None:
    ttl = f"TTL bucket + toIntervalDay({MINUTE_RETENTION_S // 86_400})"
    engines = store.query(
        "SELECT engine_full FROM system.tables"
        " WHERE database = currentDatabase() AND name LIKE '%rollup_minute'"
    ).rows
    assert len(engines) == 2 and all(ttl in engine for (engine,) in engines)


def test_quantile_interpolates_between_ranks() -> None:
    assert quantile(((100, 200, 300), (1, 1, 1)), 0.5) == 200
    assert quantile(((100, 200), (1, 1)), 0.95) == pytest.approx(195)
    assert quantile(((100, 200), (3, 0)), 0.95) == 100  # a retracted bucket holds nothing
    assert quantile(((), ()), 0.5) is None


_UPGRADE = """
import tempfile
from decimal import Decimal
from tokentrail.api.features import feature_reports
from tokentrail.api.timewindow import TimeWindow
from tokentrail.collector.records import LlmCall, Score
from tokentrail.collector.writer import llm_call_columns, score_columns
from tokentrail.schema import migrate, open_store

store = open_store("chdb://" + tempfile.mkdtemp())
shipped = migrate.shipped_migrations()
migrate.shipped_migrations = lambda: [m for m in shipped if m.version != 5]
migrate.apply_migrations(store)
calls = [LlmCall(f"{n:032x}", f"{n:016x}", "", 10**18 + n * 10**11, 10**8, feature="f",
                 total_cost_usd=Decimal("0.5"), price_status="priced") for n in range(50)]
store.insert_columns("llm_calls", llm_call_columns("p", calls))
store.insert_columns("llm_calls", llm_call_columns("p", calls[:10]))  # stored twice
score = Score(f"{1:032x}", "", "q", "numeric", 0.5, time_unix_nano=10**18, score_id="s",
              feature="f")
store.insert_columns("scores", score_columns("p", [score]))
migrate.shipped_migrations = lambda: shipped
migrate.apply_migrations(store)
migrate.apply_migrations(store)
window = TimeWindow(10**18, 10**18 + 10**13)
(report,) = feature_reports(store, "p", window, "")
assert report == feature_reports(store, "p", window, "", rollups=False)[0]
assert (report.calls, report.cost_usd, report.scores["q"].count) == (50, Decimal(25), 1), report
print("upgraded")
"""


def test_upgrade_backfills_rows_stored_before_the_rollups() -> None:
    # Its own process: the embedded engine is one per process.
    done = subprocess.run(
        [sys.executable, "-c", _UPGRADE], capture_output=True, text=True, timeout=300
    )
    assert done.stdout.strip() == "upgraded", done.stderr[-3000:]
