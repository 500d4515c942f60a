"""Report queries over rollups and per-row edges as one statement.

A report names its dimensions, filter and grouping once; :meth:`Family.query`
composes, at import time and from constants only, a ``UNION ALL`` of the same
selection over each rollup table and over a per-row source for the edges of
the window, and sums the union. Every branch reads only the ranges its
``rollup_plan.Plan`` gives it, bound as parameters.

The per-row source is the ledger (``collector/rollup_feed.py``): the facts of
each stored row exactly as the rollups summed them, sorted by time. Raw
``scores`` are sorted by trace, so a time range of them is a scan of the
project; the ledger is a range read, and needs no ``FINAL``. Each report also
has a raw-only form over the ``*_facts`` views (``FINAL`` on the raw tables):
the same question the slow way, for tests and benchmarks.

Rollup and ledger rows are summed at read time, merged or not. Ledger rows carry
a sign (a retraction is -1) and every branch exposes one, so the sums are signed
once, outside. Groups whose stored rows were all retracted sum to zero rows and
are dropped.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokentrail.api.rollup_plan import HOUR_S, MINUTE_S, RAW, SLOTS, plan
from tokentrail.schema.store import QueryResult, Store

# The start of a row's series bucket: buckets start at origin + k·step.
BUCKET_NS = "t_ns - positiveModulo(t_ns - {origin_ns:Int64}, {step_ns:Int64})"

_ROW_TIME = ("toUnixTimestamp64Nano(Timestamp)", "Timestamp", "fromUnixTimestamp64Nano({})")
_BUCKET_TIME = (
    "toInt64(toUnixTimestamp(bucket)) * 1000000000",
    "bucket",
    "toDateTime(intDiv({}, 1000000000))",
)


def _ranges(grain: int, column: str, to_time: str) -> str:
    slots = [
        f"({column} >= {to_time.format(f'{{g{grain}_{slot}_lo:Int64}}')}"
        f" AND {column} < {to_time.format(f'{{g{grain}_{slot}_hi:Int64}}')})"
        for slot in range(SLOTS)
    ]
    return "(" + " OR ".join(slots) + ")"


@dataclass(frozen=True)
class Report:
    """One report's SQL: over rollups and ledger edges, and over the facts views only.

    The fast form exists once per set of sources a plan may use: a branch
    with nothing to read still costs a pipeline, and an aligned window
    needs no edges at all.
    """

    fast: dict[frozenset[int], str]
    raw: str
    rollups: bool  # False: the report filters on per-row columns and reads no rollup


@dataclass(frozen=True)
class Family:
    """Rollup tables of one kind by grain, with their ledger and facts view.

    ``count`` is the unweighted row count measure: zero means nothing is left.
    """

    tables: dict[int, str]
    ledger: str
    facts: str
    count: str
    sums: tuple[str, ...]
    maps: tuple[str, ...] = ()

    @property
    def grains(self) -> tuple[int, ...]:
        return tuple(sorted(self.tables, reverse=True))

    def _branch(self, source: str, grain: int, sign: str, columns: str, where: str) -> str:
        t_ns, column, to_time = _ROW_TIME if grain == RAW else _BUCKET_TIME
        return (
            f"SELECT {t_ns} AS t_ns, {sign} AS sign, {columns} FROM {source}"
            f" WHERE project_id = {{project_id:String}} AND {_ranges(grain, column, to_time)}"
            f" AND ({where})"
        )

    def _sql(self, branches: list[str], group_by: Sequence[str], tail: str) -> str:
        measures = [f"sum({name} * sign) AS {name}" for name in self.sums]
        measures += [
            f"sumMap({name}.1, arrayMap(n -> n * sign, {name}.2)) AS {name}" for name in self.maps
        ]
        union = "\n    UNION ALL\n    ".join(branches)
        return (
            f"SELECT {', '.join((*group_by, *measures))}\n"
            f"FROM (\n    {union}\n)\n"
            f"GROUP BY ALL\n"
            f"HAVING {self.count} != 0{tail}"
        )

    def query(
        self,
        dims: Sequence[str],
        group_by: Sequence[str],
        where: str = "1",
        order_by: str = "",
        limit: bool = False,
        rows_only: bool = False,
    ) -> Report:
        """A report summing every measure by ``group_by`` (expressions over ``dims``, ``t_ns``).

        ``where`` filters on columns every source has; with ``rows_only`` it may
        use any per-row column (``trace_id``) and no rollup is read. ``limit``
        adds ``LIMIT {limit:UInt32}``. Measures keep their names, so
        ``order_by`` can name them.
        """
        columns = ", ".join((*dims, *self.sums, *self.maps))
        tail = (f"\nORDER BY {order_by}" if order_by else "") + (
            "\nLIMIT {limit:UInt32}" if limit else ""
        )
        branches = {
            grain: self._branch(self.tables[grain], grain, "toInt32(1)", columns, where)
            for grain in ([] if rows_only else self.grains)
        }
        branches[RAW] = self._branch(self.ledger, RAW, "sign", columns, where)
        fast = {
            frozenset(used): self._sql([branches[g] for g in used], group_by, tail)
            for size in range(1, len(branches) + 1)
            for used in itertools.combinations(branches, size)
        }
        raw = [self._branch(self.facts, RAW, "toInt32(1)", columns, where)]
        return Report(fast, self._sql(raw, group_by, tail), not rows_only)

    def run(
        self,
        store: Store,
        report: Report,
        params: dict[str, Any],
        start_ns: int,
        end_ns: int,
        step_ns: int | None = None,
        origin_ns: int | None = None,
        rollups: bool = True,
    ) -> QueryResult:
        """Run ``report`` over ``[start_ns, end_ns)``; ``rollups=False`` reads raw rows only.

        Raw only answers the same question the slow way: the reference tests
        and benchmarks compare with.
        """
        grains = self.grains if rollups and report.rollups else ()
        step = step_ns or (end_ns - start_ns)
        origin = start_ns if origin_ns is None else origin_ns
        chosen = plan(start_ns, end_ns, grains, step, origin)
        bound = {**params, **chosen.params(self.grains), "step_ns": step, "origin_ns": origin}
        # An empty window reads nothing; any variant says so.
        used = frozenset(chosen.ranges) or frozenset({RAW})
        return store.query(report.fast[used] if rollups else report.raw, bound)


_CALL_SUMS = (
    "stored_calls", "calls", "errors", "tokens_in", "tokens_out", "tokens_cache_read",
    "tokens_cache_write", "tokens_reasoning", "cost", "priced_cost", "priced_calls",
    "unpriced_calls",
)  # fmt: skip
CALLS = Family(
    tables={HOUR_S: "call_rollup_hour", MINUTE_S: "call_rollup_minute"},
    ledger="llm_call_ledger",
    facts="llm_call_facts",
    count="stored_calls",
    sums=_CALL_SUMS,
    maps=("unpriced_models", "latency"),
)
USERS = Family(
    tables={HOUR_S: "user_rollup_hour"},
    ledger="llm_call_ledger",
    facts="llm_call_facts",
    count="stored_calls",
    sums=("stored_calls", "calls", "errors", "tokens_in", "tokens_out", "cost"),
)
SCORES = Family(
    tables={HOUR_S: "score_rollup_hour", MINUTE_S: "score_rollup_minute"},
    ledger="score_ledger",
    facts="score_facts",
    count="scores",
    sums=("scores", "value_sum"),
)
