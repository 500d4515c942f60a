"""Cost pricing (exact Decimal, hand-computed expectations) and the shipped price table."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from tokentrail.collector.pricing import Pricer, cost_of
from tokentrail.collector.records import LlmCall
from tokentrail.schema import Store
from tokentrail.schema.prices import (
    ModelPrice,
    insert_prices,
    load_prices,
    seed_shipped_prices,
    shipped_prices,
)

D = Decimal


def at(day: str) -> int:
    moment = datetime.fromisoformat(day).replace(hour=12, tzinfo=timezone.utc)
    return int(moment.timestamp()) * 10**9


def make_call(model: str = "gpt-4o", *, on: str = "2025-10-01", **fields: Any) -> LlmCall:
    fields.setdefault("provider", "openai")
    return LlmCall("t", "s", "", at(on), 1, request_model=model, **fields)


def row(
    model: str,
    input: str,
    output: str,
    *,
    provider: str = "openai",
    project_id: str = "",
    effective_from: str = "2024-01-01",
    pattern: str = "",
    cache_read: str | None = None,
    cache_write: str | None = None,
    reasoning: str | None = None,
) -> ModelPrice:
    return ModelPrice(
        project_id=project_id,
        provider=provider,
        model=model,
        effective_from=date.fromisoformat(effective_from),
        match_pattern=pattern,
        input_per_mtok=D(input),
        output_per_mtok=D(output),
        cache_read_per_mtok=None if cache_read is None else D(cache_read),
        cache_write_per_mtok=None if cache_write is None else D(cache_write),
        reasoning_per_mtok=None if reasoning is None else D(reasoning),
        source="test",
    )


SONNET = row("sonnet", "3", "15", provider="anthropic", cache_read="0.30", cache_write="3.75")


def priced(pricer: Pricer, call: LlmCall, project_id: str = "p") -> LlmCall:
    pricer.price(project_id, call)
    return call


# --- arithmetic --------------------------------------------------------------------


def test_cache_and_reasoning_are_subsets_never_counted_twice() -> None:
    call = make_call(
        input_tokens=10_000,
        cache_read_tokens=6_000,
        cache_write_tokens=1_000,
        output_tokens=2_000,
        reasoning_tokens=500,
    )
    # input: 3,000 uncached x $3 + 6,000 x $0.30 + 1,000 x $3.75 = 14,550 per M
    # output: 1,500 x $15 + 500 reasoning x $15 (output rate) = 30,000 per M
    assert cost_of(SONNET, call) == (D("0.014550000000"), D("0.030000000000"))


def test_reasoning_at_its_own_rate() -> None:
    price = replace(SONNET, reasoning_per_mtok=D(60))
    call = make_call(output_tokens=2_000, reasoning_tokens=500)
    # 1,500 x $15 + 500 x $60 = 52,500 per M
    assert cost_of(price, call)[1] == D("0.0525")


def test_cache_reported_on_top_of_input_is_not_subtracted() -> None:
    # 300 cached > 100 input: this sender counts cache outside input_tokens.
    call = make_call(input_tokens=100, cache_read_tokens=300)
    # 100 x $3 + 300 x $0.30 = 390 per M
    assert cost_of(SONNET, call)[0] == D("0.00039")


def test_reasoning_reported_on_top_of_output_is_not_subtracted() -> None:
    call = make_call(output_tokens=100, reasoning_tokens=400)
    # 100 x $15 + 400 x $15 = 7,500 per M
    assert cost_of(SONNET, call)[1] == D("0.0075")


def test_missing_cache_rates_use_the_input_rate() -> None:
    price = row("m", "2", "8")
    call = make_call(input_tokens=1_000, cache_read_tokens=400, cache_write_tokens=100)
    # 500 x $2 + 400 x $2 + 100 x $2 = 2,000 per M
    assert cost_of(price, call)[0] == D("0.002")


def test_free_cache_reads_stay_free() -> None:
    price = row("m", "2", "8", cache_read="0")
    call = make_call(input_tokens=1_000, cache_read_tokens=1_000)
    assert cost_of(price, call)[0] == 0


def test_costs_are_exact_to_twelve_decimals() -> None:
    price = row("mini", "0.15", "0.60", cache_read="0.075")
    call = make_call(input_tokens=1_234_567, cache_read_tokens=1_000_001, output_tokens=7_654_321)
    input_cost, output_cost = cost_of(price, call)
    # 234,566 x 0.15 + 1,000,001 x 0.075 = 35,184.9 + 75,000.075 = 110,184.975 per M
    assert input_cost == D("0.110184975")
    # 7,654,321 x 0.60 = 4,592,592.6 per M
    assert output_cost == D("4.5925926")
    assert input_cost.as_tuple().exponent == -12


def test_price_fills_the_call() -> None:
    call = priced(
        Pricer([SONNET]),
        make_call("sonnet", provider="anthropic", input_tokens=1_000, output_tokens=100),
    )
    assert (call.input_cost_usd, call.output_cost_usd) == (D("0.003"), D("0.0015"))
    assert call.total_cost_usd == D("0.0045")
    assert call.price_status == "priced"


# --- status ----------------------------------------------------------------------------


def test_provided_cost_wins() -> None:
    call = make_call("sonnet", provider="anthropic", input_tokens=1_000, provided_cost_usd=D("0.5"))
    priced(Pricer([SONNET]), call)
    assert (call.price_status, call.total_cost_usd) == ("provided", D("0.5"))
    assert (call.input_cost_usd, call.output_cost_usd) == (0, 0)


def test_unknown_model_is_unpriced_not_free() -> None:
    call = priced(Pricer(shipped_prices()), make_call("my-finetune", input_tokens=5_000))
    assert call.price_status == "unpriced"
    assert (call.input_cost_usd, call.output_cost_usd, call.total_cost_usd) == (0, 0, 0)


def test_a_call_without_a_model_is_unpriced() -> None:
    assert priced(Pricer(shipped_prices()), make_call("")).price_status == "unpriced"


# --- matching ----------------------------------------------------------------------------

SHIPPED = Pricer(shipped_prices())


@pytest.mark.parametrize(
    ("provider", "model", "input_cost", "output_cost"),
    [
        # 800 x $2.50 + 200 cached x $1.25 = 2,250 per M; 100 x $10
        ("openai", "gpt-4o-2024-08-06", "0.00225", "0.001"),
        # an exact row beats the gpt-4o date-suffix pattern: 1,000 x $5, 100 x $15
        ("openai", "gpt-4o-2024-05-13", "0.005", "0.0015"),
        # 800 x $3 + 200 x $0.30 = 2,460 per M; 100 x $15
        ("anthropic", "claude-sonnet-4-5-20250929", "0.00246", "0.0015"),
        ("aws.bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "0.00246", "0.0015"),
        ("gcp.vertex_ai", "claude-3-5-sonnet-v2@20241022", "0.00246", "0.0015"),
        ("anthropic", "claude-sonnet-4-0", "0.00246", "0.0015"),  # alias
        ("anthropic", "claude-sonnet-4-20250514", "0.00246", "0.0015"),
        # 800 x $0.30 + 200 x $0.03 = 246 per M; 100 x $2.50
        ("gcp.gemini", "models/gemini-2.5-flash", "0.000246", "0.00025"),
        ("gcp.vertex_ai", "gemini-2.5-flash-001", "0.000246", "0.00025"),
        # Azure resells OpenAI: the only gpt-4o-mini rows are openai's.
        # 800 x $0.15 + 200 x $0.075 = 135 per M; 100 x $0.60
        ("azure.ai.openai", "GPT-4o-Mini", "0.000135", "0.00006"),
    ],
)
def test_shipped_table_matches(
    provider: str, model: str, input_cost: str, output_cost: str
) -> None:
    call = make_call(
        model, provider=provider, input_tokens=1_000, cache_read_tokens=200, output_tokens=100
    )
    priced(SHIPPED, call)
    assert call.price_status == "priced"
    assert (call.input_cost_usd, call.output_cost_usd) == (D(input_cost), D(output_cost))


def test_opus_4_pattern_does_not_swallow_opus_4_1() -> None:
    call = priced(
        SHIPPED, make_call("claude-opus-4-1-20250805", provider="anthropic", input_tokens=1_000_000)
    )
    assert call.input_cost_usd == D(15)
    call = priced(
        SHIPPED,
        make_call(
            "claude-opus-4-5-20251101", provider="anthropic", on="2025-12-01", input_tokens=10**6
        ),
    )
    assert call.input_cost_usd == D(5)


@pytest.mark.parametrize(
    ("on", "input_cost"),
    [("2025-05-01", D(10)), ("2025-06-10", D(2)), ("2025-12-01", D(2)), ("2025-01-01", None)],
)
def test_effective_dates(on: str, input_cost: Decimal | None) -> None:
    # o3 launched at $10/M input on 2025-04-16 and dropped to $2/M on 2025-06-10.
    call = priced(SHIPPED, make_call("o3", on=on, input_tokens=1_000_000))
    if input_cost is None:
        assert call.price_status == "unpriced"  # before the model existed
    else:
        assert call.input_cost_usd == input_cost


def test_response_model_first_then_request_model() -> None:
    pricer = Pricer([row("alpha", "1", "1"), row("beta", "2", "2")])
    both = make_call("alpha", response_model="beta", input_tokens=1_000_000)
    assert priced(pricer, both).input_cost_usd == D(2)
    unknown_response = make_call("alpha", response_model="alpha-internal-7", input_tokens=1_000_000)
    assert priced(pricer, unknown_response).input_cost_usd == D(1)


def test_project_rows_before_shipped_ones() -> None:
    pricer = Pricer([*shipped_prices(), row("gpt-4o", "1", "1", project_id="acme")])
    call = make_call("gpt-4o", input_tokens=1_000_000)
    assert priced(pricer, call, "acme").input_cost_usd == D(1)
    assert priced(pricer, call, "someone-else").input_cost_usd == D("2.5")


def test_a_project_pattern_beats_a_shipped_exact_name() -> None:
    override = row("gpt-4o family", "1", "1", project_id="acme", pattern=r"gpt-4o(-.*)?")
    pricer = Pricer([*shipped_prices(), override])
    call = make_call("gpt-4o-2024-05-13", input_tokens=1_000_000)
    assert priced(pricer, call, "acme").input_cost_usd == D(1)


def test_a_bad_project_regex_does_not_break_pricing() -> None:
    pricer = Pricer([row("broken", "1", "1", project_id="acme", pattern="(")])
    assert priced(pricer, make_call("broken", input_tokens=10**6), "acme").input_cost_usd == D(1)


def test_the_calls_provider_is_preferred() -> None:
    pricer = Pricer(
        [row("llama-3", "1", "1", provider="groq"), row("llama-3", "2", "2", provider="together")]
    )
    call = make_call("llama-3", provider="together", input_tokens=10**6)
    assert priced(pricer, call).input_cost_usd == D(2)


@pytest.mark.parametrize("provider", ["aws.bedrock", ""])
def test_a_model_sold_by_several_providers_is_not_guessed(provider: str) -> None:
    pricer = Pricer(
        [row("llama-3", "1", "1", provider="groq"), row("llama-3", "2", "2", provider="together")]
    )
    assert priced(pricer, make_call("llama-3", provider=provider)).price_status == "unpriced"


def test_a_provider_agnostic_row_matches_any_provider() -> None:
    pricer = Pricer(
        [row("llama-3", "1", "1", provider=""), row("llama-3", "2", "2", provider="together")]
    )
    call = make_call("llama-3", provider="aws.bedrock", input_tokens=10**6)
    assert priced(pricer, call).input_cost_usd == D(1)


# --- the shipped table --------------------------------------------------------------------


def test_shipped_table_is_well_formed() -> None:
    prices = shipped_prices()
    keys = [p.key for p in prices]
    assert len(keys) == len(set(keys))
    for price in prices:
        assert price.project_id == "" and price.source == "shipped"
        assert price.input_per_mtok >= 0 and price.output_per_mtok >= 0
        if price.match_pattern:
            re.compile(price.match_pattern)


_SNAPSHOT_SUFFIX = {"openai": "-2025-01-01", "anthropic": "-20250101", "gcp.gemini": "-001"}


def test_every_snapshot_name_resolves_to_its_own_family() -> None:
    # Guards the regexes against each other: gpt-4o's must not take gpt-4o-mini's
    # snapshots, claude-opus-4's must not take claude-opus-4-1's, and so on.
    on = date(2026, 1, 1)
    for price in shipped_prices():
        if price.match_pattern:
            snapshot = price.model + _SNAPSHOT_SUFFIX[price.provider]
            found = SHIPPED.find("", price.provider, (snapshot,), on)
            assert found is not None and found.model == price.model, snapshot


def test_shipped_anthropic_cache_rates() -> None:
    for price in shipped_prices():
        if price.provider == "anthropic":
            assert price.cache_read_per_mtok == price.input_per_mtok * D("0.1")
            assert price.cache_write_per_mtok == price.input_per_mtok * D("1.25")


def test_shipped_prices_keep_decimal_digits() -> None:
    mini = next(p for p in shipped_prices() if p.model == "gpt-4o-mini")
    assert mini.cache_read_per_mtok == D("0.075")
    assert str(mini.cache_read_per_mtok) == "0.075"


# --- model_prices in the real embedded ClickHouse ------------------------------------------


def _shipped_rows(store: Store) -> int:
    return int(store.query("SELECT count() FROM model_prices WHERE project_id = ''").rows[0][0])


def test_seeding_is_idempotent(store: Store) -> None:
    seed_shipped_prices(store)
    raw = _shipped_rows(store)
    assert seed_shipped_prices(store) == 0
    assert _shipped_rows(store) == raw  # nothing re-inserted, not merely merged away
    stored = {p.key: p for p in load_prices(store) if p.project_id == ""}
    for price in shipped_prices():
        assert stored[price.key] == price


def test_seeding_refreshes_a_stale_shipped_row(store: Store) -> None:
    seed_shipped_prices(store)
    original = next(p for p in shipped_prices() if p.model == "gpt-4o")
    insert_prices(store, [replace(original, input_per_mtok=D(99))])
    assert seed_shipped_prices(store) == 1
    assert original in load_prices(store)


def test_seeding_leaves_an_operators_row_alone(store: Store) -> None:
    seed_shipped_prices(store)
    original = next(p for p in shipped_prices() if p.model == "gpt-4o-mini")
    refreshed = replace(original, input_per_mtok=D("0.2"), source="api")
    insert_prices(store, [refreshed])
    try:
        assert seed_shipped_prices(store) == 0
        assert refreshed in load_prices(store)
    finally:
        insert_prices(store, [original])  # the store is shared by the session


def test_project_rows_round_trip_and_override(store: Store, project_id: str) -> None:
    seed_shipped_prices(store)
    own = row("gpt-4o", "1.5", "6", project_id=project_id, cache_read="0.000000000001")
    insert_prices(store, [own])
    loaded = load_prices(store)
    assert own in loaded
    assert {p.project_id for p in loaded} >= {"", project_id}
    call = make_call("gpt-4o", input_tokens=1_000_000, output_tokens=1_000_000)
    pricer = Pricer(loaded)
    assert priced(pricer, call, project_id).total_cost_usd == D("7.5")
    assert priced(pricer, call, "another").total_cost_usd == D("12.5")
