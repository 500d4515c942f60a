"""Which spans are LLM calls, and the canonical :class:`LlmCall` of one."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from tokentrail.collector.normalize.base import MAX_TOKENS, text
from tokentrail.collector.normalize.otel_genai import LLM_OPERATIONS
from tokentrail.collector.normalize.registry import (
    CONTENT,
    MODEL_KEYS,
    SOURCES,
    convention_of,
    lookup,
    unknown_keys,
    values,
    verdicts,
)
from tokentrail.collector.records import LlmCall, Span

_FIELDS = tuple(SOURCES)
_MODEL_KEYS = frozenset(MODEL_KEYS)


def is_grouping_span(span: Span) -> bool:
    """True for an agent, tool or workflow span in any convention: never an LLM call."""
    return False in verdicts(span)


@lru_cache(maxsize=1024)  # most spans without a verdict are no calls: skip reading them
def _may_name_a_call(keys: tuple[str, ...]) -> bool:
    """Whether attributes with these keys may name an LLM operation or a model."""
    present = frozenset(keys)
    return any(source.can_read(present) for source in SOURCES["operation"]) or not (
        _MODEL_KEYS.isdisjoint(present)
    )


def is_llm_span(span: Span) -> bool:
    """True for a span that is one LLM operation (CONVENTIONS.md), never an agent/tool span."""
    said = verdicts(span)
    if False in said:
        return False
    if True in said:
        return True
    if not _may_name_a_call(tuple(span.attributes)):
        return False
    # Span attributes only: a resource-wide operation or model would turn every
    # span of the service into an LLM call.
    operation = (lookup(span, "operation", resource=False) or "").lower()
    attributes = span.attributes
    return operation in LLM_OPERATIONS or any(
        text(attributes[key]) for key in attributes.keys() & _MODEL_KEYS
    )


def _error_type(span: Span) -> str:
    """The error's type when the span failed, else "".

    A set ``error.type`` alone also marks failure: OTel says to set it exactly
    when the operation ended in error, and some senders forget the status.
    """
    declared = text(span.attributes.get("error.type"))
    if span.status_code != "Error" and declared is None:
        return ""
    raised = (
        text(e.attributes.get("exception.type")) for e in span.events if e.name == "exception"
    )
    return declared or next((t for t in raised if t), None) or "error"


def _content(span: Span) -> tuple[str, str]:
    prompt = completion = ""
    for source in CONTENT:
        if prompt and completion:
            break
        found_prompt, found_completion = source(span)
        prompt, completion = prompt or found_prompt, completion or found_completion
    return prompt, completion


def _reconcile(found: dict[str, Any]) -> None:
    """Fold cache and reasoning counts into input and output when the sender counted them apart.

    tokentrail, like OTel GenAI, counts them inside. The total is only a check
    (never priced): when it equals the counts summed with a subset on top, the
    sender counted that subset apart.
    """
    total = found.pop("total_tokens", None)
    if total is None:
        return
    inputs, outputs = found.get("input_tokens", 0), found.get("output_tokens", 0)
    cached = found.get("cache_read_tokens", 0) + found.get("cache_write_tokens", 0)
    reasoning = found.get("reasoning_tokens", 0)
    if total == inputs + outputs:
        return
    for extra_in, extra_out in ((cached, 0), (0, reasoning), (cached, reasoning)):
        if (extra_in or extra_out) and total == inputs + outputs + extra_in + extra_out:
            found["input_tokens"] = min(inputs + extra_in, MAX_TOKENS)
            found["output_tokens"] = min(outputs + extra_out, MAX_TOKENS)
            return


def to_llm_call(span: Span) -> LlmCall | None:
    """The span's canonical LLM call, or None when the span is not one."""
    if not is_llm_span(span):
        return None
    found = values(span, _FIELDS)
    _reconcile(found)
    prompt, completion = _content(span)
    error_type = _error_type(span)
    return LlmCall(
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
        start_time_unix_nano=span.start_time_unix_nano,
        duration_ns=span.duration_ns,
        service=span.service_name,
        status_code="Error" if error_type else span.status_code,
        error_type=error_type,
        prompt=prompt,
        completion=completion,
        convention=convention_of(span),
        unknown_keys=unknown_keys(span),
        **found,
    )
