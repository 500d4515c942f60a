"""Model prices per project: list, override, delete, re-price stored calls, find unpriced ones.

A project's rows override the shipped table for that project only. Changing
one tells the ``PriceBook`` (the ingest pipeline in ``tokentrail serve``) to
reload, so calls arriving afterwards are priced with it; calls already stored
keep their cost until ``POST /prices/recompute`` re-prices them.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the route
# signatures, and they name `project_dependency`, a local of the router factory.
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from tokentrail.api.errors import invalid
from tokentrail.api.price_models import (
    Deleted,
    PriceIn,
    PriceList,
    PriceOut,
    RecomputeIn,
    RecomputeOut,
    TierOut,
    UnpricedList,
    UnpricedModel,
)
from tokentrail.api.timewindow import TimeWindow, rfc3339, time_window, to_ns
from tokentrail.collector.pricing import Pricer
from tokentrail.collector.reprice import RepriceCounts, RepriceScope, reprice_calls
from tokentrail.collector.writer import Writer
from tokentrail.schema.prices import (
    ALWAYS,
    SHIPPED_PROJECT,
    ModelPrice,
    delete_prices,
    insert_prices,
    project_prices,
)
from tokentrail.schema.store import Store

API_SOURCE = "api"

# Like every report: FINAL, one project, a time window, repeats of a call skipped.
UNPRICED_MODELS = """
SELECT
    provider,
    if(response_model != '', response_model, request_model) AS model,
    sum(sample_weight) AS calls,
    toUnixTimestamp64Nano(max(Timestamp)) AS last_ns
FROM llm_calls FINAL
WHERE project_id = {project_id:String}
    AND Timestamp >= fromUnixTimestamp64Nano({start_ns:Int64})
    AND Timestamp < fromUnixTimestamp64Nano({end_ns:Int64})
    AND duplicate_of = '' AND price_status = 'unpriced'
GROUP BY provider, model
ORDER BY calls DESC, model, provider
"""


class PriceBook(Protocol):
    """Where price changes take effect: ``IngestPipeline`` is one."""

    def reload_prices(self) -> None: ...

    def reprice(self, project_id: str, scope: RepriceScope) -> RepriceCounts: ...


class StoredPriceBook:
    """A price book for an API without an ingest pipeline in its process.

    Nothing to reload here (collectors elsewhere re-read the table on their
    own); re-pricing writes through a Writer of its own.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._writer = Writer(store)

    def reload_prices(self) -> None:
        pass

    def reprice(self, project_id: str, scope: RepriceScope) -> RepriceCounts:
        pricer = Pricer(project_prices(self._store, project_id))
        return reprice_calls(self._store, self._writer, pricer, project_id, scope)


def _tier_out(price: ModelPrice) -> TierOut | None:
    if price.tier_threshold_tokens is None:
        return None
    return TierOut(
        above_input_tokens=price.tier_threshold_tokens,
        input_per_mtok=price.tier_input_per_mtok,
        output_per_mtok=price.tier_output_per_mtok,
        cache_read_per_mtok=price.tier_cache_read_per_mtok,
        cache_write_per_mtok=price.tier_cache_write_per_mtok,
        reasoning_per_mtok=price.tier_reasoning_per_mtok,
    )


def price_out(price: ModelPrice, applies: bool) -> PriceOut:
    return PriceOut(
        scope="shipped" if price.project_id == SHIPPED_PROJECT else "project",
        provider=price.provider,
        model=price.model,
        pattern=price.match_pattern,
        effective_from=price.effective_from,
        input_per_mtok=price.input_per_mtok,
        output_per_mtok=price.output_per_mtok,
        cache_read_per_mtok=price.cache_read_per_mtok,
        cache_write_per_mtok=price.cache_write_per_mtok,
        reasoning_per_mtok=price.reasoning_per_mtok,
        tier=_tier_out(price),
        source=price.source,
        applies=applies,
    )


def price_row(project_id: str, model: str, body: PriceIn) -> ModelPrice:
    """The override row a PUT stores."""
    tier = body.tier
    return ModelPrice(
        project_id=project_id,
        provider=body.provider,
        model=model,
        effective_from=body.effective_from or ALWAYS,
        match_pattern=body.pattern,
        input_per_mtok=body.input_per_mtok,
        output_per_mtok=body.output_per_mtok,
        cache_read_per_mtok=body.cache_read_per_mtok,
        cache_write_per_mtok=body.cache_write_per_mtok,
        reasoning_per_mtok=body.reasoning_per_mtok,
        source=API_SOURCE,
        tier_threshold_tokens=tier.above_input_tokens if tier else None,
        tier_input_per_mtok=tier.input_per_mtok if tier else None,
        tier_output_per_mtok=tier.output_per_mtok if tier else None,
        tier_cache_read_per_mtok=tier.cache_read_per_mtok if tier else None,
        tier_cache_write_per_mtok=tier.cache_write_per_mtok if tier else None,
        tier_reasoning_per_mtok=tier.reasoning_per_mtok if tier else None,
    )


def _applies(pricer: Pricer, project_id: str, row: ModelPrice, on: date) -> bool:
    # Asked of the same Pricer ingest uses, for the row's own provider and model,
    # so the answer cannot disagree with what calls pay.
    return pricer.find(project_id, row.provider, (row.model.lower(),), on) == row


def price_list(
    store: Store, project_id: str, on: date, provider: str = "", model: str = ""
) -> PriceList:
    """The project's rows and the shipped ones, each marked with whether it applies ``on``."""
    rows = project_prices(store, project_id)
    pricer = Pricer(rows)
    provider, model = provider.strip().lower(), model.strip().lower()
    listed = [
        price_out(row, _applies(pricer, project_id, row, on))
        for row in rows
        if (not provider or row.provider.lower() == provider)
        and (not model or model in row.model.lower())
    ]
    # The project's own rows first: they are what a reader came to check.
    listed.sort(key=lambda p: (p.scope != "project", p.provider, p.model, p.effective_from))
    return PriceList(on=on, prices=listed)


def unpriced_models(store: Store, project_id: str, window: TimeWindow) -> UnpricedList:
    params = {**window.params(), "project_id": project_id}
    models = [
        # Weighted counts are estimates; 3 x (1 / 0.3) must read 10, not 9.
        UnpricedModel(
            provider=row["provider"],
            model=row["model"],
            calls=round(row["calls"]),
            last_seen=rfc3339(row["last_ns"]),
        )
        for row in store.query(UNPRICED_MODELS, params).dicts()
    ]
    return UnpricedList(
        start=rfc3339(window.start_ns),
        end=rfc3339(window.end_ns),
        calls=sum(m.calls for m in models),
        models=models,
    )


def _today() -> date:
    return datetime.now(timezone.utc).date()


ModelName = Annotated[
    str, Path(min_length=1, max_length=300, description="The model name calls carry.")
]


def prices_router(
    store: Store, project_dependency: Callable[..., str], book: PriceBook
) -> APIRouter:
    router = APIRouter(prefix="/prices", tags=["prices"])

    @router.get(
        "",
        response_model=PriceList,
        summary="Prices that apply to this project",
        description=(
            "This project's overrides and the shipped table, USD per million tokens. "
            "`applies` marks the row a call to that provider and model is priced with on "
            "`on` (default today, UTC): a project row beats a shipped one, then the latest "
            "`effective_from`. Filter with `provider` (exact) and `model` (substring)."
        ),
    )
    def get_prices(
        project_id: Annotated[str, Depends(project_dependency)],
        provider: Annotated[str, Query(max_length=100)] = "",
        model: Annotated[str, Query(max_length=300)] = "",
        on: Annotated[date | None, Query(description="Default: today (UTC).")] = None,
    ) -> PriceList:
        return price_list(store, project_id, on or _today(), provider, model)

    @router.get(
        "/unpriced",
        response_model=UnpricedList,
        summary="Models called without a price",
        description=(
            "LLM calls in [`start`, `end`) that no price matched, by provider and model, most "
            "calls first: the prices to add (PUT /prices/{model}) before a recompute."
        ),
    )
    def get_unpriced(
        project_id: Annotated[str, Depends(project_dependency)],
        window: Annotated[TimeWindow, Depends(time_window)],
    ) -> UnpricedList:
        return unpriced_models(store, project_id, window)

    @router.put(
        "/{model:path}",
        response_model=PriceOut,
        summary="Set this project's price for a model",
        description=(
            "Stores an override for this project only; a second PUT with the same provider "
            "and `effective_from` replaces it. Calls ingested from now on use it; calls "
            "already stored keep their cost until POST /prices/recompute."
        ),
    )
    def put_price(
        model: ModelName,
        body: PriceIn,
        project_id: Annotated[str, Depends(project_dependency)],
    ) -> PriceOut:
        name = model.strip()
        if not name:
            invalid(("path", "model"), "model must not be blank", model)
        row = price_row(project_id, name, body)
        insert_prices(store, [row])
        book.reload_prices()
        pricer = Pricer(project_prices(store, project_id))
        return price_out(row, _applies(pricer, project_id, row, _today()))

    @router.delete(
        "/{model:path}",
        response_model=Deleted,
        summary="Remove this project's price for a model",
        description=(
            "Deletes the project's override rows for `model` (only for `provider` and/or "
            "`effective_from` when given); the shipped price applies again. 404 if none."
        ),
    )
    def delete_price(
        model: ModelName,
        project_id: Annotated[str, Depends(project_dependency)],
        provider: Annotated[str | None, Query(max_length=100)] = None,
        effective_from: date | None = None,
    ) -> Deleted:
        provider = None if provider is None else provider.strip().lower()
        deleted = delete_prices(store, project_id, model.strip(), provider, effective_from)
        if not deleted:
            raise HTTPException(404, f"this project has no price of its own for {model!r}")
        book.reload_prices()
        return Deleted(deleted=deleted)

    @router.post(
        "/recompute",
        response_model=RecomputeOut,
        summary="Re-price stored calls with the current prices",
        description=(
            "Re-prices this project's calls in [`start`, `end`) (optionally one model and/or "
            "provider) and re-writes only those whose cost or price status changed; the new "
            "version replaces the old one, so totals never count a call twice and running it "
            "again changes nothing. Costs the sender provided are kept."
        ),
    )
    def recompute(
        body: RecomputeIn, project_id: Annotated[str, Depends(project_dependency)]
    ) -> RecomputeOut:
        if body.start >= body.end:
            invalid(("body", "start"), "start must be before end", body.start.isoformat())
        scope = RepriceScope(to_ns(body.start), to_ns(body.end), body.model, body.provider)
        counts = book.reprice(project_id, scope)
        return RecomputeOut(
            examined=counts.examined,
            changed=counts.changed,
            unpriced=counts.unpriced,
            provided=counts.provided,
            unpriced_models=sorted(counts.unpriced_models),
        )

    return router
