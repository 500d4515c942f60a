"""repair_rollups heals a fan-out that stopped between its materialized views.

The crash is reproduced exactly: a batch is written while some of the fan-out's
views are detached, so the ledger and the other rollups count it and these do
not. A retry or reconcile finds nothing to do (the ledger has it); the repair
compares rollups with the ledger and must bring every report back to the raw
rows, then find nothing more to do.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from test_rollups import (
    HOUR,
    MINUTE,
    NS,
    T0,
    WHOLE,
    assert_features_match_raw,
    ledger_matches_raw,
    make_calls,
    make_scores,
    ragged_windows,
    traffic,
)

from tokentrail.api.feature_breakdowns import model_reports, top_users
from tokentrail.api.features import feature_reports
from tokentrail.api.rollup_plan import HOUR_S, MINUTE_S, plan
from tokentrail.api.timewindow import TimeWindow
from tokentrail.collector.rollup_feed import reconcile
from tokentrail.collector.rollup_repair import ROLLUPS, expected_sql, repair_rollups
from tokentrail.collector.writer import Writer
from tokentrail.schema import Store

__all__ = ["traffic"]  # the fixture, used by name

# Inside one hour, away from its ends: served by minute rollups and raw edges.
MINUTES = TimeWindow(T0 + HOUR + 3 * MINUTE + 5, T0 + HOUR + 50 * MINUTE + 7)


@contextmanager
def fan_out_without(store: Store, *views: str) -> Iterator[None]:
    """Writes inside skip ``views``, as a process killed before reaching them did."""
    for view in views:
        store.command(f"DETACH TABLE {view}")
    try:
        yield
    finally:
        for view in views:
            store.command(f"ATTACH TABLE {view}")


def rollup_rows(store: Store, project_id: str) -> dict[str, int]:
    sql = "SELECT count() FROM {} WHERE project_id = {{p:String}}"
    return {table: store.command(sql.format(table), {"p": project_id}) for table in ROLLUPS}


def span(calls: Any, scores: Any) -> tuple[int, int]:
    """The window a replay of this batch would repair: every call and score time in it."""
    times = [c.start_time_unix_nano for c in calls] + [s.time_unix_nano for s in scores]
    return min(times), max(times) + 1


def assert_reports_match_raw(store: Store, project_id: str) -> None:
    for window in [MINUTES, *ragged_windows(random.Random(21), 5)]:
        assert_features_match_raw(store, project_id, window)
        for feature in ("chat", "search"):
            assert top_users(store, project_id, window, feature, 5) == top_users(
                store, project_id, window, feature, 5, rollups=False
            )
            assert model_reports(store, project_id, window, feature) == model_reports(
                store, project_id, window, feature, rollups=False
            )


def test_windows_exercise_both_grains() -> None:
    assert set(plan(WHOLE.start_ns, WHOLE.end_ns, (HOUR_S, MINUTE_S)).ranges) == {HOUR_S}
    assert MINUTE_S in plan(MINUTES.start_ns, MINUTES.end_ns, (HOUR_S, MINUTE_S)).ranges
    assert HOUR_S not in plan(MINUTES.start_ns, MINUTES.end_ns, (HOUR_S, MINUTE_S)).ranges


def test_a_consistent_project_needs_no_repair(store: Store, project_id: str, traffic: Any) -> None:
    before = rollup_rows(store, project_id)
    assert repair_rollups(store, project_id, WHOLE.start_ns, WHOLE.end_ns) == 0
    assert repair_rollups(store, project_id, T0 + 7 * MINUTE + 3, T0 + 9 * MINUTE) == 0
    assert rollup_rows(store, project_id) == before


def test_a_half_done_fan_out_is_repaired(store: Store, project_id: str, traffic: Any) -> None:
    rng = random.Random(22)
    calls = make_calls(rng, 60, start=T0 + HOUR, spread=2 * HOUR)
    scores = make_scores(rng, calls)
    # Killed after the ledger and the call minutes, before the rest.
    skipped = ("call_rollup_hour_mv", "user_rollup_hour_mv", "score_rollup_minute_mv")
    with fan_out_without(store, *skipped):
        Writer(store).write(project_id, calls=calls, scores=scores)

    assert ledger_matches_raw(store, project_id)
    for window in (WHOLE, MINUTES):  # hours short of calls, minutes short of scores
        assert feature_reports(store, project_id, window, "") != feature_reports(
            store, project_id, window, "", rollups=False
        )
    Writer(store).write(project_id, calls=calls, scores=scores)  # a replay heals nothing
    reconcile(store, project_id, WHOLE.start_ns, WHOLE.end_ns)  # nor does reconcile
    assert feature_reports(store, project_id, WHOLE, "") != feature_reports(
        store, project_id, WHOLE, "", rollups=False
    )

    repaired = repair_rollups(store, project_id, *span(calls, scores))

    assert repaired > 0
    assert_reports_match_raw(store, project_id)
    assert repair_rollups(store, project_id, *span(calls, scores)) == 0
    assert repair_rollups(store, project_id, WHOLE.start_ns, WHOLE.end_ns) == 0


def test_a_minute_correction_is_not_counted_twice_by_its_hour(
    store: Store, project_id: str, traffic: Any
) -> None:
    # Minutes wrong and hours right: the minute fix flows on to the hour rollup
    # (its view), which the repair must then take back out.
    at = T0 + 2 * HOUR + 30 * MINUTE
    stray = {"project_id": project_id, "at": at // NS}
    with fan_out_without(store, "call_rollup_hour_mv"):
        store.command(
            "INSERT INTO call_rollup_minute (project_id, bucket, feature, stored_calls, calls,"
            " latency) SELECT {project_id:String}, toDateTime({at:Int64}), 'chat', 1, 3.0,"
            " ([toUInt64(5000)], [toInt64(1)])",
            stray,
        )
    around = TimeWindow(at - 5 * MINUTE + 3, at + 5 * MINUTE)
    assert HOUR_S not in plan(around.start_ns, around.end_ns, (HOUR_S, MINUTE_S)).ranges
    assert feature_reports(store, project_id, around, "") != feature_reports(
        store, project_id, around, "", rollups=False
    )

    assert repair_rollups(store, project_id, at, at + NS) == 2  # the minute, then the hour
    assert_reports_match_raw(store, project_id)
    assert repair_rollups(store, project_id, WHOLE.start_ns, WHOLE.end_ns) == 0


def test_minute_buckets_past_their_ttl_are_left_alone(store: Store, project_id: str) -> None:
    old = T0 - 40 * 24 * HOUR
    calls = make_calls(random.Random(23), 80, start=old, spread=3 * HOUR)
    with fan_out_without(store, "call_rollup_hour_mv"):
        Writer(store).write(project_id, calls=calls)
    # As if their TTL had removed the minute buckets already.
    store.command(
        "ALTER TABLE call_rollup_minute DELETE WHERE project_id = {p:String}"
        " SETTINGS mutations_sync = 2",
        {"p": project_id},
    )
    window = TimeWindow(old + 7 * MINUTE + 3, old + 2 * HOUR + 59 * NS)

    repaired = repair_rollups(store, project_id, old, old + 3 * HOUR)

    hour_keys = store.command(
        "SELECT count() FROM (SELECT DISTINCT toStartOfHour(Timestamp), service, environment,"
        " feature, request_model, response_model FROM llm_call_ledger"
        " WHERE project_id = {p:String})",
        {"p": project_id},
    )
    assert repaired == hour_keys  # hour rows only
    assert rollup_rows(store, project_id)["call_rollup_minute"] == 0
    assert_features_match_raw(store, project_id, window)
    assert repair_rollups(store, project_id, old, old + 3 * HOUR) == 0


def test_expected_values_come_from_the_views_themselves(store: Store) -> None:
    aggregating = store.query(
        "SELECT name FROM system.tables"
        " WHERE database = currentDatabase() AND engine = 'AggregatingMergeTree'"
    ).rows
    assert {name for (name,) in aggregating} == set(ROLLUPS)  # every rollup is repaired
    hour = expected_sql("call_rollup_hour")
    # The hour view over the minute view over ledger rows: the cascade, once.
    assert hour.count("toStartOfHour(bucket) AS bucket") == 1
    assert hour.count("toStartOfMinute(Timestamp) AS bucket") == 1
    assert "FROM llm_call_ledger" in hour and "FROM llm_call_changes" not in hour
    assert "FROM score_ledger" in expected_sql("score_rollup_hour")
    assert "FROM llm_call_ledger" in expected_sql("user_rollup_hour")
