"""The API's routers, assembled for the app: ``/api/v1/*``.

Each resource lives in its own module; this one only mounts them so the app
needs two calls. Dependencies come in as arguments: the store, the project of
the request (decided by the API key), and where scores are recorded.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from tokentrail.api.alerts.routes import alerts_router
from tokentrail.api.drift.routes import drift_router
from tokentrail.api.features import features_router
from tokentrail.api.prices import PriceBook, StoredPriceBook, prices_router
from tokentrail.api.scores import RecordScores, scores_router
from tokentrail.api.traces import traces_router
from tokentrail.schema.store import Store


def api_router(
    store: Store,
    project_dependency: Callable[..., str],
    record_scores: RecordScores,
    price_book: PriceBook | None = None,
) -> APIRouter:
    """Everything under ``/api/v1``; every route is scoped to ``project_dependency``'s project.

    ``price_book``: where price changes take effect (the ingest pipeline); without
    one, re-pricing writes through a Writer of its own.
    """
    router = APIRouter(prefix="/api/v1")
    router.include_router(traces_router(store, project_dependency))
    router.include_router(features_router(store, project_dependency))
    router.include_router(drift_router(store, project_dependency))
    router.include_router(scores_router(store, project_dependency, record_scores))
    router.include_router(
        prices_router(store, project_dependency, price_book or StoredPriceBook(store))
    )
    router.include_router(alerts_router(store, project_dependency))
    return router
