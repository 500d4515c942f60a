"""Summed call measures as reports show them: rates, cost per call, latency percentiles.

One reading of a ``rollup_read.CALLS`` row for every report (features, models,
metric series), so they cannot disagree on what "cost per call" means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tokentrail.api.models import Latency

# sumMap columns arrive as (keys, values).
Counts = tuple[Sequence[Any], Sequence[int]]


def quantile(histogram: Counts, level: float) -> float | None:
    """The ``level`` quantile of values given as value → count, interpolated between ranks.

    Interpolates like ClickHouse's ``quantile`` does between its samples: rank
    ``level · (n - 1)`` in the sorted values. Non-positive counts (a bucket
    whose calls were retracted) hold nothing.
    """
    pairs = sorted((value, count) for value, count in zip(*histogram, strict=True) if count > 0)
    total = sum(count for _, count in pairs)
    if not total:
        return None
    rank = level * (total - 1)
    below = math.floor(rank)
    fraction = rank - below
    return _at(pairs, below) * (1 - fraction) + _at(pairs, min(below + 1, total - 1)) * fraction


def _at(pairs: list[tuple[Any, int]], index: int) -> float:
    """The value at 0-based ``index`` of the values laid out by their counts."""
    seen = 0
    for value, count in pairs:
        seen += count
        if index < seen:
            return float(value)
    raise IndexError(index)


@dataclass(frozen=True)
class CallTotals:
    """Measures of a set of calls; counts are weighted by sample weight."""

    calls: float
    errors: float
    input_tokens: float
    output_tokens: float
    cost: Decimal
    priced_cost: Decimal
    priced_calls: float
    unpriced_calls: float
    unpriced_models: list[str]
    latency_ns: Counts

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CallTotals:
        models, counts = row["unpriced_models"]
        return cls(
            calls=row["calls"],
            errors=row["errors"],
            input_tokens=row["tokens_in"],
            output_tokens=row["tokens_out"],
            cost=row["cost"],
            priced_cost=row["priced_cost"],
            priced_calls=row["priced_calls"],
            unpriced_calls=row["unpriced_calls"],
            unpriced_models=sorted(m for m, n in zip(models, counts, strict=True) if n > 0),
            latency_ns=row["latency"],
        )

    @classmethod
    def empty(cls) -> CallTotals:
        return cls(0.0, 0.0, 0.0, 0.0, Decimal(0), Decimal(0), 0.0, 0.0, [], ((), ()))

    def cost_per_call(self) -> Decimal | None:
        """Priced and provided calls only: an unpriced call is not a $0 call."""
        if not self.priced_calls:
            return None
        # repr keeps the float's shortest exact-looking digits (0.1 stays 0.1).
        return self.priced_cost / Decimal(repr(self.priced_calls))

    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    def latency_ms(self, level: float) -> float | None:
        ns = quantile(self.latency_ns, level)
        return None if ns is None else ns / 1e6

    def report_fields(self) -> dict[str, Any]:
        """The fields every call report (per feature, per model) shows alike."""
        return {
            "calls": estimate(self.calls),
            "errors": estimate(self.errors),
            "input_tokens": estimate(self.input_tokens),
            "output_tokens": estimate(self.output_tokens),
            "cost_usd": self.cost,
            "cost_per_call_usd": self.cost_per_call(),
            "unpriced_calls": estimate(self.unpriced_calls),
            "latency_ms": Latency(p50=self.latency_ms(0.5), p95=self.latency_ms(0.95)),
        }


def estimate(weighted: float) -> int:
    # Weighted counts are estimates; 3 * (1 / 0.3) must read 10, not 9.
    return round(weighted)
