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

from collections.abc import Sequence
from dataclasses import dataclass

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
    Key,
    Link,
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
    "BatchTree",
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
    "tree_of",
    "unknown_keys",
]


@dataclass(frozen=True)
class BatchTree:
    """How the spans of one batch hang together, as context and repeats read it."""

    ancestry: dict[str, tuple[str, tuple[str, str, str]]]
    links: dict[Key, Link]


def tree_of(spans: Sequence[Span]) -> BatchTree:
    """The batch's ancestry and links, for normalize and the pipeline's context and
    duplicate steps: worked out once, as reading every span's context keys is a
    sizeable share of ingest.
    """
    return BatchTree(ancestry_of(spans), links_of(spans))


def normalize(
    spans: list[Span], tree: BatchTree | None = None
) -> tuple[list[LlmCall], list[Score]]:
    """LLM calls and scores of one batch: calls completed from their in-batch ancestors,
    and calls that repeat another call of the batch marked as duplicates.

    ``tree``: :func:`tree_of` the same spans, when the caller needs it too.
    Score features are left to the pipeline's context step, and calls repeated
    across batches to its duplicate step: both see stored rows as well as this batch.
    """
    tree = tree or tree_of(spans)
    calls = [call for span in spans if (call := to_llm_call(span)) is not None]
    scores = [score for span in spans for score in scores_from_span(span)]
    inherit_context(calls, tree.ancestry)
    mark_repeats(calls, tree.links)
    return calls, scores
