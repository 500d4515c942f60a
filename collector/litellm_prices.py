"""Rows from the community LiteLLM ``model_prices_and_context_window.json``.

That file prices per token as JSON numbers under each model's name; the table
prices per million tokens as Decimal. Numbers are read from the JSON text as
Decimal (never through a float) and shifted by six places, so 2.5e-06 per token
is exactly 2.5 per million. The file has no dates: rows come back dated
``ALWAYS`` and the importer decides when they take effect.

Only token-priced text models are kept (modes ``chat``, ``completion``,
``responses``, ``embedding``); images, audio, rerank and the like are priced
per unit the table cannot express, and are skipped with the reason.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from tokentrail.collector.normalize.base import provider as otel_provider
from tokentrail.schema.prices import ALWAYS, ModelPrice, first_set

Skipped = dict[str, list[str]]  # reason → the file's names skipped for it

SOURCE = "litellm"
_TOKEN_MODES = frozenset({"chat", "completion", "responses", "embedding"})
# llm_calls and model_prices keep 12 decimals of a dollar per million tokens.
_SCALE = Decimal("1e-12")
# LiteLLM's provider names that the collector's provider normalizer does not
# already map onto gen_ai.provider.name values.
_PROVIDERS = {
    "mistral": "mistral_ai",
    "codestral": "mistral_ai",
    "text-completion-codestral": "mistral_ai",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "azure_ai": "azure.ai.inference",
    "text-completion-openai": "openai",
    "cohere_chat": "cohere",
    "watsonx": "ibm.watsonx.ai",
}
# Base field → LiteLLM key. Tier fields use the same key + "_above_<N>k_tokens".
_RATES = {
    "input_per_mtok": "input_cost_per_token",
    "output_per_mtok": "output_cost_per_token",
    "cache_read_per_mtok": "cache_read_input_token_cost",
    "cache_write_per_mtok": "cache_creation_input_token_cost",
    "reasoning_per_mtok": "output_cost_per_reasoning_token",
}
# DeepSeek's entries may name the cache-hit rate this way only.
_CACHE_HIT = "input_cost_per_token_cache_hit"
_TIER_KEY = re.compile(r"^(?P<rate>[a-z_]+)_above_(?P<k>\d+)k_tokens$")
# A path segment naming a region or a commitment rather than a model
# ("azure/eu/gpt-4o", "bedrock/us-east-1/…", "bedrock/*/1-month-commitment/…"):
# no call names its model that way, and its price is not the model's list price.
_REGIONAL = re.compile(
    r"eu|us|apac|global(?:-standard)?|[a-z]{2}(?:-[a-z]+)+-\d+|\*|\d+-month-commitment", re.I
)


class _BadPrice(ValueError):
    pass


def provider_name(litellm_provider: str) -> str:
    """LiteLLM's provider name as the gen_ai.provider.name value calls carry."""
    name = litellm_provider.strip().lower()
    if name.startswith("vertex_ai"):  # vertex_ai-language-models, vertex_ai-anthropic_models …
        name = "vertex_ai"
    return otel_provider(_PROVIDERS.get(name, name)) or ""


def model_name(key: str, provider: str) -> str:
    """The name calls use: ``gemini/gemini-2.5-pro`` → ``gemini-2.5-pro``.

    Only a leading segment that names the entry's own provider is a route; the
    rest is kept whole, since OpenRouter and Together model ids contain a '/'.
    """
    route, slash, rest = key.partition("/")
    return rest if slash and provider_name(route) == provider else key


def _per_mtok(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _BadPrice(f"not a number: {value!r}")
    try:
        per_mtok = Decimal(value).scaleb(6).quantize(_SCALE)
    except InvalidOperation as exc:
        raise _BadPrice(str(value)) from exc
    if per_mtok < 0 or not per_mtok.is_finite():
        raise _BadPrice(str(value))
    return per_mtok


def _optional(entry: dict[str, Any], key: str) -> Decimal | None:
    return None if entry.get(key) is None else _per_mtok(entry[key])


def _tier(entry: dict[str, Any]) -> dict[str, Any]:
    """The tier_* fields from ``*_above_<N>k_tokens`` keys, at the lowest threshold given."""
    by_threshold: dict[int, dict[str, Any]] = {}
    for key, value in entry.items():
        match = _TIER_KEY.match(key)
        if match and match["rate"] in _RATES.values():
            by_threshold.setdefault(int(match["k"]) * 1000, {})[match["rate"]] = value
    if not by_threshold:
        return {}
    # The table holds one tier; the first surcharge is the one most calls cross.
    threshold = min(by_threshold)
    tier = by_threshold[threshold]
    fields: dict[str, Any] = {"tier_threshold_tokens": threshold}
    for field, key in _RATES.items():
        fields["tier_" + field] = _optional(tier, key)
    return fields


def _row(key: str, entry: dict[str, Any], project_id: str) -> ModelPrice:
    provider = provider_name(str(entry.get("litellm_provider", "")))
    embedding = entry.get("mode") == "embedding"
    output = entry.get("output_cost_per_token")
    return ModelPrice(
        project_id=project_id,
        provider=provider,
        model=model_name(key, provider),
        effective_from=ALWAYS,
        match_pattern="",
        input_per_mtok=_per_mtok(entry["input_cost_per_token"]),
        # Embeddings produce no output tokens; LiteLLM often leaves the rate out.
        output_per_mtok=_per_mtok(0 if embedding and output is None else output),
        cache_read_per_mtok=first_set(
            _optional(entry, _RATES["cache_read_per_mtok"]), _optional(entry, _CACHE_HIT)
        ),
        cache_write_per_mtok=_optional(entry, _RATES["cache_write_per_mtok"]),
        reasoning_per_mtok=_optional(entry, _RATES["reasoning_per_mtok"]),
        source=SOURCE,
        **_tier(entry),
    )


def _skip_reason(key: str, entry: Any) -> str | None:
    if key == "sample_spec" or not isinstance(entry, dict):
        return "not a model entry"
    mode = entry.get("mode")
    if mode not in _TOKEN_MODES:
        return f"mode {mode}" if mode else "no mode"
    if "input_cost_per_token" not in entry or (
        mode != "embedding" and "output_cost_per_token" not in entry
    ):
        return "no per-token price"
    if any(_REGIONAL.fullmatch(segment) for segment in key.split("/")[1:-1]):
        return "regional or committed-use variant"
    return None


def litellm_rows(table: dict[str, Any], project_id: str) -> tuple[list[ModelPrice], Skipped]:
    """The file's token-priced models as undated rows, and what was skipped and why."""
    rows: dict[tuple[str, str], ModelPrice] = {}
    skipped: Skipped = {}
    for key, entry in table.items():
        reason = _skip_reason(key, entry)
        if reason is None:
            try:
                row = _row(key, entry, project_id)
            except _BadPrice:
                reason = "invalid price"
            else:
                identity = (row.provider, row.model.lower())
                if identity in rows:
                    reason = "same provider and model as an earlier entry"
                else:
                    rows[identity] = row
        if reason is not None:
            skipped.setdefault(reason, []).append(key)
    return list(rows.values()), skipped
