"""Traces: the filtered, newest-first list and one trace's span tree."""

# No `from __future__ import annotations`: FastAPI must evaluate the route
# signatures, and they name `project_dependency`, a local of the router factory.
import base64
import binascii
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from tokentrail.api import queries
from tokentrail.api.errors import invalid
from tokentrail.api.models import (
    HexTraceId,
    LlmFields,
    SpanEventOut,
    SpanNode,
    TraceDetail,
    TracePage,
    TraceSummary,
)
from tokentrail.api.scores import score_from_row, score_out
from tokentrail.api.timewindow import TimeWindow, ns_to_ms, rfc3339, time_window
from tokentrail.schema.store import Store

# --- paging ---------------------------------------------------------------------------


def encode_cursor(start_ns: int, trace_id: str) -> str:
    """Opaque to clients; the position after which the next page starts."""
    return base64.urlsafe_b64encode(f"{start_ns}:{trace_id}".encode()).decode("ascii")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        decoded = base64.urlsafe_b64decode(cursor.encode("ascii")).decode()
        start, _, trace_id = decoded.partition(":")
        start_ns = int(start)
        if not 0 <= start_ns < 2**63:  # bound as Int64; a forged value must not 500
            raise ValueError(start)
        return start_ns, trace_id
    except (ValueError, UnicodeError, binascii.Error):
        return invalid(("query", "cursor"), "cursor is not one this API returned", cursor)


# --- list -----------------------------------------------------------------------------


def _summary(row: dict[str, Any]) -> TraceSummary:
    return TraceSummary(
        trace_id=row["trace_id"],
        start_time=rfc3339(row["start_ns"]),
        duration_ms=ns_to_ms(row["duration_ns"]),
        service=row["service"],
        feature=row["feature"],
        user_id=row["user_id"],
        session_id=row["session_id"],
        llm_calls=row["llm_calls"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cost_usd=row["cost_usd"],
        status="error" if row["has_error"] else "ok",
    )


def list_traces(
    store: Store,
    project_id: str,
    window: TimeWindow,
    filters: dict[str, str],
    limit: int,
    cursor: str | None,
) -> TracePage:
    """One page, newest first; fetches one extra row to know if another page exists."""
    cursor_ns, cursor_trace_id = decode_cursor(cursor) if cursor else (window.end_ns, "")
    call_filters = ("feature", "user_id", "session_id", "model")
    params: dict[str, Any] = {
        **window.params(),
        **filters,
        "project_id": project_id,
        "filter_calls": any(filters[name] for name in call_filters),
        "cursor_ns": cursor_ns,
        "cursor_trace_id": cursor_trace_id,
        "limit": limit + 1,
    }
    rows = store.query(queries.TRACE_PAGE, params).dicts()
    items = [_summary(row) for row in rows[:limit]]
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return TracePage(
        items=items,
        next_cursor=encode_cursor(last["start_ns"], last["trace_id"]) if last else None,
    )


# --- detail ---------------------------------------------------------------------------


def _llm_fields(row: dict[str, Any]) -> LlmFields:
    ttft = row["time_to_first_token_s"]
    return LlmFields(
        **{name: row[name] for name in LlmFields.model_fields if name in row},
        latency_ms=ns_to_ms(row["duration_ns"]),
        time_to_first_token_ms=None if ttft is None else ttft * 1000,
    )


def _span_node(row: dict[str, Any], llm: LlmFields | None) -> SpanNode:
    return SpanNode(
        span_id=row["span_id"],
        parent_span_id=row["parent_span_id"],
        name=row["name"],
        kind=row["kind"],
        service=row["service"],
        start_time=rfc3339(row["start_ns"]),
        duration_ms=ns_to_ms(row["duration_ns"]),
        status=row["status"],
        status_message=row["status_message"],
        attributes=row["attributes"],
        events=[
            SpanEventOut(name=name, time=rfc3339(ns), attributes=attributes)
            for ns, name, attributes in zip(
                row["event_ns"], row["event_names"], row["event_attributes"], strict=True
            )
        ],
        llm=llm,
    )


def _reachable(roots: Iterable[SpanNode]) -> set[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node.span_id not in seen:
            seen.add(node.span_id)
            stack.extend(node.children)
    return seen


def span_tree(spans: list[SpanNode]) -> list[SpanNode]:
    """Nest spans under their parents; spans given in start order keep that order.

    A span whose parent is not in the trace (not exported, or still in flight)
    becomes a root rather than disappearing. So does one caught in a parent
    cycle, which only a broken exporter produces but must not hide spans.
    """
    by_id = {span.span_id: span for span in spans}
    roots: list[SpanNode] = []
    for span in spans:
        parent = by_id.get(span.parent_span_id)
        if parent is None or parent is span:
            roots.append(span)
        else:
            parent.children.append(span)
    reached = _reachable(roots)
    for span in spans:
        if span.span_id not in reached:
            parent = by_id[span.parent_span_id]
            parent.children = [child for child in parent.children if child is not span]
            roots.append(span)
            reached |= _reachable([span])
    return roots


def _with_logged_content(call: dict[str, Any], logged: dict[str, Any] | None) -> dict[str, Any]:
    """Fill what the span did not carry from content sent as log records."""
    if logged is None:
        return call
    return {
        **call,
        "prompt": call["prompt"] or logged["prompt"],
        "completion": call["completion"] or logged["completion"],
    }


def get_trace(store: Store, project_id: str, trace_id: str) -> TraceDetail | None:
    params = {"project_id": project_id, "trace_id": trace_id}
    span_rows = store.query(queries.TRACE_SPANS, params).dicts()
    if not span_rows:
        return None
    call_rows = store.query(queries.TRACE_CALLS, params).dicts()
    logged = {
        row["span_id"]: row for row in store.query(queries.TRACE_LOGGED_CONTENT, params).dicts()
    }
    calls = {
        row["span_id"]: _llm_fields(_with_logged_content(row, logged.get(row["span_id"])))
        for row in call_rows
    }
    scores = store.query(queries.TRACE_SCORES, params).dicts()
    return TraceDetail(
        trace_id=trace_id,
        spans=span_tree([_span_node(row, calls.get(row["span_id"])) for row in span_rows]),
        scores=[score_out(score_from_row(row)) for row in scores],
    )


# --- routes ---------------------------------------------------------------------------


def traces_router(store: Store, project_dependency: Callable[..., str]) -> APIRouter:
    router = APIRouter(tags=["traces"])

    @router.get(
        "/traces",
        response_model=TracePage,
        summary="List traces",
        description=(
            "Traces whose spans fall in [`start`, `end`), newest first. `service` matches "
            "traces with any span from that service. `feature`, `user_id`, `session_id` and "
            "`model` (request or response model) match traces with at least one LLM call "
            "meeting all of them. Page with `next_cursor`."
        ),
    )
    def get_traces(
        project_id: Annotated[str, Depends(project_dependency)],
        window: Annotated[TimeWindow, Depends(time_window)],
        service: Annotated[str, Query(description="Any span from this service.")] = "",
        feature: str = "",
        user_id: str = "",
        session_id: str = "",
        model: str = "",
        status: Literal["ok", "error"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: Annotated[str | None, Query(description="`next_cursor` of a page.")] = None,
    ) -> TracePage:
        filters = {
            "service": service,
            "feature": feature,
            "user_id": user_id,
            "session_id": session_id,
            "model": model,
            "status": status or "",
        }
        return list_traces(store, project_id, window, filters, limit, cursor)

    @router.get(
        "/traces/{trace_id}",
        response_model=TraceDetail,
        summary="One trace: span tree, LLM calls and scores",
        description=(
            "Spans nested by parent (`children`), each LLM span with its normalized call "
            "under `llm`, and the trace's scores. Spans whose parent is missing are roots."
        ),
        responses={404: {"description": "No such trace in this project."}},
    )
    def get_trace_detail(
        trace_id: Annotated[HexTraceId, Path()],
        project_id: Annotated[str, Depends(project_dependency)],
    ) -> TraceDetail:
        detail = get_trace(store, project_id, trace_id)
        if detail is None:
            raise HTTPException(404, f"trace {trace_id} not found")
        return detail

    return router
