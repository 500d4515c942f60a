"""Liveness and readiness probes, outside ``/api/v1`` and without an API key."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from tokentrail.api.models import Health
from tokentrail.schema.store import Store


def health_router(store: Store) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get(
        "/healthz",
        response_model=Health,
        summary="Liveness",
        description="200 while the process serves requests; never touches the store.",
    )
    def healthz() -> Health:
        return Health(status="ok")

    @router.get(
        "/readyz",
        response_model=Health,
        summary="Readiness",
        description="200 when the store answers a query, else 503 with the reason.",
        responses={503: {"model": Health, "description": "The store does not answer."}},
    )
    def readyz() -> Health | JSONResponse:
        if store.ping():
            return Health(status="ok")
        # A load balancer reads the status code; people read the reason.
        unavailable = Health(status="unavailable", reason="ClickHouse store did not answer")
        return JSONResponse(unavailable.model_dump(), status_code=503)

    return router
