"""Langfuse OTel ingestion: ``langfuse.observation.*`` / ``langfuse.trace.*`` keys.

Usage and cost arrive as JSON objects. Langfuse counts usage types apart
(``input`` excludes ``input_cached_tokens``, and ``total`` is the sum of every
type), while tokentrail counts cache and reasoning tokens inside input and
output as OTel GenAI does: the subsets are folded back in here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tokentrail.collector.normalize.base import (
    Reader,
    Source,
    cost,
    epoch_ns,
    json_object,
    text,
    tokens,
)
from tokentrail.collector.normalize.messages import encode, messages_of
from tokentrail.collector.records import Attributes, Span

CONVENTION = "langfuse"

TYPE = "langfuse.observation.type"
_CALL_TYPES = frozenset({"generation", "embedding"})
# Observations that group or surround model calls: never priced.
_OTHER_TYPES = frozenset(
    {"span", "event", "agent", "tool", "chain", "retriever", "evaluator", "guardrail"}
)
USAGE = "langfuse.observation.usage_details"
COST = "langfuse.observation.cost_details"
COMPLETION_START = "langfuse.observation.completion_start_time"


def _verdict(span: Span) -> bool | None:
    kind = (text(span.attributes.get(TYPE)) or "").lower()
    return True if kind in _CALL_TYPES else False if kind in _OTHER_TYPES else None


# --- fields ----------------------------------------------------------------------

# Usage types that count cached input, by the spellings Langfuse's integrations
# use (OpenAI-style details, Anthropic's own names, generic ones).
_CACHE_READ = ("input_cached_tokens", "cache_read_input_tokens", "input_cache_read")
_CACHE_WRITE = ("cache_creation_input_tokens", "input_cache_creation", "input_cache_write")
_REASONING = ("output_reasoning_tokens", "output_reasoning")


def _usage(attributes: Attributes) -> dict[str, int]:
    usage = json_object(attributes.get(USAGE))
    return {str(k): count for k, v in usage.items() if (count := tokens(v)) is not None}


def _first(usage: Mapping[str, int], names: Iterable[str]) -> int | None:
    return next((usage[name] for name in names if name in usage), None)


def _side(usage: Mapping[str, int], side: str, extras: Iterable[str] = ()) -> int | None:
    """``input``/``output`` plus every subset type Langfuse counted apart from it."""
    if side not in usage:
        return None
    subsets = (count for name, count in usage.items()
               if name.startswith(side + "_") or name in extras)  # fmt: skip
    return usage[side] + sum(subsets)


def _usage_field(read: Callable[[Mapping[str, int]], int | None]) -> Source:
    return Source(USAGE, lambda attributes, span: read(_usage(attributes)))


def _cost_total(attributes: Attributes, span: Span) -> Any:
    """``total``; else the sum of the parts, which is how Langfuse totals them."""
    details = json_object(attributes.get(COST))
    if "total" in details:
        return details["total"]
    parts = [found for value in details.values() if (found := cost(value)) is not None]
    return sum(parts) if parts else None


def _time_to_first_token(attributes: Attributes, span: Span) -> Any:
    started = epoch_ns(attributes.get(COMPLETION_START))
    return None if started is None else (started - span.start_time_unix_nano) / 1e9


FIELDS: Mapping[str, tuple[str | Source, ...]] = {
    # `model`: a bare key Langfuse's ingestion also takes the model from.
    "request_model": ("langfuse.observation.model.name", "model"),
    "input_tokens": (
        _usage_field(lambda usage: _side(usage, "input", _CACHE_READ + _CACHE_WRITE)),
    ),
    "output_tokens": (_usage_field(lambda usage: _side(usage, "output")),),
    "total_tokens": (_usage_field(lambda usage: usage.get("total")),),
    "cache_read_tokens": (_usage_field(lambda usage: _first(usage, _CACHE_READ)),),
    "cache_write_tokens": (_usage_field(lambda usage: _first(usage, _CACHE_WRITE)),),
    "reasoning_tokens": (_usage_field(lambda usage: _first(usage, _REASONING)),),
    "provided_cost_usd": (Source(COST, _cost_total),),
    "time_to_first_token_s": (Source(COMPLETION_START, _time_to_first_token),),
    "environment": ("langfuse.environment",),
    "feature": ("langfuse.trace.name",),
    "user_id": ("langfuse.user.id",),
    "session_id": ("langfuse.session.id",),
}

# --- content ---------------------------------------------------------------------


def content(span: Span) -> tuple[str, str]:
    """Prompt and completion from ``langfuse.observation.input`` / ``.output`` (JSON or text)."""
    attributes = span.attributes
    return (
        encode(messages_of(attributes.get("langfuse.observation.input"), "user")),
        encode(messages_of(attributes.get("langfuse.observation.output"), "assistant")),
    )


# --- the reader ------------------------------------------------------------------

_UNDERSTOOD = (
    TYPE, "langfuse.observation.input", "langfuse.observation.output",
    # Langfuse's own descriptors, left in `spans` only: metadata, level,
    # parameters, prompt references, trace-wide input/output and tags.
    "langfuse.observation.metadata", "langfuse.observation.metadata.*",
    "langfuse.observation.level", "langfuse.observation.status_message",
    "langfuse.observation.model.parameters", "langfuse.observation.prompt.*",
    "langfuse.trace.*", "langfuse.release", "langfuse.version", "langfuse.internal.*",
)  # fmt: skip

LANGFUSE = Reader(
    convention=CONVENTION,
    fields=FIELDS,
    claims=lambda keys: any(key.startswith("langfuse.") for key in keys),
    is_call=_verdict,
    verdict_keys=(TYPE,),
    understood=_UNDERSTOOD,
)
