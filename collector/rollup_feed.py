"""Moves the rollups by exactly what a write changed, however often a row is written.

``llm_calls`` and ``scores`` take the same row again and again: a retried batch,
a late parent resolving the feature, a call found to repeat another, a price
recompute. The raw tables collapse the versions (ReplacingMergeTree); rollups
are sums and cannot, so they must only ever see differences.

After the writer stores raw rows it calls :func:`settle_calls` /
:func:`settle_scores` with them. One ``INSERT … SELECT`` compares, for those
rows, their facts as now stored (``*_facts`` views: what a row contributes) with
the facts the rollups already hold (``*_ledger``), and inserts the difference
into ``*_changes``: facts equal on both sides cancel (a retry moves nothing), a
re-written row gives its old facts with sign -1 and its new ones with +1, a call
that became a duplicate has no facts any more and gives -1. Materialized views
fan the changes out to the ledger and every rollup within that one INSERT.

Why a ledger rather than the brief's "compare with the stored row before
inserting": the raw insert and the rollup insert are two statements, and a
batch can fail between them and be sent again. Comparing with the previous raw
row, the retry finds its rows already stored, identical, and the rollups never
get them; comparing before and writing the rollups first, a retry adds them
twice. Comparing with what the rollups hold, a retry settles whatever the
failed attempt left undone, and any later write of a row heals it.

Limits: in one process, settling is serialized by a lock (two settles of one
row at once would both see the old ledger and both apply the change). Several
collector processes against one ClickHouse server can still race that way on
the same row; the damage is confined to that row's facts, the next write of the
row corrects it, and :func:`reconcile` over a window corrects everything in it.
The ledger's own fan-out is one INSERT but not a transaction: a server error
inside one materialized view can leave that view behind; :func:`reconcile`
repairs that too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from tokentrail.collector.records import LlmCall, Score
from tokentrail.schema.store import Store

NS = 10**9
DAY_NS = 86_400 * NS
# Rows settled per statement. A statement costs tens of milliseconds however few
# rows it settles, so one merged ingest write (thousands of calls) should take
# one; the bound keeps the id lists and the FINAL read of one statement modest.
_CHUNK = 10_000

# Held while settling, and by rollup repair, so the two never interleave in one process.
SETTLING = threading.Lock()


def _settle_sql(facts: str, ledger: str, changes: str, where: str, having: str = "true") -> str:
    """The difference between stored facts and ledger, for the rows ``where`` and ``having`` pick.

    ``having`` tests only columns of the facts, which are the grouping keys, so
    it picks the same rows as it would in ``where``; it is for tests that cost
    more on every row read than once per group.
    """
    # The ledger holds signed facts; a facts row and its ledger entry land in one
    # group and cancel. Column order matches by construction: `*_changes` and
    # `*_ledger` were created from `SELECT *` of the facts view (0005_rollups.sql).
    return f"""
INSERT INTO {changes}
SELECT * EXCEPT s, toInt32(sum(s)) AS sign
FROM (
    SELECT *, toInt32(1) AS s FROM {facts} WHERE {where}
    UNION ALL
    SELECT * EXCEPT (sign, facts_hash), -sign AS s FROM {ledger} WHERE {where}
)
GROUP BY ALL
HAVING sign != 0 AND {having}
"""


# Raw calls are unique per (project, second, trace, span): whole seconds bound
# the batch so every stored version of its rows is in range.
_CALL_TIME = (
    "project_id = {project_id:String}"
    " AND Timestamp >= fromUnixTimestamp64Nano({lo_ns:Int64})"
    " AND Timestamp < fromUnixTimestamp64Nano({hi_ns:Int64})"
)
# The batch's trace ids pick the rows to read (bloom filters serve them); its
# span ids are tested on the groups: testing them on every row read, of both
# sides, made settling thousands of calls ~15 % dearer.
_CALL_TRACES = _CALL_TIME + " AND trace_id IN {trace_ids:Array(String)}"
_CALL_SPANS = "span_id IN {span_ids:Array(String)}"
# Scores are unique per (project, trace, score id) whatever their time.
_SCORE_ROWS = (
    "project_id = {project_id:String}"
    " AND trace_id IN {trace_ids:Array(String)} AND score_id IN {score_ids:Array(String)}"
)
_SCORE_TIME = _CALL_TIME

_CALLS = ("llm_call_facts", "llm_call_ledger", "llm_call_changes")
_SCORES = ("score_facts", "score_ledger", "score_changes")
SETTLE_CALLS = _settle_sql(*_CALLS, _CALL_TRACES, _CALL_SPANS)
SETTLE_SCORES = _settle_sql(*_SCORES, _SCORE_ROWS)
RECONCILE_CALLS = _settle_sql(*_CALLS, _CALL_TIME)
RECONCILE_SCORES = _settle_sql(*_SCORES, _SCORE_TIME)


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def settle_calls(store: Store, project_id: str, calls: Sequence[LlmCall]) -> None:
    """Bring the rollups in line with the stored versions of ``calls``."""
    ordered = sorted(calls, key=lambda call: call.start_time_unix_nano)
    for chunk in _chunks(ordered):
        params = {
            "project_id": project_id,
            "lo_ns": chunk[0].start_time_unix_nano // NS * NS,
            "hi_ns": (chunk[-1].start_time_unix_nano // NS + 1) * NS,
            "trace_ids": sorted({call.trace_id for call in chunk}),
            "span_ids": sorted({call.span_id for call in chunk}),
        }
        with SETTLING:
            store.command(SETTLE_CALLS, params)


def settle_scores(store: Store, project_id: str, scores: Sequence[Score]) -> None:
    """Bring the rollups in line with the stored versions of ``scores``."""
    for chunk in _chunks(scores):
        params = {
            "project_id": project_id,
            "trace_ids": sorted({score.trace_id for score in chunk}),
            "score_ids": sorted({score.score_id for score in chunk}),
        }
        with SETTLING:
            store.command(SETTLE_SCORES, params)


def reconcile(store: Store, project_id: str, start_ns: int, end_ns: int) -> None:
    """Settle every call and score of ``[start_ns, end_ns)``, a day per statement.

    For rows written around the writer (a bulk load straight into ``llm_calls``),
    and to repair what the module docstring's limits describe. Bounds are taken
    to whole seconds, as rows are unique per second. Idempotent.
    """
    lo = start_ns // NS * NS
    end = -(-end_ns // NS) * NS
    while lo < end:
        hi = min(lo + DAY_NS, end)
        params = {"project_id": project_id, "lo_ns": lo, "hi_ns": hi}
        with SETTLING:
            store.command(RECONCILE_CALLS, params)
            store.command(RECONCILE_SCORES, params)
        lo = hi
