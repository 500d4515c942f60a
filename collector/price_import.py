"""``tokentrail prices import FILE``: refresh the price table from a file.

Two formats, told apart by shape: our own (``{"models": [...]}``, as shipped in
``schema/model_prices.json``, rows carry their dates) and LiteLLM's
``model_prices_and_context_window.json`` (one object per model, no dates).

Imports never rewrite history and re-running one changes nothing:

- a row equal to what the table already charges is not written (``unchanged``);
- a dated row keeps its date;
- an undated (LiteLLM) row whose model the table already prices takes effect
  today, so calls before today keep the price they were charged; one the table
  did not price at all takes effect for every call (``ALWAYS``), since any
  price beats ``unpriced`` — a recompute then prices those older calls.

Rows go into the shipped scope ('') unless a project is given; written rows
have another source than ``shipped``, so seeding at start-up leaves them alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from decimal import InvalidOperation

from tokentrail.collector.litellm_prices import Skipped, litellm_rows
from tokentrail.collector.pricing import Pricer
from tokentrail.schema.prices import (
    ALWAYS,
    SHIPPED_PROJECT,
    ModelPrice,
    insert_prices,
    parse_table,
    project_prices,
    table_rows,
)
from tokentrail.schema.store import Store

OWN_SOURCE = "import"
_EXAMPLES = 3


@dataclass
class ImportReport:
    """What an import did: rows written, rows already right, entries skipped and why."""

    format: str  # "tokentrail" or "litellm"
    project_id: str
    imported: int = 0
    unchanged: int = 0
    skipped: Skipped = field(default_factory=dict)

    def lines(self) -> list[str]:
        scope = f"project {self.project_id!r}" if self.project_id else "the shipped table"
        lines = [
            f"{self.format} file: imported {self.imported} price rows into {scope}, "
            f"{self.unchanged} unchanged, {sum(map(len, self.skipped.values()))} skipped"
        ]
        for reason, names in sorted(self.skipped.items(), key=lambda item: -len(item[1])):
            more = f", … {len(names) - _EXAMPLES} more" if len(names) > _EXAMPLES else ""
            lines.append(f"  skipped {len(names)}: {reason} ({', '.join(names[:_EXAMPLES])}{more})")
        return lines


def _read(text: str, project_id: str) -> tuple[str, list[ModelPrice], Skipped]:
    try:
        table = parse_table(text)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"not a JSON price file: {exc}") from exc
    if isinstance(table.get("models"), list):
        try:
            return "tokentrail", table_rows(table, project_id, OWN_SOURCE), {}
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise ValueError(f"bad entry in tokentrail price file: {exc!r}") from exc
    return "litellm", *litellm_rows(table, project_id)


def _dated(
    rows: list[ModelPrice], stored: list[ModelPrice]
) -> tuple[list[ModelPrice], list[ModelPrice]]:
    """Our own rows: (to write, unchanged); unchanged = the same key already holds them."""
    by_key = {price.key: price for price in stored}
    write: list[ModelPrice] = []
    same: list[ModelPrice] = []
    for row in rows:
        old = by_key.get(row.key)
        unchanged = old is not None and (old.rates, old.match_pattern) == (
            row.rates,
            row.match_pattern,
        )
        (same if unchanged else write).append(row)
    return write, same


def _undated(
    rows: list[ModelPrice], stored: list[ModelPrice], project_id: str, on: date, fixed: bool
) -> tuple[list[ModelPrice], list[ModelPrice]]:
    """LiteLLM rows: (to write, unchanged), dated by the rule in the module docstring.

    ``on`` is the day the rows take effect; ``fixed`` means the operator chose it,
    so it holds even for models the table did not price.
    """
    pricer = Pricer(stored)
    write: list[ModelPrice] = []
    same: list[ModelPrice] = []
    for row in rows:
        charged = pricer.find(project_id, row.provider, (row.model.lower(),), on)
        if charged is not None and charged.rates == row.rates:
            same.append(row)
        else:
            first = charged is None and not fixed
            write.append(replace(row, effective_from=ALWAYS if first else on))
    return write, same


def import_prices(
    store: Store,
    text: str,
    project_id: str = SHIPPED_PROJECT,
    effective_from: date | None = None,
) -> ImportReport:
    """Import a price file's text into ``project_id`` ('' = shipped); ValueError if unreadable.

    ``effective_from`` dates LiteLLM rows (default: the rule in the module
    docstring); our own format's rows always keep their own dates.
    """
    kind, rows, skipped = _read(text, project_id)
    stored = project_prices(store, project_id)
    if kind == "tokentrail":
        write, same = _dated(rows, stored)
    else:
        today = datetime.now(timezone.utc).date()
        on = effective_from or today
        write, same = _undated(rows, stored, project_id, on, effective_from is not None)
    insert_prices(store, write)
    return ImportReport(kind, project_id, len(write), len(same), skipped)
