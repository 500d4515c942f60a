"""Liveness and readiness probes, outside ``/api/v1`` and without an API key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

# None when ready, else the reason to show; called on every probe.
Readiness = Callable[[], "str | None"]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    reason: str | None = None


def health_router(readiness: Readiness) -> APIRouter:
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
        description="200 when the store answers and accepted exports are written as they "
        "come, else 503 with the reason (exports may still be accepted into the spool).",
        responses={503: {"model": Health, "description": "Not ready, and why."}},
    )
    def readyz() -> Health | JSONResponse:
        reason = readiness()
        if reason is None:
            return Health(status="ok")
        # A load balancer reads the status code; people read the reason.
        unavailable = Health(status="unavailable", reason=reason)
        return JSONResponse(unavailable.model_dump(), status_code=503)

    return router
