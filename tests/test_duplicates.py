"""One API call counted once: two instrumentations' spans of one request, in any batch order.

The rule is checked on its own first (normalize, one batch), then through the
ingest pipeline on the real embedded engine, where the two spans arrive in one
batch, child first or parent first, and the reports and SQL totals must count
the call once; then on the trace detail, which shows every span's reading.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tokentrail.api.features import feature_reports
from tokentrail.api.routes import api_router
from tokentrail.api.timewindow import TimeWindow
from tokentrail.collector.normalize import normalize
from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.collector.records import Span
from tokentrail.schema import Store
from tokentrail.schema.prices import seed_shipped_prices

NOW = time.time_ns() - 60 * 10**9
TRACE = "5b8efff798038103d269b633813fc60c"
MS = 10**6

# The ids of a three-level stack: the request handler, the genai-anthropic
# instrumentor's span around Messages.create, the anthropic SDK's own span inside.
ROOT, OUTER, INNER, THIRD = "00000000000000a1", "00000000000000b1", "00000000000000c1", "d1" * 8


def anthropic_usage(**extra: Any) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.response.model": "claude-sonnet-4-5-20250929",
        "gen_ai.usage.input_tokens": 2000,
        "gen_ai.usage.cache_read.input_tokens": 1500,
        "gen_ai.usage.output_tokens": 100,
        **extra,
    }


def make(
    span_id: str, parent: str, attributes: dict[str, Any], *, at: int = 0, ms: int = 100
) -> Span:
    return Span(
        trace_id=TRACE, span_id=span_id, parent_span_id=parent, name="s", kind="Client",
        start_time_unix_nano=NOW + at * MS, end_time_unix_nano=NOW + (at + ms) * MS,
        attributes=attributes, resource_attributes={"service.name": "svc"},
    )  # fmt: skip


def root() -> Span:
    return make(ROOT, "", {"tokentrail.feature": "support", "user.id": "u1"}, ms=1000)


def outer(**extra: Any) -> Span:
    """The instrumentor's span: response id and usage, content captured."""
    return make(
        OUTER, ROOT,
        anthropic_usage(**{"gen_ai.response.id": "msg_01", "gen_ai.input.messages": "[]", **extra}),
        at=10, ms=500,
    )  # fmt: skip


def inner(**extra: Any) -> Span:
    """The SDK's own span inside it: same response id and usage, plus http.*."""
    attributes = anthropic_usage(
        **{"gen_ai.response.id": "msg_01", "gen_ai.usage.cache_write.input_tokens": 0,
           "http.request.method": "POST", **extra}
    )  # fmt: skip
    return make(INNER, OUTER, attributes, at=11, ms=498)


def duplicates(spans: list[Span]) -> dict[str, str]:
    return {call.span_id: call.duplicate_of for call in normalize(spans)[0]}


# --- the rule, within one batch ---------------------------------------------------------


def test_same_response_id_is_one_call_and_the_innermost_is_kept() -> None:
    assert duplicates([outer(), inner()]) == {OUTER: INNER, INNER: ""}


def test_nested_span_with_the_same_usage_but_no_response_id() -> None:
    # openinference-instrumentation-openai sets no response id; stacked under the
    # official instrumentation, model family and token counts tell it is the same call.
    official = make(OUTER, ROOT, {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": "chatcmpl-1", "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 5,
    }, at=10, ms=500)  # fmt: skip
    openinference = make(INNER, OUTER, {
        "openinference.span.kind": "LLM", "llm.provider": "openai",
        "llm.model_name": "gpt-4o-mini-2024-07-18", "llm.token_count.prompt": 30,
        "llm.token_count.completion": 5,
    }, at=12, ms=490)  # fmt: skip
    assert duplicates([openinference, official]) == {OUTER: INNER, INNER: ""}


def test_nested_calls_with_different_usage_are_two_calls() -> None:
    other = inner(**{"gen_ai.response.id": "", "gen_ai.usage.output_tokens": 7})
    assert duplicates([outer(), other]) == {OUTER: "", INNER: ""}


def test_different_response_ids_are_two_calls_whatever_the_usage() -> None:
    assert duplicates([outer(), inner(**{"gen_ai.response.id": "msg_02"})]) == {
        OUTER: "",
        INNER: "",
    }


def test_a_call_under_a_tool_span_is_a_new_call() -> None:
    tool = make("00000000000000e1", OUTER, {"gen_ai.operation.name": "execute_tool"}, at=20)
    again = make(INNER, "00000000000000e1", anthropic_usage(), at=30, ms=50)
    assert duplicates([outer(**{"gen_ai.response.id": ""}), tool, again]) == {OUTER: "", INNER: ""}


def test_the_walk_passes_through_spans_that_are_not_calls() -> None:
    retry = make("00000000000000e1", OUTER, {"http.request.method": "POST"}, at=11, ms=495)
    nested = make(INNER, "00000000000000e1", anthropic_usage(), at=12, ms=490)
    assert duplicates([outer(**{"gen_ai.response.id": ""}), retry, nested]) == {
        OUTER: INNER, INNER: ""
    }  # fmt: skip


def test_zero_usage_counts_only_between_parent_and_child() -> None:
    bare = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}
    direct = [make(OUTER, ROOT, bare, at=10, ms=500), make(INNER, OUTER, bare, at=11, ms=490)]
    assert duplicates(direct) == {OUTER: INNER, INNER: ""}
    between = make("00000000000000e1", OUTER, {}, at=11, ms=495)
    apart = [direct[0], between, make(INNER, "00000000000000e1", bare, at=12, ms=490)]
    assert duplicates(apart) == {OUTER: "", INNER: ""}


def test_a_wrapper_over_several_matching_calls_is_none_of_them() -> None:
    bare = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}
    spans = [
        make(OUTER, ROOT, bare, at=10, ms=500),
        make(INNER, OUTER, bare, at=11, ms=100),
        make(THIRD, OUTER, bare, at=200, ms=100),
    ]
    assert duplicates(spans) == {OUTER: "", INNER: "", THIRD: ""}


def test_three_stacked_instrumentations_keep_the_innermost() -> None:
    third = make(THIRD, INNER, anthropic_usage(), at=12, ms=490)
    assert duplicates([outer(), inner(), third]) == {OUTER: THIRD, INNER: THIRD, THIRD: ""}


# --- through the pipeline, on the real store ----------------------------------------------


@pytest.fixture
def pipeline(store: Store) -> IngestPipeline:
    seed_shipped_prices(store)
    return IngestPipeline(store)


def stored(store: Store, project_id: str) -> dict[str, dict[str, Any]]:
    rows = store.query(
        "SELECT span_id, duplicate_of, feature, user_id, price_status, total_cost_usd"
        " FROM llm_calls FINAL WHERE project_id = {p:String}",
        {"p": project_id},
    ).dicts()
    return {row["span_id"]: row for row in rows}


def counted(store: Store, project_id: str) -> tuple[int, int, Decimal]:
    """What any report sums: calls, input tokens and cost of the counted rows."""
    ((calls, tokens, cost),) = store.query(
        "SELECT count(), sum(input_tokens), sum(total_cost_usd) FROM llm_calls FINAL"
        " WHERE project_id = {p:String} AND duplicate_of = ''",
        {"p": project_id},
    ).rows
    return calls, tokens, cost


def support_report(store: Store, project_id: str) -> Any:
    window = TimeWindow(NOW - 3600 * 10**9, NOW + 3600 * 10**9)
    (report,) = feature_reports(store, project_id, window, "")
    assert report.feature == "support"
    return report


def assert_counted_once(store: Store, project_id: str) -> None:
    rows = stored(store, project_id)
    assert {span: row["duplicate_of"] for span, row in rows.items()} == {OUTER: INNER, INNER: ""}
    assert all(row["price_status"] == "priced" for row in rows.values())
    calls, tokens, cost = counted(store, project_id)
    assert (calls, tokens) == (1, 2000)
    assert cost == rows[INNER]["total_cost_usd"] > 0
    report = support_report(store, project_id)
    assert (report.calls, report.input_tokens, report.cost_usd) == (1, 2000, cost)


BATCH_ORDERS = {
    "one batch": [[root(), outer(), inner()]],
    "child first": [[inner()], [outer()], [root()]],
    "parent first": [[root(), outer()], [inner()]],
    "each alone, parents first": [[root()], [outer()], [inner()]],
    "outer with root, child later": [[outer(), root()], [inner()]],
}


@pytest.mark.parametrize("batches", BATCH_ORDERS.values(), ids=BATCH_ORDERS.keys())
def test_two_instrumentations_count_once_in_any_batch_order(
    store: Store, project_id: str, pipeline: IngestPipeline, batches: list[list[Span]]
) -> None:
    for batch in batches:
        pipeline.ingest(project_id, batch)
    assert_counted_once(store, project_id)
    rows = stored(store, project_id)
    assert {row["feature"] for row in rows.values()} == {"support"}


def test_a_resent_batch_changes_nothing(
    store: Store, project_id: str, pipeline: IngestPipeline
) -> None:
    for batch in ([inner()], [root(), outer()], [inner()], [root(), outer()]):
        pipeline.ingest(project_id, batch)
    assert_counted_once(store, project_id)


def test_three_stacked_spans_arriving_apart(
    store: Store, project_id: str, pipeline: IngestPipeline
) -> None:
    third = make(THIRD, INNER, anthropic_usage(), at=12, ms=490)
    for batch in ([root(), outer()], [third], [inner()]):
        pipeline.ingest(project_id, batch)
    rows = stored(store, project_id)
    assert {span: row["duplicate_of"] for span, row in rows.items()} == {
        OUTER: THIRD, INNER: THIRD, THIRD: ""
    }  # fmt: skip
    assert counted(store, project_id)[:2] == (1, 2000)


def test_a_stored_call_gets_its_context_and_its_duplicate_mark_in_one_row(
    store: Store, project_id: str, pipeline: IngestPipeline
) -> None:
    # The outer call is stored without context; the batch that brings its root
    # (context) also brings the inner span (duplicate): both land in one re-write.
    pipeline.ingest(project_id, [outer()])
    pipeline.ingest(project_id, [root(), inner()])
    rows = stored(store, project_id)
    assert (rows[OUTER]["feature"], rows[OUTER]["duplicate_of"]) == ("support", INNER)
    assert rows[OUTER]["user_id"] == "u1"


def test_stored_spans_between_the_calls_are_looked_up(
    store: Store, project_id: str, pipeline: IngestPipeline
) -> None:
    between = make("00000000000000e1", OUTER, {"http.request.method": "POST"}, at=11, ms=495)
    nested = make(INNER, "00000000000000e1", anthropic_usage(), at=12, ms=490)
    pipeline.ingest(project_id, [nested, between])
    pipeline.ingest(project_id, [root(), outer(**{"gen_ai.response.id": ""})])
    assert_counted_once(store, project_id)


def test_a_stored_span_between_two_calls_of_one_batch_is_looked_up(
    store: Store, project_id: str, pipeline: IngestPipeline
) -> None:
    between = make("00000000000000e1", OUTER, {"http.request.method": "POST"}, at=11, ms=495)
    nested = make(INNER, "00000000000000e1", anthropic_usage(), at=12, ms=490)
    pipeline.ingest(project_id, [between])
    pipeline.ingest(project_id, [root(), outer(**{"gen_ai.response.id": ""}), nested])
    assert_counted_once(store, project_id)


def test_calls_of_other_traces_are_untouched(
    store: Store, project_id: str, pipeline: IngestPipeline
) -> None:
    other = Span(
        trace_id="6" * 32, span_id=INNER, parent_span_id=OUTER, name="s", kind="Client",
        start_time_unix_nano=NOW + 11 * MS, end_time_unix_nano=NOW + 509 * MS,
        attributes=anthropic_usage(**{"gen_ai.response.id": "msg_01"}),
    )  # fmt: skip
    pipeline.ingest(project_id, [other])
    pipeline.ingest(project_id, [root(), outer()])
    assert {row["duplicate_of"] for row in stored(store, project_id).values()} == {""}


# --- the trace detail ---------------------------------------------------------------------


@pytest.fixture
def client(store: Store, project_id: str) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(api_router(store, lambda: project_id, record_scores=lambda *_: None))
    with TestClient(app) as test_client:
        yield test_client


def llm_nodes(nodes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for node in nodes:
        if node["llm"]:
            found[node["span_id"]] = node["llm"]
        found.update(llm_nodes(node["children"]))
    return found


def test_trace_detail_shows_convention_unknown_keys_and_duplicates(
    client: TestClient, project_id: str, pipeline: IngestPipeline
) -> None:
    openinference = make(INNER, OUTER, {
        "openinference.span.kind": "LLM", "llm.provider": "anthropic",
        "llm.model_name": "claude-sonnet-4-5-20250929", "llm.token_count.prompt": 2000,
        "llm.token_count.completion": 100, "llm.token_count.prompt_details.cache_read": 1500,
        "llm.token_count.prompt_detail.cache_write": 0,  # misspelled by the sender
    }, at=11, ms=498)  # fmt: skip
    pipeline.ingest(project_id, [openinference])
    pipeline.ingest(project_id, [root(), outer(**{"gen_ai.usage.input_token": 2000})])

    response = client.get(f"/api/v1/traces/{TRACE}")

    assert response.status_code == 200
    calls = llm_nodes(response.json()["spans"])
    assert set(calls) == {OUTER, INNER}
    assert (calls[INNER]["convention"], calls[INNER]["duplicate_of"]) == ("openinference", "")
    assert calls[INNER]["unknown_keys"] == ["llm.token_count.prompt_detail.cache_write"]
    assert (calls[OUTER]["convention"], calls[OUTER]["duplicate_of"]) == ("otel_genai", INNER)
    assert calls[OUTER]["unknown_keys"] == ["gen_ai.usage.input_token"]
    assert calls[OUTER]["streaming"] is False
    (listed,) = client.get("/api/v1/traces", params={"start": "2000-01-01T00:00:00Z"}).json()[
        "items"
    ]
    assert (listed["llm_calls"], listed["input_tokens"]) == (1, 2000)
