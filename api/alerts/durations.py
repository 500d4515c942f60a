"""Durations as people write them in rules: ``30s``, ``15m``, ``1h``, ``7d``.

Rules keep the text the user wrote (it reads back as sent); the evaluator asks
for seconds.
"""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")
MINUTE = 60
MAX_WINDOW_S = 31 * 86_400


def seconds(text: str) -> int:
    """Seconds in ``text``; raises ValueError with the accepted forms."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration: write e.g. 30s, 15m, 1h or 7d")
    return int(match[1]) * _UNITS[match[2]]


def check_window(text: str) -> str:
    """A metric window: whole minutes, 1m to 31d.

    Whole minutes because the evaluator aligns windows to the minute (see
    ``conditions.evaluation_end``), so minute rollups can answer them exactly.
    """
    length = seconds(text)
    if length % MINUTE or not MINUTE <= length <= MAX_WINDOW_S:
        raise ValueError(f"window {text!r} must be whole minutes between 1m and 31d")
    return text.strip()


def check_interval(text: str) -> str:
    """A renotify interval: at least a minute, the evaluator's finest step."""
    if seconds(text) < MINUTE:
        raise ValueError(f"interval {text!r} must be at least 1m")
    return text.strip()


def text(length_s: int) -> str:
    """The shortest spelling of ``length_s``: 3600 → ``1h``, 90 → ``90s``."""
    for unit in ("d", "h", "m"):
        if length_s % _UNITS[unit] == 0:
            return f"{length_s // _UNITS[unit]}{unit}"
    return f"{length_s}s"
