"""Alert history: events and their deliveries, written by the evaluator, listed by the API."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from tokentrail.api.alerts.deliver import DeliveryResult
from tokentrail.api.alerts.models import AlertEventOut, AlertPage, AlertPayload, DeliveryOut
from tokentrail.api.alerts.rules import next_version
from tokentrail.api.timewindow import rfc3339
from tokentrail.api.traces import decode_cursor, encode_cursor
from tokentrail.schema.store import Store

NS = 10**9


def record_event(store: Store, payload: AlertPayload, at_ns: int) -> None:
    store.insert_columns(
        "alert_events",
        {
            "project_id": [payload.project_id],
            "Timestamp": [at_ns],
            "event_id": [payload.event_id],
            "rule_id": [payload.rule_id],
            "state": [payload.state],
            "payload": [payload.model_dump_json()],
        },
    )


def record_deliveries(
    store: Store, project_id: str, event_id: str, results: Sequence[DeliveryResult]
) -> None:
    store.insert_columns(
        "alert_deliveries",
        {
            "project_id": [project_id] * len(results),
            "event_id": [event_id] * len(results),
            "channel": [r.channel for r in results],
            "channel_type": [r.channel_type for r in results],
            "target": [r.target for r in results],
            "status": [r.status for r in results],
            "attempts": [r.attempts for r in results],
            "http_status": [r.http_status or 0 for r in results],
            "error": [r.error for r in results],
            "finished_ns": [int(r.finished_s * NS) for r in results],
            "version": [next_version() for _ in results],
        },
    )


_EVENTS = """
SELECT toUnixTimestamp64Nano(Timestamp) AS at_ns, event_id, payload
FROM alert_events FINAL
WHERE project_id = {project_id:String}
    AND ({rule_id:String} = '' OR rule_id = {rule_id:String})
    AND ({state:String} = '' OR state = {state:String})
    AND Timestamp >= fromUnixTimestamp64Nano({start_ns:Int64})
    AND Timestamp < fromUnixTimestamp64Nano({end_ns:Int64})
    AND (toUnixTimestamp64Nano(Timestamp), event_id) < ({cursor_ns:Int64}, {cursor_id:String})
ORDER BY Timestamp DESC, event_id DESC
LIMIT {limit:UInt32}
"""

_DELIVERIES = """
SELECT event_id, channel, channel_type, target, status, attempts, http_status, error, finished_ns
FROM alert_deliveries FINAL
WHERE project_id = {project_id:String} AND has({event_ids:Array(String)}, event_id)
ORDER BY event_id, channel
"""

# Past every Int64 nanosecond: the first page starts before it.
AFTER_ALL = 2**63 - 1


def _delivery(row: dict[str, Any]) -> DeliveryOut:
    return DeliveryOut(
        channel=row["channel"],
        type=row["channel_type"],
        target=row["target"],
        status=row["status"],
        attempts=row["attempts"],
        http_status=row["http_status"] or None,
        error=row["error"],
        finished_at=rfc3339(row["finished_ns"]),
    )


def list_events(
    store: Store,
    project_id: str,
    *,
    rule_id: str = "",
    state: str = "",
    start_ns: int = 0,
    end_ns: int = AFTER_ALL,
    limit: int = 50,
    cursor: str | None = None,
) -> AlertPage:
    """One page of events, newest first, each with its deliveries."""
    cursor_ns, cursor_id = decode_cursor(cursor) if cursor else (AFTER_ALL, "")
    params = {
        "project_id": project_id,
        "rule_id": rule_id,
        "state": state,
        "start_ns": start_ns,
        "end_ns": end_ns,
        "cursor_ns": cursor_ns,
        "cursor_id": cursor_id,
        "limit": limit + 1,  # one more than asked says whether another page exists
    }
    rows = store.query(_EVENTS, params).dicts()
    page = rows[:limit]
    deliveries: dict[str, list[DeliveryOut]] = defaultdict(list)
    if page:
        ids = [row["event_id"] for row in page]
        found = store.query(_DELIVERIES, {"project_id": project_id, "event_ids": ids})
        for row in found.dicts():
            deliveries[row["event_id"]].append(_delivery(row))
    items = [
        AlertEventOut(
            **AlertPayload.model_validate_json(row["payload"]).model_dump(),
            deliveries=deliveries[row["event_id"]],
        )
        for row in page
    ]
    last = page[-1] if len(rows) > limit else None
    return AlertPage(
        items=items,
        next_cursor=encode_cursor(last["at_ns"], last["event_id"]) if last else None,
    )
