"""Durations as people write them in query strings and rules: ``30s``, ``15m``, ``1h``, ``7d``.

One parser for every endpoint that takes a length of time (timeseries
intervals, drift windows, alert windows), so they all accept the same spelling.
"""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")


def seconds(text: str) -> int:
    """Seconds in ``text``; raises ValueError with the accepted forms."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration: write e.g. 30s, 15m, 1h or 7d")
    return int(match[1]) * _UNITS[match[2]]


def text(length_s: int) -> str:
    """The shortest spelling of ``length_s``: 3600 → ``1h``, 90 → ``90s``."""
    for unit in ("d", "h", "m"):
        if length_s % _UNITS[unit] == 0:
            return f"{length_s // _UNITS[unit]}{unit}"
    return f"{length_s}s"
