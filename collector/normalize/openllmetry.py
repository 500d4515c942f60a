"""OpenLLMetry / Traceloop: indexed prompt keys, ``llm.*`` usage, association properties, workflows.

Current Traceloop instrumentations (0.62) write mostly OTel GenAI keys, which
that reader reads; what is Traceloop's own is read here: ``llm.request.type``,
``llm.usage.*``, streaming flags, the ``gen_ai.prompt.{i}.*`` /
``gen_ai.completion.{i}.*`` content of older releases, the Traceloop SDK's
association properties and workflow names, and its span kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokentrail.collector.normalize.base import Reader, Source, indexed, key_matcher, text
from tokentrail.collector.normalize.messages import (
    Message,
    choice_of,
    decoded_blocks,
    encode,
    message_of,
    messages_of,
)
from tokentrail.collector.records import Attributes, Span

CONVENTION = "openllmetry"

SPAN_KIND = "traceloop.span.kind"
REQUEST_TYPE = "llm.request.type"
# Traceloop SDK decorators: a workflow, task, agent or tool wraps model calls
# and may repeat their usage, so it is never priced.
_OTHER_KINDS = frozenset({"workflow", "task", "agent", "tool"})
_PROMPT = "gen_ai.prompt."
_COMPLETION = "gen_ai.completion."
_PROPERTIES = "traceloop.association.properties."


def _verdict(span: Span) -> bool | None:
    if (text(span.attributes.get(SPAN_KIND)) or "").lower() in _OTHER_KINDS:
        return False
    # Old OpenLLMetry marked every model call with a request type, and nothing else.
    return True if text(span.attributes.get(REQUEST_TYPE)) else None


# --- fields ----------------------------------------------------------------------

# llm.request.type values → gen_ai.operation.name values.
_OPERATIONS = {"embedding": "embeddings", "unknown": None}


def _operation(attributes: Attributes, span: Span) -> Any:
    kind = (text(attributes.get(REQUEST_TYPE)) or "").lower()
    return _OPERATIONS.get(kind, kind) or None


def _choice_reasons(attributes: Attributes, span: Span) -> Any:
    """``gen_ai.completion.{i}.finish_reason`` of every choice."""
    return [item.get("finish_reason") for item in indexed(attributes, _COMPLETION)] or None


FIELDS: Mapping[str, tuple[str | Source, ...]] = {
    "operation": (Source(REQUEST_TYPE, _operation),),
    "input_tokens": ("llm.usage.prompt_tokens",),
    "output_tokens": ("llm.usage.completion_tokens",),
    "total_tokens": ("llm.usage.total_tokens",),
    "reasoning_tokens": ("llm.usage.reasoning_tokens",),
    "streaming": ("gen_ai.is_streaming", "llm.is_streaming"),
    "finish_reasons": (
        "llm.response.finish_reason",
        Source(_COMPLETION + "{i}.finish_reason", _choice_reasons),
    ),
    "feature": ("traceloop.workflow.name",),
    "user_id": ("gen_ai.user", _PROPERTIES + "user_id", "llm.user"),
    "session_id": (_PROPERTIES + "session_id",),
}

# --- content ---------------------------------------------------------------------


def _body(item: Mapping[str, Any]) -> dict[str, Any]:
    """A flattened ``gen_ai.prompt.{i}.*`` / ``gen_ai.completion.{i}.*`` object, as a message."""
    return {
        "role": item.get("role"),
        "content": decoded_blocks(item.get("content")),
        "tool_call_id": item.get("tool_call_id"),
        "tool_calls": indexed(item, "tool_calls."),  # {id, name, arguments} each
    }


def _prompt(attributes: Attributes) -> list[Message]:
    return [message_of(_body(item), "user") for item in indexed(attributes, _PROMPT)]


def _completion(attributes: Attributes) -> list[Message]:
    return [
        choice_of({"message": _body(item), "finish_reason": item.get("finish_reason")})
        for item in indexed(attributes, _COMPLETION)
    ]


def indexed_content(span: Span) -> tuple[str, str]:
    """Prompt and completion from ``gen_ai.prompt.{i}.*`` / ``gen_ai.completion.{i}.*``."""
    return encode(_prompt(span.attributes)), encode(_completion(span.attributes))


def entity_content(span: Span) -> tuple[str, str]:
    """Prompt and completion from ``traceloop.entity.input`` / ``.output`` (decorated functions)."""
    attributes = span.attributes
    return (
        encode(messages_of(attributes.get("traceloop.entity.input"), "user")),
        encode(messages_of(attributes.get("traceloop.entity.output"), "assistant")),
    )


# --- the reader ------------------------------------------------------------------

_marked = key_matcher(
    (
        "traceloop.*", REQUEST_TYPE, "llm.usage.*", "llm.is_streaming", "gen_ai.is_streaming",
        _PROMPT + "{i}.*", _COMPLETION + "{i}.*",
    )
)  # fmt: skip

_UNDERSTOOD = (
    SPAN_KIND, _PROMPT + "{i}.*", _COMPLETION + "{i}.*", "traceloop.entity.*",
    _PROPERTIES + "*", "traceloop.prompt.*", "traceloop.correlation.id",
    # Traceloop's own descriptors, left in `spans` only: request parameters,
    # headers, content-filter results, token-type and vendor extras.
    "llm.usage.*", "llm.request.*", "llm.response.*", "llm.headers", "llm.top_k",
    "llm.frequency_penalty", "llm.presence_penalty", "llm.chat.stop_sequences",
    "llm.watsonx.*", "llm.openai.*", "gen_ai.headers", "gen_ai.usage.token_type",
    "gen_ai.response.stop_reason", _PROMPT + "prompt_filter_results",
)  # fmt: skip

OPENLLMETRY = Reader(
    convention=CONVENTION,
    fields=FIELDS,
    claims=lambda keys: any(map(_marked, keys)),
    is_call=_verdict,
    verdict_keys=(SPAN_KIND, REQUEST_TYPE),
    understood=_UNDERSTOOD,
)
