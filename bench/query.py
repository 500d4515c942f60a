"""Report query latency on a large store, each against the same question on raw rows.

Loads synthetic LLM traffic (bench/synthetic.py; 10M calls over 30 days by
default) into a fresh embedded store in a temporary directory, written straight
through ``Store.insert_columns`` in large column blocks, then settled into the
rollups with ``rollup_feed.reconcile`` (the bulk path around the Writer). Then
times, in one run:

- features 24h:   the per-feature report of the last 24 hours, as the API
                  computes it (``features.feature_reports``);
- timeseries 30d: one feature's hourly cost over the 30 days
                  (``metrics.series``, what the timeseries endpoint serves);
- drift 7d:       the last 24 hours against the 7 days before, per feature
                  (``drift.report.drift_report``, what ``/api/v1/drift`` serves);

each against the same question answered by plain SQL on raw rows (below).
The two take turns, repetition by repetition, so machine drift (this box is
shared) hits both alike; figures are medians. Drift reads raw rows by design
(its tests need per-call values): its baseline is the plain plan, one
statement per metric, against its one pass per table.

Goals (issue 4): features 24h < 150 ms, drift 7d < 1 s on the 2-core machine.

Run: python bench/query.py [--rows 10000000] [--repeat 5] [--data-dir DIR]
With --data-dir the store is kept there, and reused by a later run with the
same directory (the load is skipped if it already holds calls).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import DAY_NS, FEATURES, HOUR_NS, Traffic

from tokentrail.api import metrics
from tokentrail.api.drift.report import DriftQuery, drift_report
from tokentrail.api.features import feature_reports
from tokentrail.api.timewindow import TimeWindow
from tokentrail.collector import rollup_feed
from tokentrail.schema import Store, apply_migrations, open_store

PROJECT = "bench"
DAYS = 30
BLOCK_ROWS = 250_000  # per insert: big enough for throughput, small enough for memory
SERIES_FEATURE = FEATURES[0]  # the busiest feature
GOALS_MS = {"features 24h": 150.0, "drift 7d": 1000.0}

# --- the same questions, on raw rows --------------------------------------------------

_RAW_SCOPE = """
    project_id = {project_id:String} AND duplicate_of = ''
    AND Timestamp >= fromUnixTimestamp64Nano({start_ns:Int64})
    AND Timestamp < fromUnixTimestamp64Nano({end_ns:Int64})
"""
RAW_FEATURE_CALLS = f"""
SELECT feature,
    sum(sample_weight) AS calls,
    sumIf(sample_weight, status_code = 'Error') AS errors,
    sum(input_tokens * sample_weight) AS input_tokens,
    sum(output_tokens * sample_weight) AS output_tokens,
    sum(total_cost_usd * toDecimal64(sample_weight, 6)) AS cost_usd,
    sumIf(sample_weight, price_status = 'unpriced') AS unpriced_calls,
    quantiles(0.5, 0.95)(duration_ns) AS latency_ns
FROM llm_calls FINAL WHERE {_RAW_SCOPE}
GROUP BY feature
"""
RAW_FEATURE_SCORES = """
SELECT feature, name, avg(value) AS mean, count() AS count
FROM scores FINAL
WHERE project_id = {project_id:String} AND data_type != 'categorical'
    AND Timestamp >= fromUnixTimestamp64Nano({start_ns:Int64})
    AND Timestamp < fromUnixTimestamp64Nano({end_ns:Int64})
GROUP BY feature, name
"""
RAW_SERIES = f"""
SELECT toStartOfHour(Timestamp) AS hour, sum(total_cost_usd * toDecimal64(sample_weight, 6))
FROM llm_calls FINAL WHERE {_RAW_SCOPE} AND feature = {{feature:String}}
GROUP BY hour ORDER BY hour
"""
# Drift, plainly: one statement per metric, each its own scan.
_RAW_SPLIT = "Timestamp >= fromUnixTimestamp64Nano({split_ns:Int64})"
_RAW_DRIFT_CALLS = [
    f"SELECT feature, welchTTest(toFloat64(total_cost_usd), {_RAW_SPLIT}) FROM llm_calls FINAL "
    f"WHERE {_RAW_SCOPE} AND price_status IN ('priced', 'provided') GROUP BY feature",
    f"SELECT feature, welchTTest(toFloat64(input_tokens + output_tokens), {_RAW_SPLIT}) "
    f"FROM llm_calls FINAL WHERE {_RAW_SCOPE} GROUP BY feature",
    f"SELECT feature, mannWhitneyUTest(toFloat64(duration_ns), {_RAW_SPLIT}), "
    f"quantileIf(0.95)(duration_ns, NOT {_RAW_SPLIT}), quantileIf(0.95)(duration_ns, {_RAW_SPLIT}) "
    f"FROM llm_calls FINAL WHERE {_RAW_SCOPE} GROUP BY feature",
    f"SELECT feature, {_RAW_SPLIT} AS current, count(), countIf(status_code = 'Error') "
    f"FROM llm_calls FINAL WHERE {_RAW_SCOPE} GROUP BY feature, current",
    f"""SELECT feature, welchTTest(spend, hour >= {{baseline_hours:UInt32}}) FROM (
        SELECT feature, intDiv(toUnixTimestamp64Nano(Timestamp) - {{start_ns:Int64}},
            {HOUR_NS}) AS hour, toFloat64(sum(total_cost_usd * toDecimal64(sample_weight, 6)))
            AS spend
        FROM llm_calls FINAL WHERE {_RAW_SCOPE} GROUP BY feature, hour
        ORDER BY feature, hour WITH FILL FROM 0 TO {{hours:UInt32}}
    ) GROUP BY feature""",
    f"""SELECT feature, name, welchTTest(value, {_RAW_SPLIT}) FROM scores FINAL
    WHERE project_id = {{project_id:String}} AND data_type != 'categorical'
        AND Timestamp >= fromUnixTimestamp64Nano({{start_ns:Int64}})
        AND Timestamp < fromUnixTimestamp64Nano({{end_ns:Int64}})
    GROUP BY feature, name""",
]


Total = Callable[[], "float | None"]


@dataclass(frozen=True)
class Case:
    """One question, asked both ways; each answer is reduced to a total to compare."""

    name: str
    fast: Total  # what the API runs
    raw: Total  # the same question on raw rows


def cases(store: Store, end_ns: int) -> list[Case]:
    """The three questions. Point ``fast`` at whatever the API serves them with."""
    day = TimeWindow(end_ns - DAY_NS, end_ns)
    month = TimeWindow(end_ns - DAYS * DAY_NS, end_ns)
    drift = DriftQuery(end_ns, window_hours=24, baseline_hours=7 * 24)
    hourly = (month.start_ns, month.end_ns, 3600, metrics.Scope(feature=SERIES_FEATURE))

    def raw(*statements: str, column: int | None = None, **params: Any) -> Total:
        """Run every statement; total ``column`` of the first one's rows."""

        def run() -> float | None:
            results = [store.query(sql, {"project_id": PROJECT, **params}) for sql in statements]
            return None if column is None else sum(float(r[column]) for r in results[0].rows)

        return run

    def features() -> float:
        return sum(float(r.cost_usd) for r in feature_reports(store, PROJECT, day, service=""))

    def series() -> float:
        points = metrics.series(store, PROJECT, "cost", *hourly, origin_ns=month.start_ns)
        return sum(p.value or 0.0 for p in points)

    def drifted() -> None:
        drift_report(store, PROJECT, drift)

    return [
        Case("features 24h", features, raw(RAW_FEATURE_CALLS, RAW_FEATURE_SCORES, column=5,
                                          **day.params())),
        Case("timeseries 30d", series, raw(RAW_SERIES, column=1, **month.params(),
                                          feature=SERIES_FEATURE)),
        Case("drift 7d", drifted, raw(*_RAW_DRIFT_CALLS, **drift.params(PROJECT))),
    ]  # fmt: skip


# --- load -----------------------------------------------------------------------------


def load(store: Store, rows: int, end_ns: int) -> None:
    traffic = Traffic(rows, DAYS, end_ns)
    started = time.perf_counter()
    inserting = 0.0
    scores = 0
    for calls, score_block in traffic.blocks(PROJECT, BLOCK_ROWS):
        began = time.perf_counter()
        store.insert_columns("llm_calls", calls)
        store.insert_columns("scores", score_block)
        inserting += time.perf_counter() - began
        scores += len(score_block["score_id"])
    total = time.perf_counter() - started
    print(f"loaded {rows:,} calls and {scores:,} scores over {DAYS} days in {total:.1f} s")
    print(
        f"  insert: {rows / inserting:,.0f} calls/s through Store.insert_columns "
        f"({inserting:.1f} s); with generation: {rows / total:,.0f} calls/s"
    )
    # A bulk load goes around the Writer, so the rollups are settled the way
    # rollup_feed documents for it: one reconcile over the loaded range.
    started = time.perf_counter()
    rollup_feed.reconcile(store, PROJECT, traffic.start_ns, traffic.end_ns)
    settled = time.perf_counter() - started
    print(f"  rollups settled in {settled:.1f} s ({rows / settled:,.0f} calls/s)")


def table_rows(store: Store) -> None:
    """Rows per table: shows that rollups (if any) were filled by the load."""
    found = store.query(
        "SELECT name, total_rows FROM system.tables "
        "WHERE database = currentDatabase() AND total_rows > 0 ORDER BY name"
    ).rows
    print("  tables: " + ", ".join(f"{name} {rows:,}" for name, rows in found))


# --- timing ---------------------------------------------------------------------------


def _agree(fast: float | None, raw: float | None) -> bool:
    if fast is None or raw is None:
        return True  # nothing comparable (drift answers p-values, not totals)
    return abs(fast - raw) <= 1e-6 * max(abs(raw), 1.0)


def measure(case: Case, repeat: int) -> tuple[float, float]:
    """Median ms of the fast and raw paths, alternating which goes first."""
    # The first run warms caches (the first read of a part pays for its marks)
    # and checks that both ways give the same answer: a fast path reading
    # unfilled rollups would otherwise just look fast.
    fast_total, raw_total = case.fast(), case.raw()
    if not _agree(fast_total, raw_total):
        print(f"  {case.name}: API total {fast_total} != raw total {raw_total}")
    fast: list[float] = []
    raw: list[float] = []
    for turn in range(repeat):
        pair = [(case.fast, fast), (case.raw, raw)]
        for run, samples in pair if turn % 2 == 0 else pair[::-1]:
            started = time.perf_counter()
            run()
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(fast), statistics.median(raw)


@contextmanager
def bench_store(data_dir: str | None) -> Iterator[Store]:
    with tempfile.TemporaryDirectory(prefix="tokentrail-bench-") as scratch:
        store = open_store("chdb://" + (data_dir or scratch))
        try:
            apply_migrations(store)
            yield store
        finally:
            store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data-dir", help="keep the store here (and reuse it if loaded)")
    args = parser.parse_args()
    with bench_store(args.data_dir) as store:
        stored, last_ns = store.query(
            "SELECT count(), toUnixTimestamp64Nano(max(Timestamp)) FROM llm_calls"
        ).rows[0]
        if stored:
            end_ns = (last_ns // HOUR_NS + 1) * HOUR_NS
            print(f"reusing {stored:,} stored calls in {args.data_dir}")
        else:
            # Ending at the current hour, as live data does: rollups with a TTL
            # (minute buckets) keep the recent days the reports read from them.
            end_ns = time.time_ns() // HOUR_NS * HOUR_NS
            load(store, args.rows, end_ns)
        table_rows(store)
        print(f"\n{args.repeat} repetitions each, medians")
        print(f"  {'question':<16}{'API ms':>9}{'raw ms':>9}{'speedup':>9}{'goal':>10}")
        met = True
        for case in cases(store, end_ns):
            fast, raw = measure(case, args.repeat)
            goal = GOALS_MS.get(case.name)
            met = met and (goal is None or fast < goal)
            goal_text = f"< {goal:.0f} ms" if goal else ""
            print(f"  {case.name:<16}{fast:>9.0f}{raw:>9.0f}{raw / fast:>8.2f}x{goal_text:>10}")
        print(f"\ngoals {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
