"""The HTTP server: OTLP receiver, query API and health checks in one app.

This is the composition root. Each part keeps to itself: the collector
contributes its OTLP router and ingest pipeline, the API its routers, and the
key ring decides the project of every request for both.
"""

from __future__ import annotations

from fastapi import FastAPI

from tokentrail import __version__
from tokentrail.api.auth import KeyRing
from tokentrail.api.errors import install_error_handlers
from tokentrail.api.routes import api_router, health_router
from tokentrail.collector.pipeline import IngestPipeline
from tokentrail.collector.receiver import otlp_http_router, otlp_logs_router
from tokentrail.collector.telemetry import metrics_router
from tokentrail.schema.store import Store


def create_app(store: Store, keyring: KeyRing, pipeline: IngestPipeline) -> FastAPI:
    app = FastAPI(
        title="tokentrail",
        version=__version__,
        description="LLM observability: per-feature spend, quality and traces.",
    )
    install_error_handlers(app)
    project = keyring.dependency()
    app.include_router(health_router(store))
    app.include_router(metrics_router())
    app.include_router(otlp_http_router(pipeline.ingest, project))
    app.include_router(otlp_logs_router(pipeline.ingest_logs, project))
    app.include_router(api_router(store, project, pipeline.record_scores, price_book=pipeline))
    return app
