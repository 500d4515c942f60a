"""Which source answers which part of a report window.

A window rarely falls on bucket boundaries, yet reports must be exact for any
window (a test or a user picks 10:17:03 to 14:02:59). Whole hours come from the
hourly rollup, whole minutes around them from the minute rollup, and the
seconds left at either end from raw rows, so raw reads stay under a minute at
each edge and every number is the one the raw rows give.

A grain is used only where no bucket of the requested series starts inside one
of its buckets (a 90-minute series cannot take hourly rows), and the minute
grain only well inside its retention.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

NS = 10**9
HOUR_S = 3_600
MINUTE_S = 60
RAW = 0  # the grain of raw rows: none
# Kept in step with `TTL bucket + INTERVAL 15 DAY` of the minute rollups
# (schema/migrations/0005_rollups.sql). Rows expire on merges, at any time after
# that age, so a day of slack keeps reads clear of half-expired buckets.
MINUTE_RETENTION_S = 15 * 86_400
MINUTE_SAFE_S = MINUTE_RETENTION_S - 86_400  # read (and repaired) only this far back
# Every source gets this many ranges: at most two edges per grain (see split).
SLOTS = 2

Range = tuple[int, int]


@dataclass(frozen=True)
class Plan:
    """Half-open ns ranges per grain in seconds (``RAW`` for raw rows); disjoint, covering."""

    ranges: dict[int, list[Range]]

    def params(self, grains: Sequence[int]) -> dict[str, int]:
        """Query parameters ``g{grain}_{slot}_lo/hi`` for ``grains`` and raw; unused slots empty."""
        params: dict[str, int] = {}
        for grain in (*grains, RAW):
            ranges = self.ranges.get(grain, [])
            if len(ranges) > SLOTS:
                raise AssertionError(f"{len(ranges)} ranges for grain {grain}")
            for slot in range(SLOTS):
                lo, hi = ranges[slot] if slot < len(ranges) else (0, 0)
                params[f"g{grain}_{slot}_lo"] = lo
                params[f"g{grain}_{slot}_hi"] = hi
        return params


def _split(lo: int, hi: int, grains: Sequence[int]) -> dict[int, list[Range]]:
    """Cover ``[lo, hi)`` with whole buckets of the coarsest grain, the rest recursively."""
    if lo >= hi:
        return {}
    if not grains:
        return {RAW: [(lo, hi)]}
    step = grains[0] * NS
    inner_lo, inner_hi = -(-lo // step) * step, hi // step * step
    if inner_lo >= inner_hi:
        return _split(lo, hi, grains[1:])
    ranges: dict[int, list[Range]] = {grains[0]: [(inner_lo, inner_hi)]}
    for edge in (_split(lo, inner_lo, grains[1:]), _split(inner_hi, hi, grains[1:])):
        for grain, found in edge.items():
            ranges.setdefault(grain, []).extend(found)
    return ranges


def _fits(grain: int, start_ns: int, end_ns: int, step_ns: int, origin_ns: int) -> bool:
    """True when no series bucket boundary inside the window cuts a ``grain`` bucket."""
    g = grain * NS
    if step_ns % g == 0 and origin_ns % g == 0:
        return True
    # Otherwise only a window holding no boundary at all (one bucket) is safe.
    first_boundary = start_ns + (origin_ns - start_ns) % step_ns
    if first_boundary == start_ns:
        first_boundary += step_ns
    return first_boundary >= end_ns


def plan(
    start_ns: int,
    end_ns: int,
    grains: Sequence[int],
    step_ns: int | None = None,
    origin_ns: int | None = None,
    now_ns: int | None = None,
) -> Plan:
    """Ranges of ``[start_ns, end_ns)`` per source, for a series of ``step_ns`` from ``origin_ns``.

    ``grains``: the rollup grains the report's tables have, coarsest first; an
    empty sequence reads everything raw. Without ``step_ns`` the window is one
    bucket.
    """
    step = step_ns or (end_ns - start_ns)
    origin = start_ns if origin_ns is None else origin_ns
    now = time.time_ns() if now_ns is None else now_ns
    usable = [
        grain
        for grain in grains
        if _fits(grain, start_ns, end_ns, step, origin)
        and (grain != MINUTE_S or start_ns >= now - MINUTE_SAFE_S * NS)
    ]
    return Plan(_split(start_ns, end_ns, usable))
