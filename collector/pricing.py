"""Cost of an LLM call from the price table, in exact Decimal USD (DESIGN.md "Cost").

Finding the price, in order of precedence:

1. a cost the sender provided wins (``provided``);
2. model names: the response model, then the request model, each also without
   a path prefix (``models/gemini-2.5-pro``, ``openai/gpt-4o``), compared
   case-insensitively; per name an exact name (aliases are exact-name rows)
   beats a regex ``match_pattern``;
3. a project's own rows beat the shipped ('') rows;
4. provider: first only rows whose provider equals the call's (a row with an
   empty provider matches any). Failing that, a model priced under exactly one
   provider matches a call from any provider: Azure OpenAI, Bedrock and Vertex
   resell the vendors' models (at list price by default; a project overrides),
   and old senders spell providers loosely. A model priced under several
   providers, none the call's, is priced only when their rows in effect all
   charge the same rates (resellers at list price, as an imported LiteLLM table
   lists them); otherwise it stays unpriced rather than guessed;
5. among the rows left, the latest ``effective_from`` not after the call's
   (UTC) date.

No match is ``unpriced`` with zero costs, never a silent $0 ``priced``.

A row with a long-context tier charges the whole call at the tier's rates once
the prompt exceeds the tier's threshold (see ``ModelPrice.for_prompt``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal, localcontext
from functools import lru_cache

from tokentrail.collector.records import LlmCall
from tokentrail.schema.prices import SHIPPED_PROJECT, ModelPrice, first_set

# llm_calls cost columns are Decimal(38, 12).
_SCALE = Decimal("1e-12")
# Enough digits that tokens times price is exact before the one final rounding.
_PRECISION = 80


def _quantize(usd: Decimal) -> Decimal:
    with localcontext() as context:
        context.prec = _PRECISION
        return usd.quantize(_SCALE)


def _usd(tokens_times_per_mtok: Decimal) -> Decimal:
    return _quantize(tokens_times_per_mtok.scaleb(-6))  # scaleb: an exact shift


def cost_of(price: ModelPrice, call: LlmCall) -> tuple[Decimal, Decimal]:
    """(input cost, output cost) of ``call`` at ``price``, each rounded to 12 decimals.

    OTel GenAI counts cache-read and cache-write tokens inside ``input_tokens``
    and reasoning tokens inside ``output_tokens``: each subset is priced at its
    own rate and only the remainder at the base rate. A sender reporting more
    cached than input tokens (or more reasoning than output tokens) evidently
    counts them on top instead, so the whole base count is then priced at the
    base rate and the subset added at its own rate. The prompt a tier threshold
    is compared with is every input token, cached ones included.
    """
    cache_read, cache_write = call.cache_read_tokens, call.cache_write_tokens
    cached = cache_read + cache_write
    uncached = call.input_tokens - cached if cached <= call.input_tokens else call.input_tokens
    reasoning = call.reasoning_tokens
    visible = (
        call.output_tokens - reasoning if reasoning <= call.output_tokens else call.output_tokens
    )
    price = price.for_prompt(uncached + cached)
    base_in, base_out = price.input_per_mtok, price.output_per_mtok
    with localcontext() as context:
        context.prec = _PRECISION
        input_cost = (
            uncached * base_in
            + cache_read * first_set(price.cache_read_per_mtok, base_in)
            + cache_write * first_set(price.cache_write_per_mtok, base_in)
        )
        output_cost = visible * base_out + reasoning * first_set(price.reasoning_per_mtok, base_out)
    return _usd(input_cost), _usd(output_cost)


@dataclass(frozen=True)
class _Row:
    price: ModelPrice
    model: str  # lowercased
    pattern: re.Pattern[str] | None

    def patterned(self, name: str) -> bool:
        return self.pattern is not None and self.pattern.fullmatch(name) is not None


def _compile(pattern: str) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error:
        # A project's bad regex must not stop ingest; its exact name still matches.
        return None


def _latest(rows: list[_Row]) -> _Row:
    return max(rows, key=lambda r: r.price.effective_from)


def _for_provider(rows: list[_Row], provider: str, strict: bool) -> list[_Row]:
    if strict:
        return [row for row in rows if row.price.provider.lower() in ("", provider)]
    by_provider: dict[str, list[_Row]] = {}
    for row in rows:
        by_provider.setdefault(row.price.provider, []).append(row)
    if len(by_provider) <= 1:
        return rows
    # Several sellers, none the call's: a price they all agree on is no guess.
    in_effect = [_latest(sold) for _, sold in sorted(by_provider.items())]
    return in_effect[:1] if len({row.price.rates for row in in_effect}) == 1 else []


def model_names(call: LlmCall) -> tuple[str, ...]:
    """The names to look a call's model up by, most specific first."""
    names: list[str] = []
    for model in (call.response_model, call.request_model):
        model = model.strip().lower()
        for name in (model, model.rsplit("/", 1)[-1]):
            if name and name not in names:
                names.append(name)
    return tuple(names)


def call_date(call: LlmCall) -> date:
    return datetime.fromtimestamp(call.start_time_unix_nano // 10**9, tz=timezone.utc).date()


class Pricer:
    """Prices LLM calls from a snapshot of ``model_prices``; rebuild it to reload."""

    def __init__(self, prices: Iterable[ModelPrice]) -> None:
        # Per scope: rows by exact name, and the rows with a pattern. An imported
        # LiteLLM table holds thousands of names; a lookup reads one of them.
        self._named: dict[str, dict[str, list[_Row]]] = {}
        self._patterned: dict[str, list[_Row]] = {}
        for price in prices:
            row = _Row(price, price.model.strip().lower(), _compile(price.match_pattern))
            self._named.setdefault(price.project_id, {}).setdefault(row.model, []).append(row)
            if row.pattern is not None:
                self._patterned.setdefault(price.project_id, []).append(row)
        # Ingest prices every call; the same few models recur endlessly.
        self._cached_find = lru_cache(maxsize=8192)(self._find)

    def find(
        self, project_id: str, provider: str, names: tuple[str, ...], on: date
    ) -> ModelPrice | None:
        """The price row for a call, by the precedence in the module docstring."""
        result: ModelPrice | None = self._cached_find(project_id, provider, names, on)
        return result

    def _find(
        self, project_id: str, provider: str, names: tuple[str, ...], on: date
    ) -> ModelPrice | None:
        scopes = dict.fromkeys((project_id, SHIPPED_PROJECT))
        provider = provider.strip().lower()
        for strict in (True, False):
            for scope in scopes:
                for name in names:
                    for rows in self._matching(scope, name):
                        found = _for_provider(
                            [r for r in rows if r.price.effective_from <= on], provider, strict
                        )
                        if found:
                            return _latest(found).price
        return None

    def _matching(self, scope: str, name: str) -> Iterator[list[_Row]]:
        """Rows of ``scope`` named ``name`` exactly, then rows whose pattern matches it."""
        yield self._named.get(scope, {}).get(name, [])
        yield [row for row in self._patterned.get(scope, ()) if row.patterned(name)]

    def price(self, project_id: str, call: LlmCall) -> None:
        """Fill ``call``'s input/output/total cost and ``price_status`` in place."""
        input_cost = output_cost = Decimal(0)
        if call.provided_cost_usd is not None:
            # The sender's total is authoritative; it comes without a split.
            status, total = "provided", _quantize(call.provided_cost_usd)
        else:
            found = self.find(project_id, call.provider, model_names(call), call_date(call))
            if found is None:
                status = "unpriced"
            else:
                status = "priced"
                input_cost, output_cost = cost_of(found, call)
            total = input_cost + output_cost
        call.input_cost_usd, call.output_cost_usd = input_cost, output_cost
        call.total_cost_usd, call.price_status = total, status
