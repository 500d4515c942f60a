"""The API query behind an alert: where a person clicks to see the numbers."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from tokentrail.api.alerts.models import RuleScope
from tokentrail.api.durations import text
from tokentrail.api.timewindow import rfc3339


def query_link(
    base: str, metric: str, scope: RuleScope, start_ns: int, end_ns: int, step_s: int
) -> str:
    """The feature's timeseries over the evaluated span, else the per-feature report.

    Timeseries buckets start on multiples of ``step_s`` since the epoch, so they
    show the same span as the evaluated windows, not cut at the same instants.

    ``base`` is the server's public URL (``TOKENTRAIL_PUBLIC_URL``); without it the
    link is a path, since the evaluator cannot know how clients reach the API.
    """
    query = {"start": rfc3339(start_ns), "end": rfc3339(end_ns)}
    if scope.service:
        query["service"] = scope.service
    if not scope.feature:
        # No single feature (all of them, or the calls without one): the report
        # lists every feature, the no-feature bucket included.
        return f"{base.rstrip('/')}/api/v1/features?{urlencode(query)}"
    # The timeseries takes no model filter: a model-scoped rule links to its feature.
    query.update(metric=metric, interval=text(step_s))
    path = f"/api/v1/features/{quote(scope.feature, safe='')}/timeseries"
    return f"{base.rstrip('/')}{path}?{urlencode(query)}"
