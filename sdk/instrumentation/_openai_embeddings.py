"""OpenAI Embeddings: request attributes and response outcome (no content, no streams)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.util.types import AttributeValue

from tokentrail import semconv
from tokentrail.instrumentation._spans import Kind, Outcome, request_params

OPERATION = "embeddings"

PARAMS: tuple[tuple[str, str, Kind], ...] = (
    ("dimensions", semconv.EMBEDDINGS_DIMENSION_COUNT, "int"),
    ("encoding_format", semconv.REQUEST_ENCODING_FORMATS, "str[]"),
)


def request_attributes(kwargs: Mapping[str, Any]) -> dict[str, AttributeValue]:
    return request_params(kwargs, PARAMS)


def content_attributes(kwargs: Mapping[str, Any]) -> dict[str, AttributeValue]:
    # Embedding inputs are not a conversation; OTel GenAI defines no content for them.
    return {}


def outcome(response: Any, capture: bool) -> Outcome:
    result = Outcome(response_model=response.model)
    usage = response.usage
    if usage is not None:
        result.input_tokens = usage.prompt_tokens
    return result
