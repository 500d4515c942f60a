"""Model prices: the shipped table (``model_prices.json``) and the ``model_prices`` rows.

Prices are USD per million tokens, kept as Decimal end to end so costs are
exact. Rows with ``project_id`` '' are the shipped table; a project's own rows
override them (the pricer decides precedence, this module only moves rows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Any, TypeVar

from tokentrail.schema.store import Store

SHIPPED_PROJECT = ""
SHIPPED_SOURCE = "shipped"
# The effective date of a price that applies to every call, however old.
ALWAYS = date(1970, 1, 1)


_Fallback = TypeVar("_Fallback", Decimal, Decimal | None)


def first_set(rate: Decimal | None, fallback: _Fallback) -> Decimal | _Fallback:
    """``rate`` unless it is unset. Not ``rate or fallback``: a rate of 0 is a real rate."""
    return fallback if rate is None else rate


@dataclass(frozen=True)
class ModelPrice:
    """One ``model_prices`` row; field names are the table's column names."""

    project_id: str
    provider: str
    model: str
    effective_from: date
    match_pattern: str  # regex over the whole model name; "" for exact-name rows
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal | None  # None: charged at the input rate
    cache_write_per_mtok: Decimal | None  # None: charged at the input rate
    reasoning_per_mtok: Decimal | None  # None: charged at the output rate
    source: str
    # Long-context tier: a call whose prompt exceeds this many input tokens pays
    # the tier_* rates for the whole call. A tier rate left None stays the base rate.
    tier_threshold_tokens: int | None = None
    tier_input_per_mtok: Decimal | None = None
    tier_output_per_mtok: Decimal | None = None
    tier_cache_read_per_mtok: Decimal | None = None
    tier_cache_write_per_mtok: Decimal | None = None
    tier_reasoning_per_mtok: Decimal | None = None

    @property
    def key(self) -> tuple[str, str, str, date]:
        """The table's sorting key: rows sharing it replace one another."""
        return self.project_id, self.provider, self.model, self.effective_from

    @property
    def rates(self) -> tuple[Decimal | int | None, ...]:
        """Everything that decides what a call costs: two rows with equal rates charge alike."""
        return tuple(getattr(self, name) for name in _RATE_FIELDS)

    def for_prompt(self, prompt_tokens: int) -> ModelPrice:
        """The rates a call with ``prompt_tokens`` input tokens pays.

        Above the tier threshold the whole call, not only the tokens beyond it,
        pays the tier rates: that is how Google (Gemini 2.5 Pro), Anthropic
        (Sonnet 4/4.5 long context) and xAI (Grok 4) bill long prompts.
        """
        if self.tier_threshold_tokens is None or prompt_tokens <= self.tier_threshold_tokens:
            return self
        return replace(
            self,
            input_per_mtok=first_set(self.tier_input_per_mtok, self.input_per_mtok),
            output_per_mtok=first_set(self.tier_output_per_mtok, self.output_per_mtok),
            cache_read_per_mtok=first_set(self.tier_cache_read_per_mtok, self.cache_read_per_mtok),
            cache_write_per_mtok=first_set(
                self.tier_cache_write_per_mtok, self.cache_write_per_mtok
            ),
            reasoning_per_mtok=first_set(self.tier_reasoning_per_mtok, self.reasoning_per_mtok),
            tier_threshold_tokens=None,
            tier_input_per_mtok=None,
            tier_output_per_mtok=None,
            tier_cache_read_per_mtok=None,
            tier_cache_write_per_mtok=None,
            tier_reasoning_per_mtok=None,
        )


COLUMNS = tuple(f.name for f in fields(ModelPrice))
_RATE_FIELDS = tuple(
    name for name in COLUMNS if name.endswith("_per_mtok") or name.startswith("tier_")
)


def _optional(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _tier(tier: dict[str, Any] | None) -> dict[str, Any]:
    """The tier_* fields of a JSON entry's ``tier`` object (none when absent)."""
    if tier is None:
        return {}
    return {
        "tier_threshold_tokens": int(tier["above_input_tokens"]),
        "tier_input_per_mtok": _optional(tier.get("input")),
        "tier_output_per_mtok": _optional(tier.get("output")),
        "tier_cache_read_per_mtok": _optional(tier.get("cache_read")),
        "tier_cache_write_per_mtok": _optional(tier.get("cache_write")),
        "tier_reasoning_per_mtok": _optional(tier.get("reasoning")),
    }


def _entry_rows(entry: dict[str, Any], project_id: str, source: str) -> list[ModelPrice]:
    """One JSON entry → its row plus one exact-name row per alias.

    Aliases are stored as rows of their own because the table has no alias
    column; an exact name is exactly what an alias is.
    """
    names = [entry["model"], *entry.get("aliases", ())]
    return [
        ModelPrice(
            project_id=project_id,
            provider=entry["provider"],
            model=name,
            effective_from=date.fromisoformat(entry["effective_from"]),
            match_pattern=entry.get("pattern", "") if name == entry["model"] else "",
            input_per_mtok=Decimal(entry["input"]),
            output_per_mtok=Decimal(entry["output"]),
            cache_read_per_mtok=_optional(entry.get("cache_read")),
            cache_write_per_mtok=_optional(entry.get("cache_write")),
            reasoning_per_mtok=_optional(entry.get("reasoning")),
            source=source,
            **_tier(entry.get("tier")),
        )
        for name in names
    ]


def parse_table(text: str) -> dict[str, Any]:
    """A price file's JSON, numbers as Decimal: 0.075 must stay 0.075, not its nearest float."""
    table = json.loads(text, parse_float=Decimal)
    if not isinstance(table, dict):
        raise ValueError("a price file holds one JSON object")
    return table


def table_rows(
    table: dict[str, Any], project_id: str = SHIPPED_PROJECT, source: str = SHIPPED_SOURCE
) -> list[ModelPrice]:
    """The rows of a table in our own format (``{"models": [...]}``), aliases expanded."""
    return [row for entry in table["models"] for row in _entry_rows(entry, project_id, source)]


def shipped_prices() -> list[ModelPrice]:
    """The price table shipped in the package, aliases expanded into rows."""
    text = resources.files("tokentrail.schema").joinpath("model_prices.json").read_text("utf-8")
    return table_rows(parse_table(text))


_SELECT = f"SELECT {', '.join(COLUMNS)} FROM model_prices FINAL"


def _read(
    store: Store, where: str = "", parameters: dict[str, Any] | None = None
) -> list[ModelPrice]:
    result = store.query(f"{_SELECT} {where} ORDER BY {', '.join(COLUMNS[:4])}", parameters)
    return [ModelPrice(**row) for row in result.dicts()]


def load_prices(store: Store) -> list[ModelPrice]:
    """Every stored price row, shipped and per project."""
    return _read(store)


def project_prices(store: Store, project_id: str) -> list[ModelPrice]:
    """The rows that can price ``project_id``'s calls: its own and the shipped ones."""
    return _read(
        store,
        "WHERE project_id IN ({shipped:String}, {p:String})",
        {"shipped": SHIPPED_PROJECT, "p": project_id},
    )


def insert_prices(store: Store, prices: list[ModelPrice]) -> None:
    store.insert_columns(
        "model_prices", {column: [getattr(p, column) for p in prices] for column in COLUMNS}
    )


# Optional filters are bound with an "any" flag: '' is a real provider (any provider).
_MATCHING = """
WHERE project_id = {p:String} AND model = {model:String}
    AND ({any_provider:Bool} OR provider = {provider:String})
    AND ({any_day:Bool} OR effective_from = {day:Date})
"""


def delete_prices(
    store: Store,
    project_id: str,
    model: str,
    provider: str | None = None,
    effective_from: date | None = None,
) -> int:
    """Delete a project's rows for ``model`` (one provider / date when given); return how many.

    Only a project's own rows: the shipped table is refreshed, never deleted.
    """
    if project_id == SHIPPED_PROJECT:
        raise ValueError("shipped prices cannot be deleted; override them per project")
    parameters = {
        "p": project_id,
        "model": model,
        "any_provider": provider is None,
        "provider": provider or "",
        "any_day": effective_from is None,
        "day": effective_from or ALWAYS,
    }
    counted = store.query(f"SELECT count() FROM model_prices FINAL {_MATCHING}", parameters)
    found = int(counted.rows[0][0])
    if found:
        # A lightweight DELETE: price rows are few and deleted rarely; FINAL reads honour it.
        store.command(f"DELETE FROM model_prices {_MATCHING}", parameters)
    return found


def seed_shipped_prices(store: Store) -> int:
    """Write shipped rows that are missing or stale; return how many were written.

    Idempotent: a row already stored with the same values is not re-inserted,
    and one stored with another source (refreshed by an operator) is left alone.
    Rows that would collide anyway collapse under ReplacingMergeTree + FINAL.
    """
    stored = {
        price.key: price
        for price in _read(store, "WHERE project_id = {p:String}", {"p": SHIPPED_PROJECT})
    }
    stale = [
        price
        for price in shipped_prices()
        if (old := stored.get(price.key)) is None or (old != price and old.source == SHIPPED_SOURCE)
    ]
    insert_prices(store, stale)
    return len(stale)
