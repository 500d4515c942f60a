"""Decoded spans → :class:`LlmCall` and :class:`Score`, whatever convention sent them.

Each convention is one :class:`Reader` in a module of its own (``otel_genai``,
``openinference``, ``openllmetry``, ``langfuse``): the attribute keys that spell
each canonical field, its verdict on which spans are calls, the keys it
understands, its evaluation results. ``registry`` puts them together in
CONVENTIONS.md's precedence; ``calls``, ``lineage``, ``scores`` and ``repeats``
derive the records. Adding a convention is one more module and one more entry
in ``registry``.
"""

from __future__ import annotations

from tokentrail.collector.normalize.base import Evaluation, Reader, Source
from tokentrail.collector.normalize.calls import is_grouping_span, is_llm_span, to_llm_call
from tokentrail.collector.normalize.lineage import (
    Ancestry,
    CallContext,
    ancestry_of,
    context_of,
    inherit_context,
)
from tokentrail.collector.normalize.otel_genai import (
    LLM_OPERATIONS,
    NON_LLM_OPERATIONS,
    otel_genai_content,
)
from tokentrail.collector.normalize.registry import (
    CONTEXT_KEYS,
    KEYS,
    KIND_KEYS,
    LLM_NAMESPACES,
    MODEL_KEYS,
    READERS,
    SOURCES,
    convention_of,
    unknown_keys,
)
from tokentrail.collector.normalize.repeats import (
    Repeats,
    find_repeats,
    links_of,
    mark_repeats,
)
from tokentrail.collector.normalize.scores import scores_from_span
from tokentrail.collector.records import LlmCall, Score, Span

__all__ = [
    "CONTEXT_KEYS",
    "KEYS",
    "KIND_KEYS",
    "LLM_NAMESPACES",
    "LLM_OPERATIONS",
    "MODEL_KEYS",
    "NON_LLM_OPERATIONS",
    "READERS",
    "SOURCES",
    "Ancestry",
    "CallContext",
    "Evaluation",
    "Reader",
    "Repeats",
    "Source",
    "ancestry_of",
    "context_of",
    "convention_of",
    "find_repeats",
    "inherit_context",
    "is_grouping_span",
    "is_llm_span",
    "links_of",
    "mark_repeats",
    "normalize",
    "otel_genai_content",
    "scores_from_span",
    "to_llm_call",
    "unknown_keys",
]


def normalize(spans: list[Span]) -> tuple[list[LlmCall], list[Score]]:
    """LLM calls and scores of one batch: calls completed from their in-batch ancestors,
    and calls that repeat another call of the batch marked as duplicates.

    Score features are left to the pipeline's context step, and calls repeated
    across batches to its duplicate step: both see stored rows as well as this batch.
    """
    calls = [call for span in spans if (call := to_llm_call(span)) is not None]
    scores = [score for span in spans for score in scores_from_span(span)]
    inherit_context(calls, ancestry_of(spans))
    mark_repeats(calls, links_of(spans))
    return calls, scores
