"""Bucket intervals of a timeseries request: ``1m``, ``5m``, ``1h``, ``1d`` …

Buckets start on multiples of the interval since the Unix epoch (UTC), so
hourly and daily buckets line up with the rollups' hours and a chart's days.
"""

from __future__ import annotations

from tokentrail.api.durations import seconds

# A chart has no use for more points, and each is a row to sum.
MAX_BUCKETS = 2_000


class BadInterval(ValueError):
    """The interval is malformed, or too short for the window."""


def interval_seconds(interval: str) -> int:
    """Seconds in ``interval``: whole minutes, hours or days (rollups have no finer grain)."""
    try:
        step_s = seconds(interval)
    except ValueError:
        step_s = 0
    if not step_s or step_s % 60:
        raise BadInterval(
            "interval must be a whole number of minutes, hours or days, e.g. 5m, 1h, 1d"
        )
    return step_s


def check_bucket_count(start_ns: int, end_ns: int, step_s: int, interval: str) -> None:
    """Refuse a window that would hold more than :data:`MAX_BUCKETS` buckets."""
    step_ns = step_s * 10**9
    first = start_ns - start_ns % step_ns
    buckets = -(-(end_ns - first) // step_ns)
    if buckets > MAX_BUCKETS:
        raise BadInterval(
            f"{buckets} buckets of {interval} in this window; at most {MAX_BUCKETS}: "
            "use a longer interval or a shorter window"
        )
