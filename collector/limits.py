"""Per-span limits: how much one span may carry before the collector trims it.

A client bug (an attribute set in a loop, an event per token) must not be able
to grow one row without bound, yet a span must never be rejected for it: the
excess is dropped or truncated, and the span says so (``tokentrail.dropped_*``
attributes, a marker at the end of a truncated value) so nothing goes missing
silently. Defaults follow the OpenTelemetry SDK's own (128 attributes, events
and links per span) except the value length, which the SDK leaves unbounded:
prompts and completions live in attribute values, so it is a generous 64 KiB.

Every limit can be set through a ``TOKENTRAIL_MAX_*`` environment variable;
``0`` means "none allowed" for counts, so unset a variable to keep the default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from tokentrail.collector.records import AttributeValue

ENV_PREFIX = "TOKENTRAIL_MAX_"

DROPPED_ATTRIBUTES = "tokentrail.dropped_attributes_count"
DROPPED_EVENTS = "tokentrail.dropped_events_count"
DROPPED_LINKS = "tokentrail.dropped_links_count"


@dataclass(frozen=True)
class Limits:
    """What one request and one span may hold; see the module docstring for why."""

    request_bytes: int = 16 * 1024 * 1024  # the body as sent and after gunzip
    attributes_per_span: int = 128  # also per event and per link, as in the OTel SDK
    attribute_value_length: int = 64 * 1024  # characters of a string, bytes of a bytes value
    events_per_span: int = 128
    links_per_span: int = 128

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Limits:
        """The defaults, each overridden by ``TOKENTRAIL_MAX_<FIELD>`` when set."""
        values: dict[str, int] = {}
        for name in cls.__dataclass_fields__:
            raw = environ.get(ENV_PREFIX + name.upper(), "").strip()
            if not raw:
                continue
            try:
                values[name] = int(raw)
            except ValueError:
                raise ValueError(
                    f"{ENV_PREFIX}{name.upper()} must be an integer, got {raw!r}"
                ) from None
            if values[name] < 0:
                raise ValueError(f"{ENV_PREFIX}{name.upper()} must not be negative")
        return cls(**values)


@cache
def configured_limits() -> Limits:
    """The process's limits, read from the environment once (every transport shares them)."""
    return Limits.from_env()


def truncation_marker(cut: int, unit: str) -> str:
    """What replaces the cut-off tail, so a reader sees the value is incomplete and by how much."""
    return f"…[truncated {cut} {unit}]"


def truncate_value(value: AttributeValue, max_length: int) -> AttributeValue:
    """``value`` with every string or bytes in it cut to ``max_length``, marker appended.

    Recursive because an array or map value can hide a huge string just as well.
    """
    if isinstance(value, str):
        if len(value) <= max_length:
            return value
        return value[:max_length] + truncation_marker(len(value) - max_length, "chars")
    if isinstance(value, bytes):
        if len(value) <= max_length:
            return value
        return value[:max_length] + truncation_marker(len(value) - max_length, "bytes").encode()
    # Containers come back as the same object when nothing in them was cut, so
    # callers can tell "truncated" by identity.
    if isinstance(value, list):
        items = [truncate_value(item, max_length) for item in value]
        changed = any(new is not old for new, old in zip(items, value, strict=True))
        return items if changed else value
    if isinstance(value, dict):
        entries = {key: truncate_value(item, max_length) for key, item in value.items()}
        changed = any(entries[key] is not item for key, item in value.items())
        return entries if changed else value
    return value
