"""Fitting recorded content into a size limit, visibly and (where possible) as valid JSON.

A content attribute is JSON (``gen_ai.input.messages`` …), and the collector and
UI parse it: cutting the JSON text anywhere would leave something nobody can
read. So the strings inside are shortened instead, the longest first, each cut
string ending in ``…[truncated N chars]`` (N = characters removed from that
string, counted after redaction), until the whole JSON text fits. Only when
the structure alone is over the limit (thousands of tiny messages) is the text
itself cut and marked, and is then no longer valid JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

# A string already cut upstream (content.py cuts huge strings before redacting
# them) ends in a marker; cutting it again adds the earlier count to the new one.
_EARLIER_CUT = re.compile(r"…\[truncated (\d+) chars\]\Z")


def truncation_marker(removed: int) -> str:
    return f"…[truncated {removed} chars]"


def dumps(value: Any) -> str:
    """The JSON text tokentrail records: UTF-8 as is, unknown objects as their str()."""
    return json.dumps(value, ensure_ascii=False, default=str)


def fit_json(value: Any, limit: int) -> str:
    """``value`` as JSON text of at most ``limit`` characters."""
    text = dumps(value)
    if len(text) <= limit:
        return text
    native = json.loads(text)  # JSON types only, so every string is reachable below
    # The JSON length only grows with the cap (a string is cut only where that
    # saves characters), so a binary search finds the largest cap that fits.
    low, high, best = 0, _longest_string(native), None
    while low <= high:
        cap = (low + high) // 2
        candidate = dumps(_capped(native, cap))
        if len(candidate) <= limit:
            best, low = candidate, cap + 1
        else:
            high = cap - 1
    return best if best is not None else cut_text(text, limit)


def fit_text(text: str, limit: int) -> str:
    """A content string of at most ``limit`` characters: JSON via :func:`fit_json`."""
    if len(text) <= limit:
        return text
    if text.lstrip()[:1] in ("[", "{"):
        try:
            return fit_json(json.loads(text), limit)
        except ValueError:
            pass  # JSON already cut by its sender: plain text from here
    return cut_text(text, limit)


def cut_text(text: str, limit: int) -> str:
    """The first characters of ``text`` and a marker, at most ``limit`` characters in all
    (unless the limit is shorter than the marker itself)."""
    keep = max(limit - len(truncation_marker(len(text))), 0)
    return text[:keep] + truncation_marker(len(text) - keep)


def _capped(value: Any, cap: int) -> Any:
    if isinstance(value, str):
        earlier = _EARLIER_CUT.search(value)
        base = value[: earlier.start()] if earlier else value
        removed = len(base) - cap
        total = removed + (int(earlier.group(1)) if earlier else 0)
        # Cut only where that saves characters, so longer caps never give shorter JSON.
        if removed > len(truncation_marker(total)):
            return base[:cap] + truncation_marker(total)
        return value
    if isinstance(value, dict):
        return {key: _capped(item, cap) for key, item in value.items()}
    if isinstance(value, list):
        return [_capped(item, cap) for item in value]
    return value


def _longest_string(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return max(map(_longest_string, value.values()), default=0)
    if isinstance(value, list):
        return max(map(_longest_string, value), default=0)
    return 0
