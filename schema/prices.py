"""Model prices: the shipped table (``model_prices.json``) and the ``model_prices`` rows.

Prices are USD per million tokens, kept as Decimal end to end so costs are
exact. Rows with ``project_id`` '' are the shipped table; a project's own rows
override them (the pricer decides precedence, this module only moves rows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Any

from tokentrail.schema.store import Store

SHIPPED_PROJECT = ""
SHIPPED_SOURCE = "shipped"


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

    @property
    def key(self) -> tuple[str, str, str, date]:
        """The table's sorting key: rows sharing it replace one another."""
        return self.project_id, self.provider, self.model, self.effective_from


COLUMNS = tuple(f.name for f in fields(ModelPrice))


def _optional(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _entry_rows(entry: dict[str, Any]) -> list[ModelPrice]:
    """One JSON entry → its row plus one exact-name row per alias.

    Aliases are stored as rows of their own because the table has no alias
    column; an exact name is exactly what an alias is.
    """
    names = [entry["model"], *entry.get("aliases", ())]
    return [
        ModelPrice(
            project_id=SHIPPED_PROJECT,
            provider=entry["provider"],
            model=name,
            effective_from=date.fromisoformat(entry["effective_from"]),
            match_pattern=entry.get("pattern", "") if name == entry["model"] else "",
            input_per_mtok=Decimal(entry["input"]),
            output_per_mtok=Decimal(entry["output"]),
            cache_read_per_mtok=_optional(entry.get("cache_read")),
            cache_write_per_mtok=_optional(entry.get("cache_write")),
            reasoning_per_mtok=_optional(entry.get("reasoning")),
            source=SHIPPED_SOURCE,
        )
        for name in names
    ]


def shipped_prices() -> list[ModelPrice]:
    """The price table shipped in the package, aliases expanded into rows."""
    text = resources.files("tokentrail.schema").joinpath("model_prices.json").read_text("utf-8")
    # parse_float=Decimal: 0.075 must stay 0.075, not its nearest binary float.
    table = json.loads(text, parse_float=Decimal)
    return [row for entry in table["models"] for row in _entry_rows(entry)]


_SELECT = f"SELECT {', '.join(COLUMNS)} FROM model_prices FINAL"


def _read(
    store: Store, where: str = "", parameters: dict[str, Any] | None = None
) -> list[ModelPrice]:
    result = store.query(f"{_SELECT} {where} ORDER BY {', '.join(COLUMNS[:4])}", parameters)
    return [ModelPrice(**row) for row in result.dicts()]


def load_prices(store: Store) -> list[ModelPrice]:
    """Every stored price row, shipped and per project."""
    return _read(store)


def insert_prices(store: Store, prices: list[ModelPrice]) -> None:
    store.insert_columns(
        "model_prices", {column: [getattr(p, column) for p in prices] for column in COLUMNS}
    )


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
