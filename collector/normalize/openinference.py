"""OpenInference (Arize Phoenix): ``llm.*`` keys, span kinds, flattened messages, evaluations.

Lists of objects arrive flattened into indexed keys, e.g.
``llm.input_messages.0.message.role``; messages become OTel GenAI messages and
``annotations.{i}.annotation.*`` / ``evaluations.{i}.evaluation.*`` results
become scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from tokentrail.collector.normalize.base import (
    Evaluation,
    Reader,
    Source,
    cost,
    indexed,
    key_matcher,
    text,
)
from tokentrail.collector.normalize.messages import Message, encode, message_of, messages_of
from tokentrail.collector.records import Attributes, Span

CONVENTION = "openinference"

SPAN_KIND = "openinference.span.kind"
_CALL_KINDS = frozenset({"LLM", "EMBEDDING"})
# Kinds that group or surround model calls (an agent's usage repeats its
# children's): never priced. UNKNOWN says nothing either way.
_OTHER_KINDS = frozenset(
    {"AGENT", "TOOL", "CHAIN", "RETRIEVER", "RERANKER", "GUARDRAIL", "EVALUATOR", "PROMPT"}
)


def _verdict(span: Span) -> bool | None:
    kind = (text(span.attributes.get(SPAN_KIND)) or "").upper()
    return True if kind in _CALL_KINDS else False if kind in _OTHER_KINDS else None


# --- fields ----------------------------------------------------------------------


def _cost_parts(attributes: Attributes, span: Span) -> Any:
    """``llm.cost.prompt`` + ``llm.cost.completion`` when no total was sent."""
    parts = [found for key in ("llm.cost.prompt", "llm.cost.completion")
             if (found := cost(attributes.get(key))) is not None]  # fmt: skip
    return sum(parts) if parts else None


FIELDS: Mapping[str, tuple[str | Source, ...]] = {
    "provider": ("llm.provider", "llm.system"),
    # embedding.model_name: EMBEDDING spans name their model there instead.
    "request_model": ("llm.request.model_name", "llm.model_name", "embedding.model_name"),
    "response_model": ("llm.response.model_name",),
    "input_tokens": ("llm.token_count.prompt",),
    "output_tokens": ("llm.token_count.completion",),
    "total_tokens": ("llm.token_count.total",),
    "cache_read_tokens": ("llm.token_count.prompt_details.cache_read",),
    "cache_write_tokens": ("llm.token_count.prompt_details.cache_write",),
    "reasoning_tokens": ("llm.token_count.completion_details.reasoning",),
    "provided_cost_usd": (
        "llm.cost.total",
        Source("llm.cost.prompt", _cost_parts, also=("llm.cost.completion",)),
    ),
    "finish_reasons": ("llm.finish_reason",),
}

# --- content ---------------------------------------------------------------------


def _content_blocks(flat: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``message.contents.{j}.message_content.*`` as provider-style content blocks."""
    blocks: list[dict[str, Any]] = []
    for item in indexed(flat, "contents."):
        kind = text(item.get("message_content.type")) or "text"
        if kind == "text":
            blocks.append({"type": "text", "text": item.get("message_content.text")})
        elif kind == "image":
            url = item.get("message_content.image.image.url")
            blocks.append({"type": "image_url", "image_url": {"url": url}})
        else:  # audio, documents...: kept as sent, under their own type
            fields = {k.removeprefix("message_content."): v for k, v in item.items()}
            blocks.append({**fields, "type": kind})
    return blocks


def _message(flat: Mapping[str, Any], role: str) -> Message:
    """One flattened ``message.*`` object as an OTel message."""
    body: dict[str, Any] = {
        "role": flat.get("role"),
        "content": _content_blocks(flat) or flat.get("content"),
        "tool_call_id": flat.get("tool_call_id"),
        "tool_calls": [
            {
                "id": call.get("tool_call.id"),
                "function": {
                    "name": call.get("tool_call.function.name"),
                    "arguments": call.get("tool_call.function.arguments"),
                },
            }
            for call in indexed(flat, "tool_calls.")
        ],
    }
    if (name := flat.get("function_call_name")) is not None:
        body["function_call"] = {
            "name": name,
            "arguments": flat.get("function_call_arguments_json"),
        }
    return message_of(body, role)


def _messages(attributes: Attributes, prefix: str, role: str) -> list[Message]:
    items = indexed(attributes, prefix)
    return [
        _message({k.removeprefix("message."): v for k, v in item.items()}, role) for item in items
    ]


def _texts(attributes: Attributes, prefix: str, key: str, role: str) -> list[Message]:
    """``llm.prompts.{i}.prompt.text`` / ``llm.choices.{i}.completion.text`` (completions API)."""
    found: list[Message] = []
    for item in indexed(attributes, prefix):
        found += messages_of(item.get(key), role)
    return found


def message_content(span: Span) -> tuple[str, str]:
    """Prompt and completion from the flattened message lists."""
    attributes = span.attributes
    prompt = _messages(attributes, "llm.input_messages.", "user") or _texts(
        attributes, "llm.prompts.", "prompt.text", "user"
    )
    completion = _messages(attributes, "llm.output_messages.", "assistant") or _texts(
        attributes, "llm.choices.", "completion.text", "assistant"
    )
    return encode(prompt), encode(completion)


def value_content(span: Span) -> tuple[str, str]:
    """Prompt and completion from ``input.value`` / ``output.value``: JSON bodies, or text."""
    attributes = span.attributes
    return (
        encode(messages_of(attributes.get("input.value"), "user")),
        encode(messages_of(attributes.get("output.value"), "assistant")),
    )


# --- evaluations -----------------------------------------------------------------

# Every form OpenInference carries results in: indexed lists judging this span
# or (``trace.``) the whole trace, and the single reserved ``annotation.*`` /
# ``evaluation.*`` object. Session-scoped results have no target here.
_FORMS = (
    ("annotations.", "annotation.", False),
    ("evaluations.", "evaluation.", False),
    ("trace.annotations.", "annotation.", True),
    ("trace.evaluations.", "evaluation.", True),
)
_SOURCES = {"HUMAN": "human", "LLM": "evaluator", "CODE": "evaluator"}


def _result(
    span: Span, fields: Mapping[str, Any], where: str, whole_trace: bool
) -> Evaluation | None:
    name = text(fields.get("name"))
    if name is None:
        return None
    identifier = text(fields.get("identifier"))
    # The spec makes (target, name, identifier) the identity when given; else
    # where it sits on this span, which a re-sent span repeats exactly.
    identity = f"{name}:{identifier}" if identifier else f"{where}:{name}"
    kind = (text(fields.get("annotator_kind")) or "").upper()
    return Evaluation(
        name=name,
        value=fields.get("score"),
        label=text(fields.get("label")) or "",
        explanation=text(fields.get("explanation")) or "",
        time_unix_nano=span.end_time_unix_nano,
        span_id="" if whole_trace else span.span_id,
        identity=identity,
        source=_SOURCES.get(kind, "evaluator"),
    )


_OBJECT_PREFIXES = ("annotation.", "evaluation.")
_RESULT_PREFIXES = (*(form[0] for form in _FORMS), *_OBJECT_PREFIXES)


@lru_cache(maxsize=1024)
def _carries_results(keys: tuple[str, ...]) -> bool:
    return any(key.startswith(_RESULT_PREFIXES) for key in keys)


def evaluations(span: Span) -> list[Evaluation]:
    """Results in ``annotations.*`` / ``evaluations.*``, their ``trace.`` forms, single objects."""
    attributes = span.attributes
    found: list[Evaluation] = []
    # Every span passes through here and almost none carry results: a check per
    # key set spares the six scans below.
    if not _carries_results(tuple(attributes)):
        return found
    for list_prefix, object_prefix, whole_trace in _FORMS:
        for index, item in enumerate(indexed(attributes, list_prefix)):
            fields = {k.removeprefix(object_prefix): v for k, v in item.items()}
            where = f"{list_prefix}{index}"
            if result := _result(span, fields, where, whole_trace):
                found.append(result)
    for object_prefix in _OBJECT_PREFIXES:
        fields = {k.removeprefix(object_prefix): v for k, v in attributes.items()
                  if k.startswith(object_prefix)}  # fmt: skip
        if result := _result(span, fields, object_prefix, whole_trace=False):
            found.append(result)
    return found


# --- the reader ------------------------------------------------------------------

_UNDERSTOOD = (
    SPAN_KIND, "llm.input_messages.*", "llm.output_messages.*", "llm.prompts.*", "llm.choices.*",
    "input.value", "input.mime_type", "output.value", "output.mime_type",
    "annotation.*", "evaluation.*", "annotations.*", "evaluations.*",
    # Described by the spec, left in `spans` only: parameters, tool and prompt
    # template descriptors, modality and price breakdowns of counts already read.
    "llm.invocation_parameters", "llm.tools.*", "llm.function_call", "llm.prompt_template.*",
    "llm.token_count.prompt_details.*", "llm.token_count.completion_details.*",
    "llm.cost.*", "embedding.*", "input.images.*", "output.images.*",
    "input.documents.*", "output.documents.*",
)  # fmt: skip
_marked = key_matcher(
    ("llm.token_count.*", "llm.model_name", "llm.input_messages.*", "llm.output_messages.*")
)

OPENINFERENCE = Reader(
    convention=CONVENTION,
    fields=FIELDS,
    claims=lambda keys: SPAN_KIND in keys or any(map(_marked, keys)),
    is_call=_verdict,
    verdict_keys=(SPAN_KIND,),
    understood=_UNDERSTOOD,
    evaluations=evaluations,
)
