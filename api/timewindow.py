"""The time window every report and list takes, and nanosecond timestamps.

Times travel as integer Unix nanoseconds between the API and the store: OTLP
timestamps have nanoseconds, which a Python ``datetime`` would round away.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated

from fastapi import Query
from pydantic import AwareDatetime

from tokentrail.api.errors import invalid

DEFAULT_WINDOW = timedelta(hours=24)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NS_PER_US = 1_000


def to_ns(moment: datetime) -> int:
    """Unix nanoseconds of an aware datetime, without float rounding."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * _NS_PER_US


def ns_to_ms(ns: float) -> float:
    return ns / 1_000_000


def rfc3339(ns: int) -> str:
    """``2024-05-01T12:00:00.123456789Z``: RFC 3339 UTC keeping all nine digits."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    whole = _EPOCH + timedelta(seconds=seconds)
    return f"{whole:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


@dataclass(frozen=True)
class TimeWindow:
    """Half-open ``[start_ns, end_ns)`` in Unix nanoseconds."""

    start_ns: int
    end_ns: int

    def params(self) -> dict[str, int]:
        return {"start_ns": self.start_ns, "end_ns": self.end_ns}


def time_window(
    start: Annotated[
        AwareDatetime | None,
        Query(description="RFC 3339 with a UTC offset, inclusive. Default: `end` - 24 h."),
    ] = None,
    end: Annotated[
        AwareDatetime | None,
        Query(description="RFC 3339 with a UTC offset, exclusive. Default: now."),
    ] = None,
) -> TimeWindow:
    """FastAPI dependency: the requested window, defaulting to the last 24 hours."""
    end_at = end or datetime.now(timezone.utc)
    start_at = start or end_at - DEFAULT_WINDOW
    if start_at >= end_at:
        invalid(("query", "start"), "start must be before end", start_at.isoformat())
    return TimeWindow(to_ns(start_at), to_ns(end_at))
