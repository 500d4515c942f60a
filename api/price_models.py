"""Bodies of the prices API, so /docs documents every field.

Rates are USD per million tokens, Decimal from the request to the table: a rate
sent as 0.075 is stored as 0.075, and only rendered as a JSON number on the way
out. Rates the table cannot hold (more than 12 decimals) are refused, not rounded.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from tokentrail.api.models import Timestamp

RateIn = Annotated[Decimal, Field(ge=0, max_digits=38, decimal_places=12)]
Rate = Annotated[
    Decimal,
    PlainSerializer(float, return_type=float, when_used="json"),
    Field(description="USD per million tokens."),
]
# The span of ClickHouse's Date type, which stores effective_from.
_FIRST_DAY, _LAST_DAY = date(1970, 1, 1), date(2149, 6, 6)


# A repeated group that repeats inside, like (a+)+: its backtracking on a long
# model name could stall ingest, which prices every project's calls in turn.
_NESTED_REPEAT = re.compile(r"\([^()]*[*+}][^()]*\)[*+{]")


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from exc
    if _NESTED_REPEAT.search(pattern):
        raise ValueError("a repeated group may not repeat inside it, as in (a+)+")
    return pattern


def _storable_day(day: date | None) -> date | None:
    if day is not None and not _FIRST_DAY <= day <= _LAST_DAY:
        raise ValueError(f"must be between {_FIRST_DAY} and {_LAST_DAY}")
    return day


class TierIn(BaseModel):
    """Rates for calls whose prompt exceeds ``above_input_tokens``; they apply to the whole call."""

    model_config = ConfigDict(extra="forbid")

    above_input_tokens: int = Field(gt=0, lt=2**63, description="Prompt size (input tokens).")
    input_per_mtok: RateIn | None = Field(None, description="Unset: the base input rate.")
    output_per_mtok: RateIn | None = Field(None, description="Unset: the base output rate.")
    cache_read_per_mtok: RateIn | None = None
    cache_write_per_mtok: RateIn | None = None
    reasoning_per_mtok: RateIn | None = None

    @model_validator(mode="after")
    def _has_a_rate(self) -> TierIn:
        rates = self.model_dump(exclude={"above_input_tokens"})
        if all(rate is None for rate in rates.values()):
            raise ValueError("a tier needs at least one rate")
        return self


class PriceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Annotated[str, AfterValidator(str.lower)] = Field(
        max_length=100,
        description='gen_ai.provider.name of the calls it prices ("openai", "anthropic", '
        '"gcp.gemini" …); "" prices the model from any provider.',
    )
    input_per_mtok: RateIn
    output_per_mtok: RateIn
    cache_read_per_mtok: RateIn | None = Field(None, description="Unset: the input rate.")
    cache_write_per_mtok: RateIn | None = Field(None, description="Unset: the input rate.")
    reasoning_per_mtok: RateIn | None = Field(None, description="Unset: the output rate.")
    effective_from: Annotated[date | None, AfterValidator(_storable_day)] = Field(
        None,
        description="First day (UTC) the price applies. Unset: every call, however old "
        "(recompute then re-prices past calls too).",
    )
    pattern: Annotated[str, AfterValidator(_regex)] = Field(
        "",
        max_length=500,
        description="Optional case-insensitive regex over the whole model name, for "
        "snapshots and cloud ids (e.g. `my-ft-.*`); the exact name always matches.",
    )
    tier: TierIn | None = Field(None, description="Long-context rates, if any.")


class TierOut(BaseModel):
    above_input_tokens: int
    input_per_mtok: Rate | None
    output_per_mtok: Rate | None
    cache_read_per_mtok: Rate | None
    cache_write_per_mtok: Rate | None
    reasoning_per_mtok: Rate | None


class PriceOut(BaseModel):
    scope: Literal["project", "shipped"] = Field(
        description="`project`: this project's override; `shipped`: the shared table."
    )
    provider: str
    model: str
    pattern: str
    effective_from: date
    input_per_mtok: Rate
    output_per_mtok: Rate
    cache_read_per_mtok: Rate | None = Field(description="null: charged at the input rate.")
    cache_write_per_mtok: Rate | None = Field(description="null: charged at the input rate.")
    reasoning_per_mtok: Rate | None = Field(description="null: charged at the output rate.")
    tier: TierOut | None
    source: str = Field(description="shipped, api, litellm, import …")
    applies: bool = Field(
        description="Whether this row prices a call to exactly this provider and model on "
        "the list's `on` date (false: overridden, superseded or not yet in effect)."
    )


class PriceList(BaseModel):
    on: date
    prices: list[PriceOut]


class Deleted(BaseModel):
    deleted: int


class RecomputeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime = Field(description="RFC 3339 with a UTC offset, inclusive.")
    end: AwareDatetime = Field(description="RFC 3339 with a UTC offset, exclusive.")
    model: str = Field("", description="Only calls whose request or response model is this.")
    provider: str = Field("", description="Only calls from this provider.")


class RecomputeOut(BaseModel):
    examined: int = Field(description="Stored calls in the range (and model/provider).")
    changed: int = Field(description="Calls re-written with a new cost or price status.")
    unpriced: int = Field(description="Calls still without a price.")
    provided: int = Field(description="Calls whose cost the sender provided: left as sent.")
    unpriced_models: list[str] = Field(description="Models of the calls still unpriced.")


class UnpricedModel(BaseModel):
    provider: str
    model: str
    calls: int = Field(description="Unpriced calls (sampled calls count by their weight).")
    last_seen: Timestamp


class UnpricedList(BaseModel):
    start: Timestamp
    end: Timestamp
    calls: int = Field(description="All unpriced calls in the window.")
    models: list[UnpricedModel] = Field(description="Most calls first: what to price next.")
