"""The prices API against the real embedded ClickHouse, through the real composition root.

Calls are ingested through the same IngestPipeline the app is built with, so a
price set through the API reaches ingest exactly as it does in ``serve``.
Expected costs are worked out by hand in the comments.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from serving import QueueFor

from tokentrail.api.app import create_app
from tokentrail.api.auth import KeyRing, hash_key
from tokentrail.api.routes import api_router
from tokentrail.api.timewindow import rfc3339
from tokentrail.collector.ingest_queue import IngestQueue
from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.collector.records import Span
from tokentrail.schema import Store
from tokentrail.schema.prices import ModelPrice, insert_prices, seed_shipped_prices

D = Decimal
KEY = "tt_prices_api_test_key"
MS = 1_000_000
HOUR = 3_600 * 1_000 * MS
BASE = time.time_ns() - 2 * HOUR
# The recompute range: the hour either side of BASE.
RANGE = {"start": rfc3339(BASE - HOUR), "end": rfc3339(BASE + HOUR)}


def llm_span(
    model: str,
    input_tokens: int,
    output_tokens: int,
    *,
    provider: str = "openai",
    at: int = BASE,
    **extra: Any,
) -> Span:
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        "tokentrail.feature": "support",
        **extra,
    }
    return Span(
        trace_id=uuid.uuid4().hex, span_id=uuid.uuid4().hex[:16], parent_span_id="",
        name=f"chat {model}", kind="Client", start_time_unix_nano=at,
        end_time_unix_nano=at + 50 * MS, attributes=attributes,
        resource_attributes={"service.name": "web"},
    )  # fmt: skip


@pytest.fixture
def pipeline(store: Store) -> IngestPipeline:
    seed_shipped_prices(store)
    return IngestPipeline(store)


@pytest.fixture
def queue(queue_for: QueueFor, pipeline: IngestPipeline) -> IngestQueue:
    return queue_for(pipeline)


def client_for(
    store: Store, project_id: str, pipeline: IngestPipeline, queue: IngestQueue
) -> TestClient:
    keyring = KeyRing(store, env_keys={hash_key(KEY): project_id})
    app = create_app(store, keyring, pipeline, queue)
    return TestClient(app, headers={"Authorization": f"Bearer {KEY}"})


@pytest.fixture
def client(
    store: Store, project_id: str, pipeline: IngestPipeline, queue: IngestQueue
) -> Iterator[TestClient]:
    with client_for(store, project_id, pipeline, queue) as test_client:
        yield test_client


def put_price(client: TestClient, model: str, **body: Any) -> dict[str, Any]:
    response = client.put(f"/api/v1/prices/{model}", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def recompute(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/prices/recompute", json={**RANGE, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def support(client: TestClient) -> dict[str, Any]:
    (feature,) = client.get("/api/v1/features").json()["features"]
    assert feature["feature"] == "support"
    return {k: feature[k] for k in ("calls", "cost_usd", "unpriced_calls", "unpriced_models")}


def stored_cost(store: Store, project_id: str, span: Span) -> tuple[Decimal, str]:
    (row,) = store.query(
        "SELECT total_cost_usd, price_status FROM llm_calls FINAL "
        "WHERE project_id = {p:String} AND span_id = {s:String}",
        {"p": project_id, "s": span.span_id},
    ).rows
    return row[0], row[1]


def raw_rows(store: Store, project_id: str) -> int:
    """Stored row versions, merged or not: a write that changed nothing still adds one."""
    query = "SELECT count() FROM llm_calls WHERE project_id = {p:String}"
    return int(store.query(query, {"p": project_id}).rows[0][0])


# --- recompute -----------------------------------------------------------------------------


@pytest.fixture
def calls(pipeline: IngestPipeline, project_id: str) -> list[Span]:
    """Four calls of one feature, priced at ingest with the shipped table."""
    spans = [
        # gpt-4o-mini at $0.15 / $0.60: 2,000 x 0.15 + 1,000 x 0.60 = 900 per M
        llm_span("gpt-4o-mini", 2_000, 1_000),
        # 10,000 x 0.15 + 500 x 0.60 = 1,800 per M
        llm_span("gpt-4o-mini", 10_000, 500, at=BASE + MS),
        # a fine-tune the table does not know: unpriced
        llm_span("acme-ft", 1_000, 1_000, provider="acme", at=BASE + 2 * MS),
        # the sender's own cost wins over any table
        llm_span("gpt-4o-mini", 1_000, 1_000, at=BASE + 3 * MS, **{"gen_ai.usage.cost": 0.5}),
    ]
    pipeline.ingest(project_id, spans)
    return spans


def test_recompute_reprices_after_an_override_without_double_counting(
    client: TestClient, store: Store, project_id: str, calls: list[Span]
) -> None:
    before = {"calls": 4, "cost_usd": 0.5027, "unpriced_calls": 1, "unpriced_models": ["acme-ft"]}
    assert support(client) == before

    put_price(client, "gpt-4o-mini", provider="openai", input_per_mtok=1, output_per_mtok=2)
    put_price(client, "acme-ft", provider="acme", input_per_mtok="3", output_per_mtok="4")
    assert support(client) == before  # stored calls keep their cost until a recompute

    assert recompute(client) == {
        "examined": 4, "changed": 3, "unpriced": 0, "provided": 1, "unpriced_models": [],
    }  # fmt: skip

    # 2,000 x 1 + 1,000 x 2 = 4,000; 10,000 x 1 + 500 x 2 = 11,000;
    # 1,000 x 3 + 1,000 x 4 = 7,000 per M; plus the provided $0.50 = $0.522
    after = {"calls": 4, "cost_usd": 0.522, "unpriced_calls": 0, "unpriced_models": []}
    assert support(client) == after
    totals = store.query(
        "SELECT count(), sum(total_cost_usd) FROM llm_calls FINAL WHERE project_id = {p:String}",
        {"p": project_id},
    ).rows[0]
    assert totals == (4, D("0.522"))

    written = raw_rows(store, project_id)
    again = recompute(client)
    assert (again["examined"], again["changed"]) == (4, 0)
    assert raw_rows(store, project_id) == written  # nothing re-written
    assert support(client) == after


def test_recompute_keeps_everything_but_the_cost(
    client: TestClient, store: Store, project_id: str, calls: list[Span]
) -> None:
    query = (
        "SELECT * EXCEPT (input_cost_usd, output_cost_usd, total_cost_usd, price_status, "
        "ingested_at) FROM llm_calls FINAL WHERE project_id = {p:String} ORDER BY span_id"
    )
    rows = store.query(query, {"p": project_id}).rows
    put_price(client, "gpt-4o-mini", provider="openai", input_per_mtok=1, output_per_mtok=2)
    assert recompute(client)["changed"] == 2
    assert store.query(query, {"p": project_id}).rows == rows


def test_recompute_only_in_range_and_scope(
    client: TestClient, store: Store, project_id: str, pipeline: IngestPipeline
) -> None:
    earlier = llm_span("gpt-4o-mini", 1_000_000, 0, at=BASE - 2 * HOUR)
    inside = llm_span("gpt-4o-mini", 1_000_000, 0)
    other_model = llm_span("gpt-4o", 1_000_000, 0)
    pipeline.ingest(project_id, [earlier, inside, other_model])
    put_price(client, "gpt-4o-mini", provider="openai", input_per_mtok=1, output_per_mtok=1)
    put_price(client, "gpt-4o", provider="openai", input_per_mtok=1, output_per_mtok=1)

    assert recompute(client, model="gpt-4o-mini")["changed"] == 1
    assert recompute(client, provider="anthropic")["examined"] == 0

    assert stored_cost(store, project_id, inside) == (D(1), "priced")
    assert stored_cost(store, project_id, earlier) == (D("0.15"), "priced")  # before the range
    assert stored_cost(store, project_id, other_model) == (D("2.5"), "priced")  # another model


def test_recompute_pages_through_calls_sharing_a_timestamp(
    client: TestClient, store: Store, project_id: str, pipeline: IngestPipeline,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr("tokentrail.collector.reprice.PAGE_SIZE", 2)
    spans = [llm_span("acme-ft", 1_000_000, 0, provider="acme", at=BASE + (i // 3) * MS)
             for i in range(5)]  # fmt: skip
    pipeline.ingest(project_id, spans)
    put_price(client, "acme-ft", provider="acme", input_per_mtok=1, output_per_mtok=1)

    assert recompute(client)["changed"] == 5
    assert recompute(client)["changed"] == 0
    assert {stored_cost(store, project_id, span) for span in spans} == {(D(1), "priced")}


def test_recompute_through_an_api_without_a_pipeline(
    store: Store, project_id: str, calls: list[Span]
) -> None:
    insert_prices(store, [override(project_id, "acme-ft", "acme")])
    app = FastAPI()
    app.include_router(api_router(store, lambda: project_id, record_scores=lambda *_: None))
    with TestClient(app) as bare:
        assert recompute(bare)["changed"] == 1
    # 1,000 x 1 + 1,000 x 1 per M
    assert stored_cost(store, project_id, calls[2]) == (D("0.002"), "priced")


def override(project_id: str, model: str, provider: str) -> ModelPrice:
    return ModelPrice(
        project_id=project_id, provider=provider, model=model, effective_from=date(1970, 1, 1),
        match_pattern="", input_per_mtok=D(1), output_per_mtok=D(1), cache_read_per_mtok=None,
        cache_write_per_mtok=None, reasoning_per_mtok=None, source="test",
    )  # fmt: skip


# --- new calls use new prices --------------------------------------------------------------


def test_calls_after_a_put_use_the_new_price(
    client: TestClient, store: Store, project_id: str, pipeline: IngestPipeline
) -> None:
    put_price(client, "gpt-4o-mini", provider="openai", input_per_mtok=1, output_per_mtok=2)
    span = llm_span("gpt-4o-mini", 1_000, 1_000)
    pipeline.ingest(project_id, [span])
    # 1,000 x 1 + 1,000 x 2 per M
    assert stored_cost(store, project_id, span) == (D("0.003"), "priced")

    assert client.delete("/api/v1/prices/gpt-4o-mini").json() == {"deleted": 1}
    span = llm_span("gpt-4o-mini", 1_000, 1_000)
    pipeline.ingest(project_id, [span])
    # back to the shipped $0.15 / $0.60
    assert stored_cost(store, project_id, span) == (D("0.00075"), "priced")


@pytest.mark.parametrize(("refresh_s", "status"), [(0.0, "priced"), (3_600.0, "unpriced")])
def test_ingest_rereads_prices_changed_by_another_process(
    store: Store, project_id: str, refresh_s: float, status: str
) -> None:
    pipeline = IngestPipeline(store, price_refresh_s=refresh_s)
    insert_prices(store, [override(project_id, "acme-ft", "acme")])  # as a separate API would
    span = llm_span("acme-ft", 10, 10, provider="acme")
    pipeline.ingest(project_id, [span])
    assert stored_cost(store, project_id, span)[1] == status


def test_a_tier_set_through_the_api(
    client: TestClient, store: Store, project_id: str, pipeline: IngestPipeline
) -> None:
    tier = {"above_input_tokens": 1_000, "input_per_mtok": 10, "output_per_mtok": 20}
    stored = put_price(
        client, "long-ctx", provider="acme", input_per_mtok=1, output_per_mtok=2, tier=tier
    )
    assert stored["tier"] == {**tier, "cache_read_per_mtok": None, "cache_write_per_mtok": None,
                              "reasoning_per_mtok": None}  # fmt: skip
    short, long = (
        llm_span("long-ctx", 1_000, 10, provider="acme"),
        llm_span("long-ctx", 1_001, 10, provider="acme"),
    )
    pipeline.ingest(project_id, [short, long])
    # 1,000 x 1 + 10 x 2 = 1,020 per M; above: 1,001 x 10 + 10 x 20 = 10,210 per M
    assert stored_cost(store, project_id, short)[0] == D("0.00102")
    assert stored_cost(store, project_id, long)[0] == D("0.01021")


# --- listing -------------------------------------------------------------------------------


def listed(client: TestClient, **query: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/prices", params=query)
    assert response.status_code == 200, response.text
    prices: list[dict[str, Any]] = response.json()["prices"]
    return prices


def test_the_list_says_which_price_applies(
    client: TestClient, store: Store, pipeline: IngestPipeline, queue: IngestQueue
) -> None:
    query = {"provider": "openai", "model": "GPT-4O-MINI"}
    (shipped,) = listed(client, **query)
    assert (shipped["scope"], shipped["applies"], shipped["input_per_mtok"]) == (
        "shipped",
        True,
        0.15,
    )
    assert (shipped["cache_read_per_mtok"], shipped["source"]) == (0.075, "shipped")

    put_price(client, "gpt-4o-mini", provider="openai", input_per_mtok=1, output_per_mtok=2)
    put_price(client, "gpt-4o-mini", provider="openai", input_per_mtok=9, output_per_mtok=9,
              effective_from="2100-01-01")  # fmt: skip

    rows = listed(client, **query)
    assert [(r["scope"], r["effective_from"], r["applies"]) for r in rows] == [
        ("project", "1970-01-01", True),
        ("project", "2100-01-01", False),  # not yet
        ("shipped", "2024-07-18", False),  # overridden
    ]
    later = listed(client, **query, on="2100-06-01")
    assert [r["applies"] for r in later] == [False, True, False]
    with client_for(store, "someone-else-" + uuid.uuid4().hex, pipeline, queue) as other:
        assert [(r["scope"], r["applies"]) for r in listed(other, **query)] == [("shipped", True)]


def test_the_list_covers_the_shipped_table(client: TestClient) -> None:
    rows = listed(client)
    providers = {r["provider"] for r in rows}
    assert {"openai", "anthropic", "gcp.gemini", "mistral_ai", "deepseek", "x_ai"} <= providers
    (pro,) = listed(client, model="gemini-2.5-pro")
    assert pro["tier"]["above_input_tokens"] == 200_000


def test_unpriced_models_are_listed_until_priced(
    client: TestClient, project_id: str, calls: list[Span]
) -> None:
    unpriced = client.get("/api/v1/prices/unpriced").json()
    assert unpriced["calls"] == 1
    assert unpriced["models"] == [
        {"provider": "acme", "model": "acme-ft", "calls": 1, "last_seen": rfc3339(BASE + 2 * MS)}
    ]
    put_price(client, "acme-ft", provider="acme", input_per_mtok=1, output_per_mtok=1)
    recompute(client)
    assert client.get("/api/v1/prices/unpriced").json()["models"] == []


def test_deleting_what_is_not_there_is_404(client: TestClient) -> None:
    assert client.delete("/api/v1/prices/gpt-4o").status_code == 404  # shipped, not the project's
    put_price(client, "gpt-4o", provider="openai", input_per_mtok=1, output_per_mtok=1)
    assert client.delete("/api/v1/prices/gpt-4o", params={"provider": "azure"}).status_code == 404
    assert client.delete("/api/v1/prices/gpt-4o", params={"provider": "openai"}).status_code == 200


def test_model_names_with_slashes(client: TestClient) -> None:
    put_price(client, "meta-llama/Llama-3-70b", provider="together_ai", input_per_mtok=1,
              output_per_mtok=1)  # fmt: skip
    (row,) = listed(client, model="llama-3-70b")
    assert (row["model"], row["provider"], row["applies"]) == (
        "meta-llama/Llama-3-70b",
        "together_ai",
        True,
    )


# --- validation ----------------------------------------------------------------------------

VALID = {"provider": "openai", "input_per_mtok": 1, "output_per_mtok": 2}


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"input_per_mtok": -1}, ["body", "input_per_mtok"]),
        ({"output_per_mtok": None}, ["body", "output_per_mtok"]),
        ({"cache_read_per_mtok": "0.0000000000001"}, ["body", "cache_read_per_mtok"]),
        ({"input_per_mtok": "NaN"}, ["body", "input_per_mtok"]),
        ({"input": 1}, ["body", "input"]),
        ({"pattern": "gpt-(4"}, ["body", "pattern"]),
        ({"pattern": "(a+)+"}, ["body", "pattern"]),
        ({"effective_from": "1960-01-01"}, ["body", "effective_from"]),
        ({"tier": {"above_input_tokens": 1000}}, ["body", "tier"]),
        (
            {"tier": {"above_input_tokens": 0, "input_per_mtok": 1}},
            ["body", "tier", "above_input_tokens"],
        ),
    ],
)
def test_bad_prices_are_422_naming_the_field(
    client: TestClient, change: dict[str, Any], location: list[str]
) -> None:
    body = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    response = client.put("/api/v1/prices/gpt-4o", json=body)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == location and error["msg"]
    assert listed(client, model="gpt-4o", provider="openai")[0]["scope"] == "shipped"


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"start": RANGE["end"], "end": RANGE["start"]}, ["body", "start"]),
        ({"start": RANGE["start"]}, ["body", "end"]),
        ({**RANGE, "start": "2025-01-01T00:00:00"}, ["body", "start"]),  # no offset
        ({**RANGE, "model": 7}, ["body", "model"]),
    ],
)
def test_bad_recompute_is_422(
    client: TestClient, body: dict[str, Any], location: list[str]
) -> None:
    response = client.post("/api/v1/prices/recompute", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == location


def test_prices_need_a_key(
    store: Store, project_id: str, pipeline: IngestPipeline, queue: IngestQueue
) -> None:
    with client_for(store, project_id, pipeline, queue) as keyed:
        keyed.headers.pop("Authorization")
        assert keyed.get("/api/v1/prices").status_code == 401
        assert keyed.put("/api/v1/prices/gpt-4o", json=VALID).status_code == 401
