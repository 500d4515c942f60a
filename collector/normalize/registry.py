"""The readers together: which key wins for a field, which content comes first, who claims a span.

Precedence follows CONVENTIONS.md row by row: within a field, keys go in
``READERS`` order, each reader's keys in its own order, except for the rows
where the table interleaves conventions differently (``_ROW_ORDER``). The first
key holding a usable value wins, span attributes before resource attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from tokentrail.collector.normalize import langfuse, openinference, openllmetry, otel_genai
from tokentrail.collector.normalize.base import COERCE, Extract, Reader, Source, key_matcher
from tokentrail.collector.records import Span

OTEL_GENAI = otel_genai.OTEL_GENAI
OPENINFERENCE = openinference.OPENINFERENCE
OPENLLMETRY = openllmetry.OPENLLMETRY
LANGFUSE = langfuse.LANGFUSE

READERS: tuple[Reader, ...] = (OTEL_GENAI, OPENINFERENCE, OPENLLMETRY, LANGFUSE)

# CONVENTIONS.md rows whose conventions come in another order than READERS:
# total tokens (OpenLLMetry's llm.usage.* before OpenInference's token_count),
# user and session (Langfuse's before OpenLLMetry's).
_ROW_ORDER: Mapping[str, tuple[Reader, ...]] = {
    "total_tokens": (OTEL_GENAI, OPENLLMETRY, OPENINFERENCE, LANGFUSE),
    "user_id": (OTEL_GENAI, LANGFUSE, OPENLLMETRY, OPENINFERENCE),
    "session_id": (OTEL_GENAI, LANGFUSE, OPENLLMETRY, OPENINFERENCE),
}

# Which convention a span is labelled with: the most specific that claims it.
# Langfuse and OpenLLMetry spans carry gen_ai.* keys too, so OTel GenAI is last.
_CLAIM_ORDER: tuple[Reader, ...] = (LANGFUSE, OPENINFERENCE, OPENLLMETRY, OTEL_GENAI)

# Content, in CONVENTIONS.md order; each side comes from the first that has it.
CONTENT = (
    otel_genai.otel_genai_content,
    openllmetry.indexed_content,
    openinference.message_content,
    openinference.value_content,
    langfuse.content,
    openllmetry.entity_content,
)


def _merge(readers: Iterable[Reader]) -> dict[str, tuple[Source, ...]]:
    readers = tuple(readers)
    for reader in readers:
        if unknown := set(reader.fields) - set(COERCE):
            raise ValueError(f"reader {reader.convention!r}: unknown fields {sorted(unknown)}")
    merged: dict[str, tuple[Source, ...]] = {}
    for name in COERCE:
        row: list[Source] = []
        for reader in _ROW_ORDER.get(name, readers):
            row += [source for source in reader.sources(name) if source not in row]
        merged[name] = tuple(row)
    return merged


SOURCES: Mapping[str, tuple[Source, ...]] = _merge(READERS)
"""Canonical field → every source that may carry it, in precedence order."""

KEYS: Mapping[str, tuple[str, ...]] = {
    name: tuple(dict.fromkeys(source.key for source in sources))
    for name, sources in SOURCES.items()
}
"""Canonical field → the attribute keys its sources read, in precedence order."""

MODEL_KEYS = KEYS["request_model"] + KEYS["response_model"]
CONTEXT_KEYS = KEYS["feature"] + KEYS["user_id"] + KEYS["session_id"]
"""Attribute keys :func:`context_of` reads: what a store must keep to resolve ancestors."""

KIND_KEYS = (otel_genai.OPERATION, openinference.SPAN_KIND, langfuse.TYPE, openllmetry.SPAN_KIND)
"""Attribute keys the readers' verdicts read: what a store must keep to tell agent spans apart."""


Coerce = Callable[[Any], Any]
# A field read from the one attribute that can give it: (name, coercer, key).
Direct = tuple[tuple[str, Coerce, str], ...]
# Any other field: (name, coercer, its sources as (key, extract)), in precedence order.
Derived = tuple[tuple[str, Coerce, tuple[tuple[str, Extract | None], ...]], ...]


@lru_cache(maxsize=4096)
def _plan(keys: tuple[str, ...], names: tuple[str, ...]) -> tuple[Direct, Derived]:
    """How attributes with ``keys`` may give each field of ``names``.

    Spans of one instrumentation share their keys, so this is worked out once
    per key set rather than once per field of every span: most of the hundred
    sources read keys a given sender never writes, and most fields are left
    with one attribute to read, which spares them the loop over sources.
    """
    present = frozenset(keys)
    direct, derived = [], []
    for name in names:
        sources = SOURCES.get(name, ())
        readable = tuple((s.key, s.extract) for s in sources if s.can_read(present))
        if len(readable) == 1 and readable[0][1] is None:
            direct.append((name, COERCE[name], readable[0][0]))
        elif readable:
            derived.append((name, COERCE[name], readable))
    return tuple(direct), tuple(derived)


def values(span: Span, names: tuple[str, ...], *, resource: bool = True) -> dict[str, Any]:
    """The canonical value of each field in ``names`` the span has (see :func:`lookup`)."""
    found: dict[str, Any] = {}
    scopes = (span.attributes, span.resource_attributes) if resource else (span.attributes,)
    for attributes in scopes:
        if not attributes or len(found) == len(names):  # all found: the resource has no say
            continue
        direct, derived = _plan(tuple(attributes), names)
        for name, coerce, key in direct:
            raw = attributes[key]
            if raw is not None and name not in found and (value := coerce(raw)) is not None:
                found[name] = value
        for name, coerce, sources in derived:
            if name in found:
                continue
            for key, extract in sources:
                raw = attributes.get(key) if extract is None else extract(attributes, span)
                if raw is not None and (value := coerce(raw)) is not None:
                    found[name] = value
                    break
    return found


def lookup(span: Span, name: str, *, resource: bool = True) -> Any:
    """The field's canonical value: first usable source, span attributes then resource's."""
    return values(span, (name,), resource=resource).get(name)


def verdicts(span: Span) -> list[bool | None]:
    """Each reader's say on whether the span is an LLM call (see :class:`Reader`).

    Only the readers whose verdict keys the span carries are asked: the others have no say.
    """
    return [reader.is_call(span) for reader in _speaking(tuple(span.attributes))]


@lru_cache(maxsize=1024)  # most spans carry no reader's verdict keys: skip the readers
def _speaking(keys: tuple[str, ...]) -> tuple[Reader, ...]:
    present = frozenset(keys)
    return tuple(reader for reader in READERS if not present.isdisjoint(reader.verdict_keys))


def convention_of(span: Span) -> str:
    return _convention(tuple(span.attributes))


@lru_cache(maxsize=1024)
def _convention(keys: tuple[str, ...]) -> str:
    return next((reader.convention for reader in _CLAIM_ORDER if reader.claims(keys)), "")


# --- keys nobody understood --------------------------------------------------------

# Namespaces the conventions write into. A key there that no reader reads or
# knowingly leaves alone is reported, so a user can see why a field is empty.
LLM_NAMESPACES = (
    "gen_ai.", "llm.", "langfuse.", "traceloop.", "openinference.", "input.", "output.",
    "embedding.",
)  # fmt: skip
# Bounds what one span can add to its llm_calls row.
MAX_UNKNOWN_KEYS = 64

_understood = key_matcher(
    [key for reader in READERS for key in (*reader.keys(), *reader.understood)]
)


def unknown_keys(span: Span) -> list[str]:
    """The span's attribute keys in an LLM namespace that no reader understood, sorted."""
    return list(_unknown(tuple(span.attributes)))


@lru_cache(maxsize=1024)  # the spans of one sender share their keys
def _unknown(keys: tuple[str, ...]) -> tuple[str, ...]:
    unknown = sorted(key for key in keys if key.startswith(LLM_NAMESPACES) and not _understood(key))
    return tuple(unknown[:MAX_UNKNOWN_KEYS])
