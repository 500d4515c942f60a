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
    delete_prices,
    insert_prices,
    load_prices,
    project_prices,
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
    tier: dict[str, Any] | None = None,
) -> ModelPrice:
    """A price row; ``tier`` holds tier_* fields, rates as strings."""
    tier_fields = {
        name: value if name == "tier_threshold_tokens" else D(value)
        for name, value in (tier or {}).items()
    }
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
        **tier_fields,
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


# --- long-context tiers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("input_tokens", "input_cost", "output_cost"),
    [
        # at the threshold: base rates. 200,000 x $1.25; 1,000 x $10
        (200_000, "0.25", "0.01"),
        # one token over: the WHOLE call at the tier. 200,001 x $2.50; 1,000 x $15
        (200_001, "0.5000025", "0.015"),
    ],
)
def test_gemini_2_5_pro_above_200k_is_charged_whole_at_the_tier(
    input_tokens: int, input_cost: str, output_cost: str
) -> None:
    call = make_call(
        "gemini-2.5-pro-002", provider="gcp.gemini", input_tokens=input_tokens, output_tokens=1_000
    )
    priced(SHIPPED, call)
    assert (call.input_cost_usd, call.output_cost_usd) == (D(input_cost), D(output_cost))


def test_cached_tokens_count_towards_the_threshold() -> None:
    # Sonnet 4.5 through Bedrock: 250,000 prompt tokens, 200,000 of them cache reads.
    call = make_call(
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        provider="aws.bedrock",
        input_tokens=250_000,
        cache_read_tokens=200_000,
        cache_write_tokens=10_000,
        output_tokens=1_000,
    )
    priced(SHIPPED, call)
    # 40,000 x $6 + 200,000 x $0.60 + 10,000 x $7.50 = 435,000 per M; 1,000 x $22.50
    assert (call.input_cost_usd, call.output_cost_usd) == (D("0.435"), D("0.0225"))


def test_cache_counted_on_top_of_input_also_counts_towards_the_threshold() -> None:
    tiered = row("m", "1", "2", tier={"tier_threshold_tokens": 1_000, "tier_input_per_mtok": "3"})
    # 600 cached > 500 input: counted on top, a 1,100-token prompt. 500 x $3 + 600 x $3
    call = make_call("m", input_tokens=500, cache_read_tokens=600)
    assert cost_of(tiered, call)[0] == D("0.0033")


def test_rates_a_tier_leaves_out_stay_the_base_rates() -> None:
    tiered = row(
        "m",
        "1",
        "2",
        cache_read="0.1",
        tier={"tier_threshold_tokens": 10, "tier_input_per_mtok": "4"},
    )
    call = make_call("m", input_tokens=1_000, cache_read_tokens=500, output_tokens=1_000)
    # 500 x $4 + 500 x $0.10 (base cache rate) = 2,050 per M; 1,000 x $2 (base output)
    assert cost_of(tiered, call) == (D("0.00205"), D("0.002"))


def test_grok_4_above_128k() -> None:
    call = make_call("grok-4-0709", provider="x_ai", input_tokens=128_001, output_tokens=1_000)
    priced(SHIPPED, call)
    # 128,001 x $6 = 768,006 per M; 1,000 x $30
    assert (call.input_cost_usd, call.output_cost_usd) == (D("0.768006"), D("0.03"))


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


def test_sellers_agreeing_on_the_price_are_no_guess() -> None:
    # An imported LiteLLM table lists Azure's gpt-4o next to OpenAI's, at one price.
    pricer = Pricer(
        [
            row("gpt-x", "2", "8", provider="openai"),
            row("gpt-x", "2", "8", provider="azure.ai.openai", effective_from="2025-01-01"),
        ]
    )
    call = make_call("gpt-x", provider="", input_tokens=10**6)
    assert (priced(pricer, call).price_status, call.input_cost_usd) == ("priced", D(2))


def test_sellers_agree_by_the_rows_in_effect_on_the_day() -> None:
    pricer = Pricer(
        [
            row("gpt-x", "2", "8", provider="openai"),
            row("gpt-x", "5", "8", provider="azure.ai.openai"),
            row("gpt-x", "2", "8", provider="azure.ai.openai", effective_from="2025-06-01"),
        ]
    )
    assert priced(pricer, make_call("gpt-x", provider="", on="2025-05-01")).price_status == (
        "unpriced"
    )
    assert priced(pricer, make_call("gpt-x", provider="", on="2025-07-01")).price_status == (
        "priced"
    )


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


_SNAPSHOT_SUFFIX = {
    "openai": "-2025-01-01",
    "anthropic": "-20250101",
    "gcp.gemini": "-001",
    "mistral_ai": "-2501",
    "x_ai": "-latest",
}


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


def test_shipped_tiers_are_surcharges() -> None:
    tiered = [p for p in shipped_prices() if p.tier_threshold_tokens is not None]
    assert {p.model for p in tiered} >= {"gemini-2.5-pro", "claude-sonnet-4-5", "claude-sonnet-4"}
    for price in tiered:
        assert price.tier_threshold_tokens and price.tier_threshold_tokens >= 100_000
        above = price.for_prompt(price.tier_threshold_tokens + 1)
        assert above.input_per_mtok > price.input_per_mtok
        assert above.output_per_mtok >= price.output_per_mtok
        assert price.for_prompt(price.tier_threshold_tokens) is price


@pytest.mark.parametrize(
    ("provider", "model", "on", "rates"),
    [
        # DeepSeek V3.2-Exp price cut on 2025-09-29, cache hits at a tenth.
        ("deepseek", "deepseek-chat", "2025-10-01", ("0.28", "0.42", "0.028")),
        ("deepseek", "deepseek-reasoner", "2025-09-10", ("0.56", "1.68", "0.07")),
        ("deepseek", "deepseek-reasoner", "2025-03-01", ("0.55", "2.19", "0.14")),
        ("mistral_ai", "mistral-large-latest", "2025-10-01", ("2", "6", None)),
        ("mistral_ai", "codestral-2508", "2025-10-01", ("0.3", "0.9", None)),
        ("mistral_ai", "mistral-embed", "2025-10-01", ("0.1", "0", None)),
        ("x_ai", "grok-4-fast-non-reasoning", "2025-10-01", ("0.2", "0.5", "0.05")),
        ("x_ai", "grok-3-mini-latest", "2025-10-01", ("0.3", "0.5", "0.075")),
        ("openai", "text-embedding-ada-002", "2025-10-01", ("0.1", "0", None)),
        ("gcp.gemini", "gemini-embedding-001", "2025-10-01", ("0.15", "0", None)),
    ],
)
def test_shipped_providers(
    provider: str, model: str, on: str, rates: tuple[str, str, str | None]
) -> None:
    found = SHIPPED.find("", provider, (model,), date.fromisoformat(on))
    assert found is not None
    cache = found.cache_read_per_mtok
    assert (found.input_per_mtok, found.output_per_mtok, cache) == (
        D(rates[0]),
        D(rates[1]),
        None if rates[2] is None else D(rates[2]),
    )


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


def test_tiers_round_trip(store: Store, project_id: str) -> None:
    tier = {
        "tier_threshold_tokens": 200_000,
        "tier_input_per_mtok": "6",
        "tier_reasoning_per_mtok": "0",
    }
    own = row("long", "3", "15", project_id=project_id, tier=tier)
    insert_prices(store, [own])
    (stored,) = [p for p in project_prices(store, project_id) if p.project_id == project_id]
    assert stored == own
    assert stored.tier_reasoning_per_mtok == 0 and stored.tier_output_per_mtok is None


def test_project_prices_are_the_projects_and_the_shipped_ones(
    store: Store, project_id: str
) -> None:
    seed_shipped_prices(store)
    insert_prices(store, [row("mine", "1", "1", project_id=project_id)])
    insert_prices(store, [row("theirs", "1", "1", project_id=project_id + "-other")])
    scopes = {p.project_id for p in project_prices(store, project_id)}
    assert scopes == {"", project_id}


def test_deleting_a_projects_rows(store: Store, project_id: str) -> None:
    insert_prices(
        store,
        [
            row("m", "1", "1", project_id=project_id),
            row("m", "2", "2", project_id=project_id, effective_from="2025-01-01"),
            row("m", "3", "3", project_id=project_id, provider="azure.ai.openai"),
        ],
    )
    assert delete_prices(store, project_id, "m", "openai", date(2025, 1, 1)) == 1
    assert delete_prices(store, project_id, "m", "azure.ai.openai") == 1
    assert [p.input_per_mtok for p in project_prices(store, project_id) if p.model == "m"] == [1]
    assert delete_prices(store, project_id, "m") == 1
    assert delete_prices(store, project_id, "m") == 0
    with pytest.raises(ValueError):
        delete_prices(store, "", "gpt-4o")
