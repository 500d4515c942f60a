"""The read API and score intake against the real embedded ClickHouse.

Fixtures are written with the collector's Writer, exactly as ingest stores them;
every test works in its own fresh project, so tests share the one chDB store.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from serving import QueueFor

from tokentrail.api.errors import install_error_handlers
from tokentrail.api.features import feature_reports
from tokentrail.api.routes import api_router
from tokentrail.api.timewindow import TimeWindow, rfc3339
from tokentrail.collector.health import health_router
from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.collector.records import LlmCall, Score, Span, SpanEvent
from tokentrail.collector.service import readiness
from tokentrail.collector.writer import Writer
from tokentrail.schema.store import Store

MS = 1_000_000
HOUR = 3_600 * 1_000 * MS
# Two hours ago: inside the default 24 h window, with room for later spans.
BASE = time.time_ns() - 2 * HOUR


def trace_id() -> str:
    return uuid.uuid4().hex


def span_id() -> str:
    return uuid.uuid4().hex[:16]


def make_span(
    trace: str,
    span: str,
    parent: str = "",
    *,
    at: int = BASE,
    ms: int = 10,
    service: str = "web",
    status: str = "Unset",
    attributes: dict[str, Any] | None = None,
    name: str = "op",
    events: list[SpanEvent] | None = None,
) -> Span:
    return Span(
        trace_id=trace,
        span_id=span,
        parent_span_id=parent,
        name=name,
        kind="Internal",
        start_time_unix_nano=at,
        end_time_unix_nano=at + ms * MS,
        attributes=attributes or {},
        resource_attributes={"service.name": service},
        status_code=status,
        events=events or [],
    )


def make_call(trace: str, span: str, *, at: int = BASE, ms: int = 10, **fields: Any) -> LlmCall:
    return LlmCall(
        trace_id=trace, span_id=span, parent_span_id="", start_time_unix_nano=at,
        duration_ns=ms * MS, **fields,
    )  # fmt: skip


def llm_trace(
    at: int = BASE, *, service: str = "web", status: str = "Unset", **call: Any
) -> tuple[str, list[Span], list[LlmCall]]:
    """A root span with one LLM child span and its call."""
    trace, root, child = trace_id(), span_id(), span_id()
    spans = [
        make_span(trace, root, at=at, ms=100, service=service),
        make_span(trace, child, root, at=at + 5 * MS, ms=50, service=service, status=status),
    ]
    status_code = "Error" if status == "Error" else "Unset"
    child_call = make_call(
        trace, child, at=at + 5 * MS, service=service, status_code=status_code, **call
    )
    return trace, spans, [child_call]


def window(start: int, end: int) -> dict[str, str]:
    return {"start": rfc3339(start), "end": rfc3339(end)}


@pytest.fixture
def writer(store: Store) -> Writer:
    return Writer(store)


def build_app(store: Store, project: str) -> FastAPI:
    def record_scores(project_id: str, scores: list[Score]) -> None:
        Writer(store).write(project_id, scores=scores)

    app = FastAPI()
    install_error_handlers(app)  # as create_app does
    app.include_router(api_router(store, lambda: project, record_scores=record_scores))
    return app


@pytest.fixture
def client(store: Store, project_id: str) -> Iterator[TestClient]:
    with TestClient(build_app(store, project_id)) as test_client:
        yield test_client


def ids(page: dict[str, Any]) -> list[str]:
    return [item["trace_id"] for item in page["items"]]


# --- trace list -----------------------------------------------------------------------


def test_list_item_summarizes_the_trace(client: TestClient, writer: Writer, project_id: str):
    trace, spans, calls = llm_trace(
        feature="chat", user_id="u1", session_id="s1", request_model="gpt-4o",
        input_tokens=120, output_tokens=30, total_cost_usd=Decimal("0.000123456789"),
        price_status="priced",
    )  # fmt: skip
    writer.write(project_id, spans, calls)

    (item,) = client.get("/api/v1/traces").json()["items"]

    assert item == {
        "trace_id": trace,
        "start_time": rfc3339(BASE),
        "duration_ms": 100.0,
        "service": "web",
        "feature": "chat",
        "user_id": "u1",
        "session_id": "s1",
        "llm_calls": 1,
        "input_tokens": 120,
        "output_tokens": 30,
        "cost_usd": 0.000123456789,
        "status": "ok",
    }


def test_list_falls_back_to_root_span_attributes(
    client: TestClient, writer: Writer, project_id: str
):
    trace, root = trace_id(), span_id()
    attributes = {"tokentrail.feature": "search", "user.id": "u9", "session.id": "s9"}
    writer.write(project_id, [make_span(trace, root, attributes=attributes)])

    (item,) = client.get("/api/v1/traces").json()["items"]

    assert (item["feature"], item["user_id"], item["session_id"]) == ("search", "u9", "s9")
    assert (item["llm_calls"], item["cost_usd"]) == (0, 0.0)


def test_a_resent_batch_is_listed_once(client: TestClient, writer: Writer, project_id: str):
    _, spans, calls = llm_trace(input_tokens=10, total_cost_usd=Decimal("0.5"))
    writer.write(project_id, spans, calls)
    writer.write(project_id, spans, calls)

    (item,) = client.get("/api/v1/traces").json()["items"]

    assert (item["llm_calls"], item["input_tokens"], item["cost_usd"]) == (1, 10, 0.5)


@pytest.fixture
def varied(writer: Writer, project_id: str) -> dict[str, str]:
    """Four traces differing in every filterable field; name → trace id."""
    made = {
        "a": llm_trace(BASE, feature="chat", user_id="u1", session_id="s1", request_model="m1"),
        "b": llm_trace(BASE + MS, service="worker", feature="chat", user_id="u2",
                       session_id="s2", request_model="m2", response_model="m2-0613"),
        "c": llm_trace(BASE + 2 * MS, status="Error", feature="summary", user_id="u1",
                       session_id="s3", request_model="m1"),
    }  # fmt: skip
    bare_trace = trace_id()
    made["d"] = (bare_trace, [make_span(bare_trace, span_id(), at=BASE + 3 * MS)], [])
    for _, spans, calls in made.values():
        writer.write(project_id, spans, calls)
    return {name: trace for name, (trace, _, _) in made.items()}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, "dcba"),
        ({"service": "worker"}, "b"),
        ({"feature": "chat"}, "ba"),
        ({"user_id": "u1"}, "ca"),
        ({"session_id": "s2"}, "b"),
        ({"model": "m1"}, "ca"),
        ({"model": "m2-0613"}, "b"),
        ({"status": "error"}, "c"),
        ({"status": "ok"}, "dba"),
        ({"feature": "chat", "user_id": "u1"}, "a"),
        ({"feature": "nothing"}, ""),
    ],
)
def test_list_filters(
    client: TestClient, varied: dict[str, str], query: dict[str, str], expected: str
):
    page = client.get("/api/v1/traces", params=query).json()

    assert ids(page) == [varied[name] for name in expected]


def test_paging_returns_every_trace_once_newest_first(
    client: TestClient, writer: Writer, project_id: str
):
    # Three traces share one start time: the cursor must still not skip or repeat.
    starts = [BASE, BASE + MS, BASE + MS, BASE + MS, BASE + 2 * MS, BASE + 3 * MS, BASE + 4 * MS]
    traces = [trace_id() for _ in starts]
    writer.write(
        project_id, [make_span(t, span_id(), at=at) for t, at in zip(traces, starts, strict=True)]
    )

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    pages = 0
    while True:
        page = client.get("/api/v1/traces", params=params).json()
        pages += 1
        seen += ids(page)
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]

    assert pages == 3
    assert sorted(seen) == sorted(traces)
    newest_first = sorted(zip(starts, traces, strict=True), reverse=True)
    assert seen == [t for _, t in newest_first]


def test_list_window(client: TestClient, writer: Writer, project_id: str):
    old, recent = trace_id(), trace_id()
    writer.write(
        project_id,
        [make_span(old, span_id(), at=BASE - 30 * HOUR), make_span(recent, span_id())],
    )

    assert ids(client.get("/api/v1/traces").json()) == [recent]
    explicit = window(BASE - 31 * HOUR, BASE - 29 * HOUR)
    assert ids(client.get("/api/v1/traces", params=explicit).json()) == [old]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"start": "yesterday"}, "start"),
        ({"end": "2024-05-01T00:00:00"}, "end"),  # no UTC offset: ambiguous
        ({"start": "2024-05-02T00:00:00Z", "end": "2024-05-01T00:00:00Z"}, "start"),
        ({"start": "2024-05-01T00:00:00Z", "end": "2024-05-01T00:00:00Z"}, "start"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"status": "broken"}, "status"),
        ({"cursor": "not-a-cursor!"}, "cursor"),
        ({"cursor": "OTk5OTk5OTk5OTk5OTk5OTk5OTk5Ojk="}, "cursor"),  # 999…9:9, past Int64
    ],
)
def test_list_rejects_bad_parameters(client: TestClient, query: dict[str, str], field: str):
    response = client.get("/api/v1/traces", params=query)

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", field]
    assert error["msg"]


# --- trace detail ---------------------------------------------------------------------


def test_detail_is_a_span_tree_with_llm_fields_and_scores(
    client: TestClient, writer: Writer, project_id: str
):
    trace, root, llm, tool, orphan = trace_id(), span_id(), span_id(), span_id(), span_id()
    event = SpanEvent(BASE + 7 * MS, "gen_ai.choice", {"index": 0})
    spans = [
        make_span(trace, root, at=BASE, ms=100, name="handle", attributes={"http.route": "/"}),
        make_span(trace, llm, root, at=BASE + 5 * MS, ms=50, name="chat gpt-4o", events=[event]),
        make_span(trace, tool, llm, at=BASE + 6 * MS, ms=5, name="tool", status="Error"),
        make_span(trace, orphan, span_id(), at=BASE + 60 * MS, name="late"),
    ]
    call = make_call(
        trace, llm, at=BASE + 5 * MS, ms=50, provider="openai", request_model="gpt-4o",
        response_model="gpt-4o-2024-08-06", operation="chat", input_tokens=100,
        output_tokens=20, cache_read_tokens=40, reasoning_tokens=5,
        input_cost_usd=Decimal("0.00025"), output_cost_usd=Decimal("0.0002"),
        total_cost_usd=Decimal("0.00045"), price_status="priced", prompt="hi",
        completion="hello", time_to_first_token_s=0.012, finish_reasons=["stop"],
        feature="chat", user_id="u1", session_id="s1",
    )  # fmt: skip
    score = Score(trace, llm, "helpful", "numeric", value=0.75, source="evaluator",
                  time_unix_nano=BASE + HOUR, score_id="sc1", feature="chat")  # fmt: skip
    writer.write(project_id, spans, [call], [score])

    response = client.get(f"/api/v1/traces/{trace.upper()}")

    assert response.status_code == 200
    detail = response.json()
    assert detail["trace_id"] == trace
    assert [s["span_id"] for s in detail["spans"]] == [root, orphan]
    (llm_node,) = detail["spans"][0]["children"]
    (tool_node,) = llm_node["children"]
    assert (llm_node["span_id"], tool_node["span_id"], tool_node["status"]) == (llm, tool, "Error")
    assert detail["spans"][0]["attributes"] == {"http.route": "/"}
    assert detail["spans"][0]["llm"] is None
    assert llm_node["start_time"] == rfc3339(BASE + 5 * MS)
    assert llm_node["duration_ms"] == 50.0
    assert llm_node["events"] == [
        {"name": "gen_ai.choice", "time": rfc3339(BASE + 7 * MS), "attributes": {"index": "0"}}
    ]
    assert llm_node["llm"] == {
        "provider": "openai",
        "request_model": "gpt-4o",
        "response_model": "gpt-4o-2024-08-06",
        "operation": "chat",
        "input_tokens": 100,
        "output_tokens": 20,
        "cache_read_tokens": 40,
        "cache_write_tokens": 0,
        "reasoning_tokens": 5,
        "input_cost_usd": 0.00025,
        "output_cost_usd": 0.0002,
        "total_cost_usd": 0.00045,
        "price_status": "priced",
        "prompt": "hi",
        "completion": "hello",
        "latency_ms": 50.0,
        "time_to_first_token_ms": 12.0,
        "finish_reasons": ["stop"],
        "error_type": "",
        "feature": "chat",
        "user_id": "u1",
        "session_id": "s1",
        "streaming": False,
        "convention": "",
        "unknown_keys": [],
        "duplicate_of": "",
    }
    assert detail["scores"] == [
        {
            "id": "sc1",
            "trace_id": trace,
            "span_id": llm,
            "name": "helpful",
            "data_type": "numeric",
            "value": 0.75,
            "string_value": "",
            "source": "evaluator",
            "comment": "",
            "feature": "chat",
            "timestamp": rfc3339(BASE + HOUR),
        }
    ]


def test_detail_keeps_spans_caught_in_a_parent_cycle(
    client: TestClient, writer: Writer, project_id: str
):
    # Only a broken exporter sends a cycle, but its spans must still be shown.
    trace, root, first, second = trace_id(), span_id(), span_id(), span_id()
    writer.write(
        project_id,
        [
            make_span(trace, root, at=BASE),
            make_span(trace, first, second, at=BASE + MS),
            make_span(trace, second, first, at=BASE + 2 * MS),
        ],
    )

    roots = client.get(f"/api/v1/traces/{trace}").json()["spans"]

    assert [span["span_id"] for span in roots] == [root, first]
    assert [span["span_id"] for span in roots[1]["children"]] == [second]


def test_detail_unknown_trace_is_404(client: TestClient):
    response = client.get(f"/api/v1/traces/{trace_id()}")

    assert response.status_code == 404
    assert "not found" in response.json()["detail"]


@pytest.mark.parametrize("bad", ["abc", "z" * 32, "0" * 33])
def test_detail_malformed_id_is_422(client: TestClient, bad: str):
    response = client.get(f"/api/v1/traces/{bad}")

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "trace_id"]


# --- features -------------------------------------------------------------------------


@pytest.fixture
def feature_data(writer: Writer, project_id: str) -> dict[str, Any]:
    """Calls of two features plus unattributed ones, with known sums."""
    # Values use all 12 decimals the schema keeps: floats would drop the smallest.
    chat_costs = [Decimal("0.000123456789"), Decimal("0.000000000001"), Decimal("1.5")]
    chat_calls = []
    for n, cost in enumerate(chat_costs):
        trace, spans, calls = llm_trace(
            BASE + n * MS, feature="chat", request_model="gpt-4o", input_tokens=100 + n,
            output_tokens=10, total_cost_usd=cost, price_status="priced", ms=(n + 1) * 100,
        )  # fmt: skip
        chat_calls.append((trace, spans, calls))
        writer.write(project_id, spans, calls)
    # Re-sent batch: must not count twice.
    writer.write(project_id, chat_calls[0][1], chat_calls[0][2])
    # An unpriced call and a failed one with a client-provided cost.
    writer.write(project_id, *llm_trace(feature="chat", request_model="mystery-1",
                                        input_tokens=7, ms=400)[1:])  # fmt: skip
    writer.write(project_id, *llm_trace(feature="chat", request_model="gpt-4o", status="Error",
                                        total_cost_usd=Decimal("0.25"), price_status="provided",
                                        ms=500)[1:])  # fmt: skip
    # A sampled call: it stands for four.
    writer.write(project_id, *llm_trace(feature="search", input_tokens=10, output_tokens=1,
                                        total_cost_usd=Decimal("0.01"), price_status="priced",
                                        sample_weight=4.0)[1:])  # fmt: skip
    writer.write(project_id, *llm_trace(total_cost_usd=Decimal("0.02"),
                                        price_status="priced")[1:])  # fmt: skip
    trace = chat_calls[0][0]
    scores = [
        Score(trace, "", "accuracy", "numeric", 0.5, feature="chat", score_id="s1",
              time_unix_nano=BASE),
        Score(trace, "", "accuracy", "numeric", 1.0, feature="chat", score_id="s2",
              time_unix_nano=BASE),
        Score(trace, "", "thumbs_up", "boolean", 1.0, "true", feature="chat", score_id="s3",
              time_unix_nano=BASE),
        Score(trace, "", "thumbs_up", "boolean", 0.0, "false", feature="chat", score_id="s4",
              time_unix_nano=BASE),
        Score(trace, "", "thumbs_up", "boolean", 1.0, "true", feature="chat", score_id="s5",
              time_unix_nano=BASE),
        Score(trace, "", "tone", "categorical", string_value="polite", feature="chat",
              score_id="s6", time_unix_nano=BASE),
        Score(trace, "", "tone", "categorical", string_value="polite", feature="chat",
              score_id="s7", time_unix_nano=BASE),
        Score(trace, "", "tone", "categorical", string_value="rude", feature="chat",
              score_id="s8", time_unix_nano=BASE),
    ]  # fmt: skip
    writer.write(project_id, scores=scores)
    writer.write(project_id, scores=scores[:1])  # re-sent
    return {"chat_costs": chat_costs}


def by_feature(client: TestClient, **params: str) -> dict[str, dict[str, Any]]:
    response = client.get("/api/v1/features", params=params)
    assert response.status_code == 200, response.text
    return {report["feature"]: report for report in response.json()["features"]}


def test_feature_aggregates(client: TestClient, feature_data: dict[str, Any]):
    reports = by_feature(client)

    assert list(reports) == ["chat", "search", ""]  # by spend
    chat = reports["chat"]
    exact_cost = sum(feature_data["chat_costs"], Decimal("0.25"))
    assert chat["cost_usd"] == float(exact_cost)
    assert chat["cost_per_call_usd"] == pytest.approx(float(exact_cost / 4))
    assert (chat["calls"], chat["errors"]) == (5, 1)
    assert (chat["input_tokens"], chat["output_tokens"]) == (100 + 101 + 102 + 7, 30)
    assert (chat["unpriced_calls"], chat["unpriced_models"]) == (1, ["mystery-1"])
    assert 100 <= chat["latency_ms"]["p50"] <= 400
    assert 400 <= chat["latency_ms"]["p95"] <= 500
    assert chat["scores"] == {
        "accuracy": {"mean": 0.75, "count": 2},
        "thumbs_up": {"mean": pytest.approx(2 / 3), "count": 3},
    }
    assert chat["labels"] == {"tone": {"polite": 2, "rude": 1}}

    search = reports["search"]
    assert (search["calls"], search["input_tokens"], search["output_tokens"]) == (4, 40, 4)
    assert search["cost_usd"] == 0.04
    assert search["cost_per_call_usd"] == 0.01
    assert reports[""]["calls"] == 1


def test_feature_cost_is_exact_decimal(store: Store, project_id: str, feature_data: dict[str, Any]):
    window_ = TimeWindow(BASE - HOUR, BASE + HOUR)

    chat = next(r for r in feature_reports(store, project_id, window_, "") if r.feature == "chat")

    assert chat.cost_usd == sum(feature_data["chat_costs"], Decimal("0.25"))


def test_feature_without_priced_calls_has_no_cost_per_call(
    client: TestClient, writer: Writer, project_id: str
):
    writer.write(project_id, *llm_trace(feature="beta", request_model="new-model")[1:])

    beta = by_feature(client)["beta"]

    assert beta["cost_per_call_usd"] is None
    assert (beta["unpriced_calls"], beta["unpriced_models"]) == (1, ["new-model"])


def test_features_filter_by_service_and_window(client: TestClient, writer: Writer, project_id: str):
    writer.write(project_id, *llm_trace(service="web", feature="chat")[1:])
    writer.write(project_id, *llm_trace(service="worker", feature="batch")[1:])
    writer.write(project_id, *llm_trace(BASE - 30 * HOUR, feature="old")[1:])

    assert list(by_feature(client, service="worker")) == ["batch"]
    assert set(by_feature(client)) == {"chat", "batch"}
    assert list(by_feature(client, **window(BASE - 31 * HOUR, BASE - 29 * HOUR))) == ["old"]


def test_features_rejects_a_reversed_window(client: TestClient):
    response = client.get("/api/v1/features", params=window(BASE, BASE - HOUR))

    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "start must be before end"


# --- project isolation ----------------------------------------------------------------


def test_other_projects_rows_are_invisible(store: Store, writer: Writer, project_id: str):
    other = uuid.uuid4().hex
    trace, spans, calls = llm_trace(feature="secret", total_cost_usd=Decimal("9"))
    writer.write(other, spans, calls, [Score(trace, "", "q", "numeric", 1.0, score_id="x")])

    with TestClient(build_app(store, project_id)) as mine:
        assert mine.get("/api/v1/traces").json()["items"] == []
        assert mine.get(f"/api/v1/traces/{trace}").status_code == 404
        assert mine.get("/api/v1/features").json()["features"] == []
    with TestClient(build_app(store, other)) as theirs:
        assert ids(theirs.get("/api/v1/traces").json()) == [trace]


# --- scores ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "data_type", "stored_value", "string_value"),
    [
        (True, "boolean", 1.0, "true"),
        (False, "boolean", 0.0, "false"),
        (1, "numeric", 1.0, ""),
        (0.25, "numeric", 0.25, ""),
        ("polite", "categorical", None, "polite"),
        ("1", "categorical", None, "1"),
    ],
)
def test_post_score_types_the_value(
    client: TestClient, value: Any, data_type: str, stored_value: Any, string_value: str
):
    body = {"trace_id": trace_id(), "name": "q", "value": value}

    response = client.post("/api/v1/scores", json=body)

    assert response.status_code == 201, response.text
    score = response.json()
    assert (score["data_type"], score["value"], score["string_value"]) == (
        data_type,
        stored_value,
        string_value,
    )
    assert len(score["id"]) == 32
    assert score["source"] == "api"


def test_posted_score_shows_in_trace_and_feature(
    client: TestClient, writer: Writer, project_id: str
):
    trace, spans, calls = llm_trace(feature="chat")
    writer.write(project_id, spans, calls)
    llm_span = calls[0].span_id
    body = {
        "trace_id": trace,
        "span_id": llm_span.upper(),
        "name": "helpful",
        "value": 0.8,
        "comment": "good answer",
        "source": "human",
    }

    posted = client.post("/api/v1/scores", json=body)

    assert posted.status_code == 201
    created = posted.json()
    assert (created["feature"], created["span_id"]) == ("chat", llm_span)
    (shown,) = client.get(f"/api/v1/traces/{trace}").json()["scores"]
    assert shown == created
    assert by_feature(client)["chat"]["scores"] == {"helpful": {"mean": 0.8, "count": 1}}


def test_reposting_a_client_id_replaces_the_score(
    client: TestClient, writer: Writer, project_id: str
):
    trace, spans, calls = llm_trace(feature="chat")
    writer.write(project_id, spans, calls)
    body = {"trace_id": trace, "name": "thumbs_up", "value": False, "id": "fb-42"}

    client.post("/api/v1/scores", json=body)
    client.post("/api/v1/scores", json={**body, "value": True})

    (score,) = client.get(f"/api/v1/traces/{trace}").json()["scores"]
    assert (score["id"], score["value"]) == ("fb-42", 1.0)
    assert by_feature(client)["chat"]["scores"]["thumbs_up"] == {"mean": 1.0, "count": 1}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"trace_id": "xyz"}, "trace_id"),
        ({"span_id": "123"}, "span_id"),
        ({"name": ""}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"value": None}, "value"),
        ({"value": {"a": 1}}, "value"),
        ({"value": 10**400}, "value"),
        ({"source": "robot"}, "source"),
        ({"id": "has space"}, "id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_post_score_rejects_bad_bodies(client: TestClient, change: dict[str, Any], field: str):
    body = {"trace_id": trace_id(), "name": "q", "value": 1, **change}

    response = client.post("/api/v1/scores", json=body)

    assert response.status_code == 422
    assert all(error["loc"][:2] == ["body", field] for error in response.json()["detail"])


@pytest.mark.parametrize("field", ["name", "comment", "value"])
def test_post_score_refuses_lone_surrogates(client: TestClient, field: str):
    body = {"trace_id": trace_id(), "name": "q", "value": "ok", field: "bad \ud800 text"}

    # Sent as JSON text: the escape is legal JSON but no Unicode string.
    response = client.post(
        "/api/v1/scores",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", field]


def test_post_score_requires_name_and_value(client: TestClient):
    response = client.post("/api/v1/scores", json={"trace_id": trace_id()})

    assert response.status_code == 422
    missing = {error["loc"][1] for error in response.json()["detail"]}
    assert missing == {"name", "value"}


# --- documentation ------------------------------------------------------------------


def test_every_route_is_documented(client: TestClient):
    schema = client.get("/openapi.json").json()

    operations = [op for path in schema["paths"].values() for op in path.values()]
    assert {"/api/v1/traces", "/api/v1/traces/{trace_id}", "/api/v1/features",
            "/api/v1/scores"} <= set(schema["paths"])  # fmt: skip
    assert all(op.get("summary") and op.get("description") for op in operations)
    cost = schema["components"]["schemas"]["TraceSummary"]["properties"]["cost_usd"]
    assert cost["type"] == "number"


# --- health ---------------------------------------------------------------------------


class _UnreachableStore(Store):
    """A store whose server is gone: every command fails as a dropped connection does."""

    def __init__(self) -> None:
        self.embedded = True  # answers pings through `command`, which fails

    def command(self, sql: str, parameters: Any = None) -> Any:
        raise ConnectionError("connection refused")


def test_health_probes(store: Store, queue_for: QueueFor):
    app = FastAPI()
    app.include_router(health_router(readiness(store, queue_for(IngestPipeline(store)))))
    with TestClient(app) as up:
        assert up.get("/healthz").json() == {"status": "ok", "reason": None}
        ready = up.get("/readyz")
    assert (ready.status_code, ready.json()["status"]) == (200, "ok")


def test_readyz_is_503_when_the_store_is_down(store: Store, queue_for: QueueFor):
    app = FastAPI()
    queue = queue_for(IngestPipeline(store))
    app.include_router(health_router(readiness(_UnreachableStore(), queue)))

    with TestClient(app) as down:
        assert down.get("/healthz").status_code == 200
        response = down.get("/readyz")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["reason"]
