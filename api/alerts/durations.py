"""The durations a rule may hold (parsed by :mod:`tokentrail.api.durations`).

Rules keep the text the user wrote (it reads back as sent); the evaluator asks
for seconds.
"""

from __future__ import annotations

from tokentrail.api.durations import seconds

MINUTE = 60
MAX_WINDOW_S = 31 * 86_400


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
