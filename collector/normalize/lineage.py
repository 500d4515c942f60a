"""Feature, user and session of a span, and inheriting them from ancestors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from tokentrail.collector.normalize.registry import values
from tokentrail.collector.records import LlmCall, Span


class CallContext(NamedTuple):
    feature: str
    user_id: str
    session_id: str


Ancestry = Mapping[str, tuple[str, tuple[str, str, str]]]
"""span_id → (parent_span_id, (feature, user_id, session_id)) of that span."""


def context_of(span: Span) -> CallContext:
    """A span's own feature, user and session: span attributes, then its resource's."""
    found = values(span, CallContext._fields)
    return CallContext(
        found.get("feature", ""), found.get("user_id", ""), found.get("session_id", "")
    )


def ancestry_of(spans: Iterable[Span]) -> dict[str, tuple[str, tuple[str, str, str]]]:
    return {span.span_id: (span.parent_span_id, context_of(span)) for span in spans}


def inherit_context(calls: Iterable[LlmCall], ancestry: Ancestry) -> None:
    """Fill each call's empty feature/user/session from its nearest ancestor having each.

    Walks parent links through ``ancestry`` and stops at the first span it lacks:
    skipping a missing link could take a farther ancestor's value over a nearer
    one that arrives later. A cycle (corrupt or hostile parent ids) ends the walk.
    """
    for call in calls:
        feature, user_id, session_id = call.feature, call.user_id, call.session_id
        parent, seen = call.parent_span_id, {call.span_id}
        while parent and parent not in seen and not (feature and user_id and session_id):
            entry = ancestry.get(parent)
            if entry is None:
                break
            seen.add(parent)
            parent, (up_feature, up_user, up_session) = entry
            feature, user_id, session_id = (
                feature or up_feature,
                user_id or up_user,
                session_id or up_session,
            )
        call.feature, call.user_id, call.session_id = feature, user_id, session_id
