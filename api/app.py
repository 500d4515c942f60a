"""The HTTP server: OTLP receiver, query API and health checks in one app.

This is the composition root. Each part keeps to itself: the collector
contributes its OTLP router (feeding the ingest queue) and probes, the API its
routers, and the key ring decides the project of every request for both.
"""

from __future__ import annotations

from fastapi import FastAPI

from tokentrail import __version__
from tokentrail.api.auth import KeyRing
from tokentrail.api.errors import install_error_handlers
from tokentrail.api.routes import api_router
from tokentrail.collector.health import health_router
from tokentrail.collector.ingest_queue import IngestQueue
from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.collector.receiver import otlp_http_router
from tokentrail.collector.service import readiness
from tokentrail.collector.telemetry import metrics_router
from tokentrail.schema.store import Store


def create_app(
    store: Store, keyring: KeyRing, pipeline: IngestPipeline, queue: IngestQueue
) -> FastAPI:
    app = FastAPI(
        title="tokentrail",
        version=__version__,
        description="LLM observability: per-feature spend, quality and traces.",
    )
    install_error_handlers(app)
    project = keyring.dependency()
    app.include_router(health_router(readiness(store, queue)))
    app.include_router(metrics_router())
    app.include_router(otlp_http_router(queue.submit, project))
    app.include_router(api_router(store, project, pipeline.record_scores, price_book=pipeline))
    return app
