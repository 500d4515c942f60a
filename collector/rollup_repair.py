"""Brings the rollups back in line with their ledger after a partial fan-out.

The fan-out of ``*_changes`` (``schema/migrations/0005_rollups.sql``) is one
INSERT but not a transaction: a process killed between its materialized views
leaves the ledger counting a batch that some rollup never got. The ledger then
says the batch is settled, so neither a retry nor :func:`rollup_feed.reconcile`
(facts against ledger) moves that rollup again. :func:`repair_rollups` compares
each rollup with the ledger instead, bucket by bucket, and inserts the
difference: the rollups are AggregatingMergeTree sums, so a correction row sums
in, and a repaired bucket compares equal next time (a second run inserts
nothing).

What a rollup should hold is computed by the rollup's own materialized view,
taken from the shipped migrations and run over the ledger's rows instead of an
inserted block (the hourly call and score views over the minute view's result,
as they cascade): there is no second copy of the aggregation. The columns to
compare come from ``system.columns``: keys as they are, ``sum`` and ``sumMap``
aggregates as signed differences.

Minute rollups are compared only where reports read them
(``api/rollup_plan.py``): their TTL drops buckets past 15 days, and "repairing"
those would bring them back. Rows are summed across unmerged parts (no FINAL);
float sums are equal when they agree to 1e-9 of their magnitude, as summing in
another order may move the last bits.

Limits: serialized with settling in this process; a settle by another collector
process against the same server during a repair may be counted twice or not
at all for its buckets (run it again afterwards). Buckets whose ledger rows
were deleted (the ledger has no TTL; the raw tables neither) would be emptied.
"""

from __future__ import annotations

import re
import time
import weakref
from dataclasses import dataclass
from functools import cache

from tokentrail.api.rollup_plan import MINUTE_SAFE_S
from tokentrail.collector.rollup_feed import SETTLING
from tokentrail.schema.migrate import shipped_migrations
from tokentrail.schema.store import Store

NS = 10**9
MINUTE_NS = 60 * NS
HOUR_NS = 3_600 * NS
# Minute rollups are repaired only where reports read them (TTL 15 days, a day of slack).
MINUTE_SAFE_NS = MINUTE_SAFE_S * NS
# In dependency order: a correction to a minute rollup flows on to its hour
# rollup (call_rollup_hour_mv), which is compared after it.
ROLLUPS: dict[str, int] = {
    "call_rollup_minute": MINUTE_NS,
    "call_rollup_hour": HOUR_NS,
    "user_rollup_hour": HOUR_NS,
    "score_rollup_minute": MINUTE_NS,
    "score_rollup_hour": HOUR_NS,
}
FLOAT_TOLERANCE = 1e-9

_VIEW = re.compile(
    r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS\s+(SELECT\b.*)$", re.S
)
_FROM = re.compile(r"\bFROM (\w+)\b")
# Only the ledger view adds this column to the changes it stores.
_LEDGER_ROWS = """(
    SELECT * EXCEPT facts_hash FROM {ledger}
    WHERE project_id = {{project_id:String}}
        AND Timestamp >= fromUnixTimestamp64Nano({{lo_ns:Int64}})
        AND Timestamp < fromUnixTimestamp64Nano({{hi_ns:Int64}})
)"""
# Buckets overlapping [start, end): lo = start - grain, so a bucket's rows all
# lie in the ledger range [lo, end + grain), whatever the server's time zone.
_BUCKETS = (
    "bucket > fromUnixTimestamp64Nano({lo_ns:Int64})"
    " AND bucket < fromUnixTimestamp64Nano({end_ns:Int64})"
)


@cache
def _views() -> dict[str, tuple[str, str]]:
    """Target table -> (source table, SELECT) of every shipped materialized view, latest wins."""
    views: dict[str, tuple[str, str]] = {}
    for migration in shipped_migrations():
        for statement in migration.statements():
            found = _VIEW.match(statement)
            if found:
                _, target, select = found.groups()
                (source,) = _FROM.findall(select)
                views[target] = (source, select)
    return views


def expected_sql(table: str) -> str:
    """What ``table`` should hold for the ledger rows bound by ``lo_ns``/``hi_ns``, per bucket."""
    views = _views()
    source, select = views[table]
    ledgers = {src: target for target, (src, _) in views.items() if target.endswith("_ledger")}
    if source in ledgers:
        inner = _LEDGER_ROWS.format(ledger=ledgers[source])
    else:
        inner = "(" + expected_sql(source) + ")"
    return _FROM.sub(lambda _: f"FROM {inner} AS {source}", select, count=1)


@dataclass(frozen=True)
class _Repair:
    count: str  # SELECT count() of the correction rows
    insert: str  # INSERT … SELECT of them


def _repair_sql(table: str, columns: list[tuple[str, str]]) -> _Repair:
    keys, measures, tests = [], [], []
    for name, type_ in columns:
        if not type_.startswith("SimpleAggregateFunction("):
            keys.append(name)
        elif type_.startswith("SimpleAggregateFunction(sumMap,"):
            measures.append(f"sumMap({name}.1, arrayMap(n -> n * s, {name}.2)) AS d_{name}")
            tests.append(f"arrayExists(n -> n != 0, d_{name}.2)")
        elif type_.startswith("SimpleAggregateFunction(sum, Float"):
            measures.append(f"sum({name} * s) AS d_{name}")
            tests.append(f"abs(d_{name}) > {FLOAT_TOLERANCE} * sum(abs({name}))")
        elif type_.startswith("SimpleAggregateFunction(sum,"):
            measures.append(f"sum({name} * s) AS d_{name}")
            tests.append(f"d_{name} != 0")
        else:
            raise ValueError(f"{table}.{name}: cannot take a difference of {type_}")
    names = ", ".join(name for name, _ in columns)
    select = f"""
SELECT {", ".join((*keys, *measures))}
FROM (
    SELECT {names}, toInt8(1) AS s FROM ({expected_sql(table)}) WHERE {_BUCKETS}
    UNION ALL
    SELECT {names}, toInt8(-1) AS s FROM {table}
    WHERE project_id = {{project_id:String}} AND {_BUCKETS}
)
GROUP BY {", ".join(keys)}
HAVING {" OR ".join(tests)}
"""
    key_names = ", ".join((*keys, *(name for name, _ in columns if name not in keys)))
    return _Repair(
        count=f"SELECT count() FROM ({select})",
        insert=f"INSERT INTO {table} ({key_names}){select}",
    )


_STATEMENTS: weakref.WeakKeyDictionary[Store, dict[str, _Repair]] = weakref.WeakKeyDictionary()


def _statements(store: Store) -> dict[str, _Repair]:
    built = _STATEMENTS.get(store)
    if built is None:
        rows = store.query(
            "SELECT table, name, type FROM system.columns"
            " WHERE database = currentDatabase() AND table IN {tables:Array(String)}"
            " ORDER BY table, position",
            {"tables": list(ROLLUPS)},
        ).rows
        columns: dict[str, list[tuple[str, str]]] = {table: [] for table in ROLLUPS}
        for table, name, type_ in rows:
            columns[table].append((name, type_))
        built = {table: _repair_sql(table, columns[table]) for table in ROLLUPS}
        _STATEMENTS[store] = built
    return built


def repair_rollups(
    store: Store, project_id: str, start_ns: int, end_ns: int, *, now_ns: int | None = None
) -> int:
    """Make every rollup agree with the ledger on ``project_id``'s buckets overlapping
    ``[start_ns, end_ns)``; return the number of correction rows inserted.

    Minute rollups only from ``now - 14 days`` on (their TTL). Idempotent: run
    on a consistent range, it reads and inserts nothing.
    """
    statements = _statements(store)
    minute_from = (time.time_ns() if now_ns is None else now_ns) - MINUTE_SAFE_NS
    inserted = 0
    with SETTLING:
        for table, grain in ROLLUPS.items():
            start = max(start_ns, minute_from) if grain == MINUTE_NS else start_ns
            if start >= end_ns:
                continue
            params = {
                "project_id": project_id,
                "lo_ns": start - grain,
                "hi_ns": end_ns + grain,
                "end_ns": end_ns,
            }
            found = int(store.command(statements[table].count, params))
            if found:
                store.command(statements[table].insert, params)
                inserted += found
    return inserted
