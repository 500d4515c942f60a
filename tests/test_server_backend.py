"""The same code and SQL on a ClickHouse server: migrations, ingest and a report.

Runs against ``TOKENTRAIL_CLICKHOUSE_URL`` when it names a server, else a
``clickhouse/clickhouse-server`` container from testcontainers; skips, saying
why, when neither is available.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tokentrail.api.routes import api_router
from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.collector.records import Span
from tokentrail.schema import Store, apply_migrations, open_store
from tokentrail.schema.prices import seed_shipped_prices

pytestmark = pytest.mark.server


def _server_dsn() -> Iterator[str]:
    url = os.environ.get("TOKENTRAIL_CLICKHOUSE_URL", "")
    if url.startswith("http"):
        yield url
        return
    import docker.errors
    from testcontainers.community.clickhouse import ClickHouseContainer

    try:
        # The Docker client connects when the container object is built.
        container = ClickHouseContainer("clickhouse/clickhouse-server:25.8")
        container.start()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine to start a ClickHouse server container: {exc}")
    try:
        host, port = container.get_container_host_ip(), container.get_exposed_port(8123)
        yield f"http://{container.username}:{container.password}@{host}:{port}/{container.dbname}"
    finally:
        container.stop()


@pytest.fixture(scope="module")
def server_store() -> Iterator[Store]:
    for dsn in _server_dsn():
        opened = open_store(dsn)
        apply_migrations(opened)
        seed_shipped_prices(opened)
        yield opened
        opened.close()


def test_migrations_ingest_and_report_on_a_server(server_store: Store, project_id: str) -> None:
    assert apply_migrations(server_store) == []
    now = time.time_ns()
    span = Span(
        trace_id="5b8efff798038103d269b633813fc60c", span_id="eee19b7ec3c1b174",
        parent_span_id="", name="chat gpt-4o-mini", kind="Client",
        start_time_unix_nano=now - 10**9, end_time_unix_nano=now,
        attributes={"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 1000,
                    "gen_ai.usage.output_tokens": 100, "tokentrail.feature": "qa"},
        resource_attributes={"service.name": "svc"},
    )  # fmt: skip
    pipeline = IngestPipeline(server_store)
    pipeline.ingest(project_id, [span])
    pipeline.ingest(project_id, [span])  # a retried batch
    app = FastAPI()
    app.include_router(api_router(server_store, lambda: project_id, pipeline.record_scores))
    (feature,) = TestClient(app).get("/api/v1/features").json()["features"]
    assert (feature["feature"], feature["calls"], feature["input_tokens"]) == ("qa", 1, 1000)
    assert feature["cost_usd"] == pytest.approx(0.00021, abs=1e-12)
