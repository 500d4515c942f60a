"""``tokentrail prices import``: our own price files and LiteLLM's, into the real store.

Imports into the shipped scope ('') use model names unique to the test: the
store is shared by the session, and other tests price real models through it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from tokentrail.collector.litellm_prices import litellm_rows, model_name, provider_name
from tokentrail.collector.price_import import import_prices
from tokentrail.collector.pricing import Pricer
from tokentrail.collector.records import LlmCall
from tokentrail.schema import Store
from tokentrail.schema.prices import ALWAYS, ModelPrice, load_prices, seed_shipped_prices

D = Decimal
TODAY = datetime.now(timezone.utc).date()

# Numbers are written as LiteLLM writes them (1.25e-06); the test file is JSON
# text, so the importer sees exactly these digits.
LITELLM = """{
  "sample_spec": {"input_cost_per_token": 0.0, "litellm_provider": "one of ...", "mode": "chat"},
  "gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
             "cache_read_input_token_cost": 1.25e-06, "litellm_provider": "openai", "mode": "chat"},
  "gpt-4o-mini": {"input_cost_per_token": 1.6e-07, "output_cost_per_token": 6e-07,
                  "cache_read_input_token_cost": 8e-08, "litellm_provider": "openai",
                  "mode": "chat"},
  "mistral/mistral-large-latest": {"input_cost_per_token": 2e-06, "output_cost_per_token": 6e-06,
                                   "litellm_provider": "mistral", "mode": "chat"},
  "xai/NEW-grok": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
                   "input_cost_per_token_above_128k_tokens": 6e-06,
                   "output_cost_per_token_above_128k_tokens": 3e-05,
                   "litellm_provider": "xai", "mode": "chat"},
  "gemini/NEW-gemini": {"input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
                        "cache_read_input_token_cost": 1.25e-07,
                        "input_cost_per_token_above_200k_tokens": 2.5e-06,
                        "output_cost_per_token_above_200k_tokens": 1.5e-05,
                        "cache_read_input_token_cost_above_200k_tokens": 2.5e-07,
                        "input_cost_per_character_above_128k_tokens": 1e-06,
                        "litellm_provider": "gemini", "mode": "chat"},
  "NEW-claude": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
                 "cache_read_input_token_cost": 3e-07, "cache_creation_input_token_cost": 3.75e-06,
                 "output_cost_per_reasoning_token": 6e-05, "litellm_provider": "anthropic",
                 "mode": "chat"},
  "deepseek/NEW-deepseek": {"input_cost_per_token": 2.8e-07, "output_cost_per_token": 4.2e-07,
                            "input_cost_per_token_cache_hit": 2.8e-08,
                            "litellm_provider": "deepseek", "mode": "chat"},
  "NEW-embed": {"input_cost_per_token": 2e-08, "litellm_provider": "openai", "mode": "embedding"},
  "openrouter/acme/NEW-router": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06,
                                 "litellm_provider": "openrouter", "mode": "chat"},
  "vertex_ai/NEW-vertex@001": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06,
                               "litellm_provider": "vertex_ai-language-models", "mode": "chat"},
  "NEW-instruct": {"input_cost_per_token": 1.5e-06, "output_cost_per_token": 2e-06,
                   "litellm_provider": "text-completion-openai", "mode": "completion"},
  "azure/eu/NEW-regional": {"input_cost_per_token": 2.75e-06, "output_cost_per_token": 1.1e-05,
                            "litellm_provider": "azure", "mode": "chat"},
  "dall-e-3": {"output_cost_per_image": 0.04, "litellm_provider": "openai",
               "mode": "image_generation"},
  "whisper-1": {"input_cost_per_second": 0.0001, "output_cost_per_second": 0.0001,
                "litellm_provider": "openai", "mode": "audio_transcription"},
  "NEW-unpriced": {"max_tokens": 8192, "litellm_provider": "openai", "mode": "chat"},
  "NEW-negative": {"input_cost_per_token": -1e-06, "output_cost_per_token": 1e-06,
                   "litellm_provider": "openai", "mode": "chat"}
}"""


def unique(text: str) -> tuple[str, str]:
    """The file with every NEW-* model renamed to a name only this test uses."""
    tag = uuid.uuid4().hex[:8]
    return text.replace("NEW-", f"new-{tag}-"), f"new-{tag}-"


def rows_by_model(prices: list[ModelPrice], prefix: str) -> dict[str, ModelPrice]:
    return {p.model.split(prefix)[-1]: p for p in prices if prefix in p.model}


# --- reading LiteLLM's format ---------------------------------------------------------


def test_litellm_entries_become_rows_per_million_exactly() -> None:
    rows, _ = litellm_rows(json.loads(LITELLM, parse_float=D), "")
    by_model = {p.model: p for p in rows}

    mini = by_model["gpt-4o-mini"]
    assert (mini.input_per_mtok, mini.output_per_mtok, mini.cache_read_per_mtok) == (
        D("0.16"),
        D("0.6"),
        D("0.08"),
    )
    assert str(mini.cache_read_per_mtok) == "0.080000000000"  # not 0.07999999999999999
    claude = by_model["NEW-claude"]
    assert (claude.cache_write_per_mtok, claude.reasoning_per_mtok) == (D("3.75"), D(60))
    assert (claude.provider, claude.source, claude.effective_from) == (
        "anthropic",
        "litellm",
        ALWAYS,
    )
    deepseek = by_model["NEW-deepseek"]
    assert (deepseek.provider, deepseek.cache_read_per_mtok) == ("deepseek", D("0.028"))
    embed = by_model["NEW-embed"]
    assert (embed.input_per_mtok, embed.output_per_mtok) == (D("0.02"), 0)


def test_litellm_tiers() -> None:
    rows, _ = litellm_rows(json.loads(LITELLM, parse_float=D), "")
    by_model = {p.model: p for p in rows}
    gemini = by_model["NEW-gemini"]
    # The per-character key names no token rate: it adds no tier of its own.
    assert gemini.tier_threshold_tokens == 200_000
    assert (gemini.tier_input_per_mtok, gemini.tier_output_per_mtok) == (D("2.5"), D(15))
    assert gemini.tier_cache_read_per_mtok == D("0.25")
    grok = by_model["NEW-grok"]
    assert (grok.tier_threshold_tokens, grok.tier_input_per_mtok) == (128_000, D(6))
    assert grok.tier_cache_read_per_mtok is None


def test_litellm_names_and_providers() -> None:
    rows, _ = litellm_rows(json.loads(LITELLM, parse_float=D), "")
    found = {p.model: p.provider for p in rows}
    assert found["mistral-large-latest"] == "mistral_ai"
    assert found["NEW-grok"] == "x_ai"
    assert found["NEW-gemini"] == "gcp.gemini"
    assert found["NEW-vertex@001"] == "gcp.vertex_ai"
    assert found["NEW-instruct"] == "openai"
    # An OpenRouter id keeps its own '/': calls through OpenRouter send it whole.
    assert found["acme/NEW-router"] == "openrouter"


@pytest.mark.parametrize(
    ("key", "provider", "expected"),
    [
        ("gemini/gemini-2.5-pro", "gcp.gemini", "gemini-2.5-pro"),
        ("together_ai/meta-llama/Llama-3-70b", "together_ai", "meta-llama/Llama-3-70b"),
        ("meta-llama/Llama-3-70b", "together_ai", "meta-llama/Llama-3-70b"),
        (
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "aws.bedrock",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
        ),
    ],
)
def test_model_name(key: str, provider: str, expected: str) -> None:
    assert model_name(key, provider) == expected


def test_provider_names() -> None:
    assert [
        provider_name(p) for p in ("bedrock_converse", "vertex_ai-anthropic_models", "azure")
    ] == [
        "aws.bedrock",
        "gcp.vertex_ai",
        "azure.ai.openai",
    ]


def test_litellm_skips_are_explained() -> None:
    _, skipped = litellm_rows(json.loads(LITELLM, parse_float=D), "")
    assert skipped == {
        "not a model entry": ["sample_spec"],
        "regional or committed-use variant": ["azure/eu/NEW-regional"],
        "mode image_generation": ["dall-e-3"],
        "mode audio_transcription": ["whisper-1"],
        "no per-token price": ["NEW-unpriced"],
        "invalid price": ["NEW-negative"],
    }


# --- importing into the store ------------------------------------------------------------


def test_import_into_the_shipped_table(store: Store) -> None:
    seed_shipped_prices(store)
    text, prefix = unique(LITELLM)

    report = import_prices(store, text)

    stored = rows_by_model([p for p in load_prices(store) if p.project_id == ""], prefix)
    assert set(stored) == {
        "grok", "gemini", "claude", "deepseek", "embed", "router", "vertex@001", "instruct",
    }  # fmt: skip
    # Models the table did not price: every call, however old, can now be priced.
    assert {p.effective_from for p in stored.values()} == {ALWAYS}
    assert {p.source for p in stored.values()} == {"litellm"}
    assert report.format == "litellm"
    # gpt-4o and mistral-large-latest (through the shipped pattern) are priced alike
    # already; gpt-4o-mini differs from the shipped price.
    assert (report.imported, report.unchanged) == (9, 2)
    assert sum(map(len, report.skipped.values())) == 6
    gpt_4o_mini = [
        p for p in load_prices(store) if p.model == "gpt-4o-mini" and p.source == "litellm"
    ]
    try:
        assert [p.effective_from for p in gpt_4o_mini] == [TODAY]
    finally:
        # Other tests price gpt-4o-mini from the shared store: put the shipped price back.
        store.command(
            "DELETE FROM model_prices WHERE project_id = '' AND model = 'gpt-4o-mini' "
            "AND source = 'litellm'"
        )


def test_importing_twice_changes_nothing(store: Store, project_id: str) -> None:
    seed_shipped_prices(store)
    text, _ = unique(LITELLM)
    first = import_prices(store, text, project_id)
    rows = len(load_prices(store))

    again = import_prices(store, text, project_id)

    assert (again.imported, again.unchanged) == (0, first.imported + first.unchanged)
    assert len(load_prices(store)) == rows


def test_a_project_import_overrides_only_that_project(store: Store, project_id: str) -> None:
    seed_shipped_prices(store)
    report = import_prices(store, LITELLM, project_id)

    own = {p.model: p for p in load_prices(store) if p.project_id == project_id}
    # gpt-4o-mini changed: from today on, so calls already priced keep their price.
    assert own["gpt-4o-mini"].effective_from == TODAY
    assert "gpt-4o" not in own  # same as the shipped price: nothing to override
    assert report.imported == len(own)
    pricer = Pricer(load_prices(store))
    call = LlmCall("t", "s", "", time_ns_of(TODAY), 1, provider="openai",
                   request_model="gpt-4o-mini", input_tokens=1_000_000)  # fmt: skip
    pricer.price(project_id, call)
    assert call.input_cost_usd == D("0.16")
    pricer.price("someone-else", call)
    assert call.input_cost_usd == D("0.15")


def test_an_operator_chosen_date(store: Store, project_id: str) -> None:
    seed_shipped_prices(store)
    import_prices(store, LITELLM, project_id, effective_from=date(2025, 1, 1))
    own = [p for p in load_prices(store) if p.project_id == project_id]
    assert {p.effective_from for p in own} == {date(2025, 1, 1)}


def test_our_own_format(store: Store, project_id: str) -> None:
    table = {
        "models": [
            {"provider": "acme", "model": "acme-1", "aliases": ["acme-1-latest"],
             "effective_from": "2025-03-01", "input": 0.075, "output": 0.3,
             "tier": {"above_input_tokens": 100000, "input": 0.15}},
        ]
    }  # fmt: skip
    text = json.dumps(table)
    report = import_prices(store, text, project_id)
    again = import_prices(store, text, project_id)

    own = {p.model: p for p in load_prices(store) if p.project_id == project_id}
    assert set(own) == {"acme-1", "acme-1-latest"}
    assert own["acme-1"].input_per_mtok == D("0.075")
    assert own["acme-1"].tier_input_per_mtok == D("0.15")
    assert own["acme-1"].source == "import"
    assert (report.format, report.imported, again.imported, again.unchanged) == (
        "tokentrail",
        2,
        0,
        2,
    )


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"models": [{"model": "x"}]}'])
def test_unreadable_files_are_refused(store: Store, text: str) -> None:
    with pytest.raises(ValueError):
        import_prices(store, text, "never-written")


def time_ns_of(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc).timestamp()) * 10**9


# --- the command -------------------------------------------------------------------------


def test_the_command_reports_counts(tmp_path: Path) -> None:
    # A process of its own: chDB runs one data directory per process.
    price_file = tmp_path / "model_prices_and_context_window.json"
    price_file.write_text(LITELLM, encoding="utf-8")
    command = [sys.executable, "-m", "tokentrail.cli", "prices", "import", str(price_file),
               "--data-dir", str(tmp_path / "data")]  # fmt: skip

    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "litellm file: imported 9 price rows into the shipped table, 2 unchanged, 6 skipped"
    )
    assert "  skipped 1: mode image_generation (dall-e-3)" in lines
    missing = subprocess.run(
        [*command[:5], str(tmp_path / "nope.json"), *command[6:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 2 and "nope.json" in missing.stderr
