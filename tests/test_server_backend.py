"""The same code and SQL on a ClickHouse server: migrations, ingest and a report.

Runs against ``TOKENTRAIL_CLICKHOUSE_URL`` when it names a server, else a
``clickhouse/clickhouse-server`` container from testcontainers; skips, saying
why, when neither is available.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tokentrail.api.routes import api_router
from tokentrail.collector.health import health_router
from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.collector.receiver import otlp_http_router
from tokentrail.collector.records import Span
from tokentrail.collector.service import open_ingest_queue, readiness
from tokentrail.schema import Store, apply_migrations, open_store
from tokentrail.schema.prices import seed_shipped_prices

pytestmark = pytest.mark.server


def _server_dsn() -> Iterator[tuple[str, Any]]:
    """The server's DSN, and its container when we started one (None for an external server)."""
    url = os.environ.get("TOKENTRAIL_CLICKHOUSE_URL", "")
    if url.startswith("http"):
        yield url, None
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
        dsn = f"http://{container.username}:{container.password}@{host}:{port}/{container.dbname}"
        yield dsn, container
    finally:
        container.stop()


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Store, Any]]:
    for dsn, container in _server_dsn():
        opened = open_store(dsn)
        apply_migrations(opened)
        seed_shipped_prices(opened)
        yield opened, container
        opened.close()


@pytest.fixture(scope="module")
def server_store(server: tuple[Store, Any]) -> Store:
    return server[0]


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


def test_the_collector_spools_while_the_server_is_unreachable_and_drains_after(
    server: tuple[Store, Any], project_id: str, tmp_path: Path
) -> None:
    store, container = server
    if container is None:
        pytest.skip("needs a ClickHouse container to pause; TOKENTRAIL_CLICKHOUSE_URL is external")
    pipeline = IngestPipeline(store)
    queue = open_ingest_queue(store, pipeline, tmp_path / "spool", 1024**3)
    app = FastAPI()
    app.include_router(otlp_http_router(queue.submit, lambda: project_id))
    app.include_router(health_router(readiness(store, queue)))
    client = TestClient(app)
    body = ExportTraceServiceRequest()
    spans = body.resource_spans.add().scope_spans.add().spans
    for number in range(1, 4):
        spans.add(name="s", trace_id=b"\x07" * 16, span_id=bytes([number]) * 8,
                  start_time_unix_nano=time.time_ns())  # fmt: skip
    protobuf = {"Content-Type": "application/x-protobuf"}
    try:
        container.get_wrapped_container().pause()
        try:
            # Frozen, the server takes connections but never answers: the write
            # times out, the export waits in the spool and is acknowledged.
            answer = client.post("/v1/traces", content=body.SerializeToString(), headers=protobuf)
            ready = client.get("/readyz")
        finally:
            container.get_wrapped_container().unpause()
        assert answer.status_code == 200
        assert ready.status_code == 503
        assert "ClickHouse store did not answer" in ready.json()["reason"]
        assert queue.drain(timeout_s=120)
    finally:
        queue.close()
    assert client.get("/readyz").status_code == 200
    [(stored,)] = store.query(
        "SELECT count() FROM spans FINAL WHERE project_id = {p:String}", {"p": project_id}
    ).rows
    assert stored == 3
