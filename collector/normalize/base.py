"""What every convention reader is made of: value coercion, key sources, the Reader type.

Values are coerced defensively: senders put numbers in strings, counts in
floats and garbage anywhere, and one bad attribute must never drop a batch. A
coercer returns the canonical value, or None when the value is unusable, so the
next key in a field's row gets its turn.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from tokentrail.collector.records import Attributes, Span

# llm_calls stores counts as UInt64; clamp rather than fail the whole insert.
MAX_TOKENS = 2**64 - 1
# Decimal(38, 12) leaves 26 integer digits for a provided cost.
_MAX_COST_DIGITS = 26


# --- coercion: attribute value → canonical value, or None when unusable --------


def text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        parsed = float(value) if isinstance(value, int | float | str) else math.nan
    except (ValueError, OverflowError):
        return None
    return parsed if math.isfinite(parsed) else None


def decimal(value: Any) -> Decimal | None:
    """A finite Decimal from an int, float or numeric string (floats via str, so 0.1 stays 0.1)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        parsed = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return parsed if parsed.is_finite() else None


def tokens(value: Any) -> int | None:
    if type(value) is int:  # the common case, without the trip through Decimal (not bool)
        # Compared first: min() and max() cost several times more than the test.
        return value if 0 <= value <= MAX_TOKENS else min(max(value, 0), MAX_TOKENS)
    parsed = decimal(value)
    if parsed is None:
        return None
    if parsed.adjusted() >= 20:  # never materialize a huge int from "1e999999999"
        return MAX_TOKENS if parsed > 0 else 0
    return min(max(int(parsed), 0), MAX_TOKENS)


def cost(value: Any) -> Decimal | None:
    parsed = decimal(value)
    if parsed is None or parsed < 0 or parsed.adjusted() >= _MAX_COST_DIGITS:
        return None
    return parsed


def seconds(value: Any) -> float | None:
    parsed = number(value)
    return parsed if parsed is not None and parsed >= 0 else None


def weight(value: Any) -> float | None:
    parsed = number(value)
    return parsed if parsed is not None and parsed > 0 else None


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    lowered = text(value)
    lowered = lowered.lower() if lowered else None
    return True if lowered in _TRUE else False if lowered in _FALSE else None


def parse_json(value: str) -> Any:
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return None


def reasons(value: Any) -> list[str] | None:
    if isinstance(value, str) and value.lstrip().startswith("["):
        value = parse_json(value)
    if isinstance(value, list | tuple):
        found = [reason for item in value if (reason := text(item))]
    else:
        found = [reason] if (reason := text(value)) else []
    return found or None


# Other spellings of one provider → the gen_ai.provider.name value, so the price
# table's provider matches whichever convention named it.
_PROVIDER_RENAMES = {
    "az.ai.openai": "azure.ai.openai",  # deprecated gen_ai.system values
    "az.ai.inference": "azure.ai.inference",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "xai": "x_ai",
    "azure": "azure.ai.openai",  # OpenInference llm.provider values
    "aws": "aws.bedrock",
    "mistralai": "mistral_ai",
}


def provider(value: Any) -> str | None:
    name = text(value)
    if name is None:
        return None
    name = name.lower()  # old gen_ai.system values came capitalised ("OpenAI")
    return _PROVIDER_RENAMES.get(name, name)


# Canonical field → how its raw value is read. Only these fields come from
# attributes; everything else on an LlmCall is structural (ids, times, status).
# ``total_tokens`` is only a check on how a sender counted (never priced).
COERCE: Mapping[str, Callable[[Any], Any]] = {
    "provider": provider,
    "request_model": text,
    "response_model": text,
    "operation": text,
    "input_tokens": tokens,
    "output_tokens": tokens,
    "total_tokens": tokens,
    "cache_read_tokens": tokens,
    "cache_write_tokens": tokens,
    "reasoning_tokens": tokens,
    "provided_cost_usd": cost,
    "streaming": flag,
    "time_to_first_token_s": seconds,
    "finish_reasons": reasons,
    "response_id": text,
    "environment": text,
    "feature": text,
    "user_id": text,
    "session_id": text,
    "sample_weight": weight,
}


# --- structured attribute values -----------------------------------------------


def json_object(value: Any) -> dict[str, Any]:
    """An attribute holding a JSON object (or an already structured map), else {}."""
    parsed = parse_json(value) if isinstance(value, str) else value
    return parsed if isinstance(parsed, dict) else {}


def epoch_ns(value: Any) -> int | None:
    """A point in time as Unix nanoseconds: ISO 8601 text (JSON-quoted or not) or epoch number.

    Epoch numbers carry no unit, so their magnitude decides: any date after
    1973 is above 1e17 in ns, 1e14 in µs and 1e11 in ms.
    """
    if isinstance(value, str):
        stamp = value.strip().strip('"')
        if stamp and not stamp.lstrip("-").replace(".", "", 1).isdigit():
            try:
                moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            except ValueError:
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            # Whole seconds and microseconds apart: a float would blur the µs.
            return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000
    count = number(value)
    if count is None or count <= 0:
        return None
    for threshold, scale in ((1e17, 1), (1e14, 10**3), (1e11, 10**6)):
        if count >= threshold:
            return int(count * scale)
    return int(count * 10**9)


def indexed(attributes: Attributes, prefix: str) -> list[dict[str, Any]]:
    """Flattened list items ``{prefix}{i}.{rest}`` → one ``{rest: value}`` per i, in index order.

    Conventions flatten lists of objects (messages, tool calls, evaluations)
    into indexed keys because OTLP attributes cannot hold objects.
    """
    items: dict[int, dict[str, Any]] = {}
    for key, value in attributes.items():
        if not key.startswith(prefix):
            continue
        index, dot, rest = key[len(prefix) :].partition(".")
        if dot and rest and index.isdigit():
            items.setdefault(int(index), {})[rest] = value
    return [items[index] for index in sorted(items)]


# --- key patterns --------------------------------------------------------------


def key_matcher(patterns: Iterable[str]) -> Callable[[str], bool]:
    """One matcher for key patterns: ``{i}`` is a list index, a trailing ``*`` any rest."""
    expressions = []
    for pattern in patterns:
        expression = re.escape(pattern).replace(r"\{i\}", r"\d+")
        expressions.append(expression[:-2] + ".*" if expression.endswith(r"\*") else expression)
    if not expressions:
        return lambda key: False
    compiled = re.compile("|".join(f"(?:{e})" for e in expressions))
    return lambda key: compiled.fullmatch(key) is not None


# --- sources and readers -------------------------------------------------------

Extract = Callable[[Attributes, Span], Any]


@dataclass(frozen=True)
class Source:
    """Where a field's raw value comes from: one attribute as is, or derived from attributes.

    ``key`` names the attribute it is about (for precedence and for keys that
    must be kept to resolve context); ``extract`` derives the raw value when the
    attribute is not the value itself (a JSON field, a timestamp, a sum).
    ``also`` names further keys ``extract`` reads. ``key`` and ``also`` are
    :func:`key_matcher` patterns, and ``extract`` must find nothing (None, or a
    value its field coerces to None) when no attribute key matches them: that
    is what lets a lookup skip the source (:meth:`can_read`).
    """

    key: str
    extract: Extract | None = None
    also: tuple[str, ...] = ()

    def can_read(self, keys: Collection[str]) -> bool:
        """Whether attributes with these keys may give this source a value."""
        if self.extract is None:
            return self.key in keys
        return any(map(key_matcher((self.key, *self.also)), keys))


@dataclass(frozen=True)
class Evaluation:
    """One quality result a convention carries inside a span, before it becomes a Score."""

    name: str
    value: Any  # the raw score value; coerced when the Score is made
    label: str
    explanation: str
    time_unix_nano: int
    span_id: str  # the judged span; "" judges the whole trace
    identity: str  # tells it apart from the span's other results, stable across re-sends
    source: str = ""  # declared by the sender, if at all
    data_type: str = ""  # declared by the sender, if at all


def _no_evaluations(span: Span) -> list[Evaluation]:
    return []


def _silent(span: Span) -> bool | None:
    return None


@dataclass(frozen=True)
class Reader:
    """One convention: its keys per canonical field, in order, and what it says about spans.

    ``is_call`` gives the convention's verdict on a span: True when its kind
    marks an LLM call (``openinference.span.kind`` LLM), False when it marks
    something that must never be priced (an agent, tool or workflow span), None
    when it does not say. ``verdict_keys`` are the attribute keys ``is_call``
    reads: a span with none of them gets None without asking. ``understood``
    lists the key patterns it reads or knowingly leaves in ``spans`` beyond its
    field keys (content, markers, request parameters): the rest of its namespace
    is reported as not understood.
    """

    convention: str  # the value stored in llm_calls.convention
    fields: Mapping[str, tuple[str | Source, ...]]
    # Does a span with these attribute keys speak the convention at all (keys
    # alone decide, so the verdict is worked out once per key set).
    claims: Callable[[Collection[str]], bool]
    is_call: Callable[[Span], bool | None] = _silent
    verdict_keys: tuple[str, ...] = ()
    understood: tuple[str, ...] = ()
    evaluations: Callable[[Span], list[Evaluation]] = _no_evaluations

    def sources(self, field: str) -> tuple[Source, ...]:
        return tuple(s if isinstance(s, Source) else Source(s) for s in self.fields.get(field, ()))

    def keys(self) -> set[str]:
        return {source.key for field in self.fields for source in self.sources(field)}
