"""The API's routers, assembled for the app: ``/api/v1/*`` and the health probes.

Each resource lives in its own module; this one only mounts them so the app
needs two calls. Dependencies come in as arguments: the store, the project of
the request (decided by the API key), and where scores are recorded.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from tokentrail.api.features import features_router
from tokentrail.api.health import health_router
from tokentrail.api.scores import RecordScores, scores_router
from tokentrail.api.traces import traces_router
from tokentrail.schema.store import Store

__all__ = ["api_router", "health_router"]


def api_router(
    store: Store, project_dependency: Callable[..., str], record_scores: RecordScores
) -> APIRouter:
    """Everything under ``/api/v1``; every route is scoped to ``project_dependency``'s project."""
    router = APIRouter(prefix="/api/v1")
    router.include_router(traces_router(store, project_dependency))
    router.include_router(features_router(store, project_dependency))
    router.include_router(scores_router(store, project_dependency, record_scores))
    return router
