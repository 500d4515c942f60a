"""One feature broken down: spend by model, and the users who spend the most.

Both read rollups with per-row facts at the window's edges (``rollup_read``). Per
user, an hourly rollup keyed by feature and user (``user_rollup_hour``) rather
than a raw scan: a month of one feature's users is a read of its user-hours,
not of every call of the project; it holds at most one row per call and far
fewer when users call a feature more than once an hour.
"""

from __future__ import annotations

from tokentrail.api.call_totals import CallTotals, estimate
from tokentrail.api.models import ModelReport, UserSpend
from tokentrail.api.rollup_read import CALLS, USERS
from tokentrail.api.timewindow import TimeWindow
from tokentrail.schema.store import Store

_ONE_FEATURE = (
    "feature = {feature:String} AND ({service:String} = '' OR service = {service:String})"
)

_BY_MODEL = CALLS.query(
    ("request_model", "response_model"),
    ("if(response_model != '', response_model, request_model) AS model",),
    _ONE_FEATURE,
    order_by="cost DESC, model",
)
_TOP_USERS = USERS.query(
    ("user_id",),
    ("user_id",),
    "feature = {feature:String}",
    order_by="cost DESC, user_id",
    limit=True,
)


def model_reports(
    store: Store,
    project_id: str,
    window: TimeWindow,
    feature: str,
    service: str = "",
    *,
    rollups: bool = True,
) -> list[ModelReport]:
    """Calls, tokens, spend and latency of ``feature`` per model, by spend."""
    params = {"project_id": project_id, "feature": feature, "service": service}
    rows = CALLS.run(store, _BY_MODEL, params, window.start_ns, window.end_ns, rollups=rollups)
    return [
        ModelReport(model=row["model"], **CallTotals.from_row(row).report_fields())
        for row in rows.dicts()
    ]


def top_users(
    store: Store,
    project_id: str,
    window: TimeWindow,
    feature: str,
    limit: int = 10,
    *,
    rollups: bool = True,
) -> list[UserSpend]:
    """The ``limit`` users of ``feature`` who spent the most; "" collects calls without a user."""
    params = {"project_id": project_id, "feature": feature, "limit": limit}
    rows = USERS.run(store, _TOP_USERS, params, window.start_ns, window.end_ns, rollups=rollups)
    return [
        UserSpend(
            user_id=row["user_id"],
            calls=estimate(row["calls"]),
            errors=estimate(row["errors"]),
            input_tokens=estimate(row["tokens_in"]),
            output_tokens=estimate(row["tokens_out"]),
            cost_usd=row["cost"],
        )
        for row in rows.dicts()
    ]
