"""One API call, counted once: LLM spans that describe a call another span already describes.

Two instrumentations on one client (the anthropic SDK's own spans plus an
instrumentor, or two OpenAI instrumentors) give two nested LLM spans for one
request. Calls are one call when, in one trace,

* they carry the same non-empty response id, or
* one's nearest LLM ancestor describes the same call: same provider and model
  family, the same input and output token counts (zero counts only between a
  span and its direct parent, where nothing else could sit between them), and
  no conflicting response ids.

Of each group the innermost call is kept (the latest start, then the shortest:
the span closest to the wire, whichever batch it arrived in); the others name
it in ``duplicate_of`` and reports skip them. The walk to the nearest LLM
ancestor passes through spans that are not calls, but stops at agent, tool and
workflow spans (a call under a tool is a new call) and at spans not yet seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tokentrail.collector.normalize.calls import is_grouping_span
from tokentrail.collector.records import LlmCall, Span

Key = tuple[str, str]  # (trace_id, span_id)
Link = tuple[str, bool]  # (parent_span_id, is an agent/tool/workflow span)

# Nested instrumentations sit next to each other; a long walk means unrelated calls.
_MAX_HOPS = 8


def links_of(spans: Iterable[Span]) -> dict[Key, Link]:
    return {(s.trace_id, s.span_id): (s.parent_span_id, is_grouping_span(s)) for s in spans}


def _key(call: LlmCall) -> Key:
    return call.trace_id, call.span_id


def _family(provider: str) -> str:
    # "azure.ai.openai" and "openai" serve the same models; compare the vendor.
    return provider.rsplit(".", 1)[-1]


def _model_names(call: LlmCall) -> set[str]:
    return {m.strip().lower().rsplit("/", 1)[-1] for m in (call.request_model, call.response_model)
            if m.strip()}  # fmt: skip


def _same_model(a: LlmCall, b: LlmCall) -> bool:
    """Unknown on either side, or one name extends the other ("gpt-4o-mini-2024-07-18")."""
    names_a, names_b = _model_names(a), _model_names(b)
    if not names_a or not names_b:
        return True
    return any(x.startswith(y) or y.startswith(x) for x in names_a for y in names_b)


def _same_call(inner: LlmCall, outer: LlmCall, *, direct: bool) -> bool:
    if inner.response_id and outer.response_id and inner.response_id != outer.response_id:
        return False
    if inner.provider and outer.provider and _family(inner.provider) != _family(outer.provider):
        return False
    usage = (inner.input_tokens, inner.output_tokens)
    if usage != (outer.input_tokens, outer.output_tokens) or not _same_model(inner, outer):
        return False
    return direct or usage != (0, 0)


def _encloses(outer: LlmCall, inner: LlmCall) -> bool:
    end = inner.start_time_unix_nano + inner.duration_ns
    return outer.start_time_unix_nano <= inner.start_time_unix_nano and (
        end <= outer.start_time_unix_nano + outer.duration_ns
    )


@dataclass(frozen=True)
class _Walk:
    ancestor: LlmCall | None = None
    direct: bool = False
    lost: bool = False  # stopped at a span not seen yet


_NO_CALL = _Walk()  # the walk of most calls, made once


def _nearest_call(call: LlmCall, calls: Mapping[Key, LlmCall], links: Mapping[Key, Link]) -> _Walk:
    parent, seen = call.parent_span_id, {call.span_id}
    for hop in range(_MAX_HOPS):
        if not parent or parent in seen:
            return _NO_CALL
        key = (call.trace_id, parent)
        if key in calls:
            return _Walk(calls[key], direct=hop == 0)
        if key not in links:
            return _Walk(lost=True)
        seen.add(parent)
        parent, groups = links[key]
        if groups:
            return _NO_CALL
    return _NO_CALL


class _Groups:
    """Union-find over call keys."""

    def __init__(self) -> None:
        self._parent: dict[Key, Key] = {}

    def __contains__(self, key: Key) -> bool:
        """Whether the key was ever joined: a key never joined is alone in its group."""
        return key in self._parent

    def find(self, key: Key) -> Key:
        root = key
        while (up := self._parent.get(root, root)) != root:
            root = up
        self._parent[key] = root
        return root

    def join(self, a: Key, b: Key) -> None:
        self._parent[self.find(a)] = self.find(b)


@dataclass
class Repeats:
    duplicate_of: dict[Key, str] = field(default_factory=dict)
    """Every repeating call → span id of the call kept for its group."""
    needs_links: bool = False
    """A call may repeat an enclosing call through spans not given: look them up and ask again."""


def find_repeats(calls: Iterable[LlmCall], links: Mapping[Key, Link]) -> Repeats:
    """Which of ``calls`` repeat another, walking parents through ``calls`` and ``links``."""
    by_key = {_key(call): call for call in calls}
    result = Repeats()
    claimed: dict[Key, list[Key]] = {}
    for key, call in by_key.items():
        walk = _nearest_call(call, by_key, links)
        if walk.ancestor is not None:
            if _same_call(call, walk.ancestor, direct=walk.direct):
                claimed.setdefault(_key(walk.ancestor), []).append(key)
        elif walk.lost and not result.needs_links:
            result.needs_links = any(
                other is not call and other.trace_id == call.trace_id and _encloses(other, call)
                and _same_call(call, other, direct=False)
                for other in by_key.values()
            )  # fmt: skip
    groups = _Groups()
    for outer, inners in claimed.items():
        if len(inners) == 1:  # an LLM span over several such calls wraps them, it is none of them
            groups.join(outer, inners[0])
    by_response: dict[Key, Key] = {}
    for key, call in by_key.items():
        if call.response_id:
            first = by_response.setdefault((call.trace_id, call.response_id), key)
            if first != key:  # most response ids are the batch's only one
                groups.join(first, key)
    members: dict[Key, list[LlmCall]] = {}
    for key, call in by_key.items():
        if key in groups:
            members.setdefault(groups.find(key), []).append(call)
    for group in members.values():
        if len(group) < 2:
            continue
        kept = min(group, key=lambda c: (-c.start_time_unix_nano, c.duration_ns, c.span_id))
        result.duplicate_of.update({_key(c): kept.span_id for c in group if c is not kept})
    return result


def mark_repeats(calls: Iterable[LlmCall], links: Mapping[Key, Link]) -> None:
    """Set ``duplicate_of`` on each of ``calls`` from the calls and links given."""
    calls = list(calls)
    repeats = find_repeats(calls, links).duplicate_of
    for call in calls:
        call.duplicate_of = repeats.get(_key(call), "")
