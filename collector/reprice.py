"""Re-pricing stored calls after the price table changed (``POST /api/v1/prices/recompute``).

Reads one project's calls in a time range page by page, prices each with the
current table, and re-writes only the calls whose cost or status changed.
Re-writes go through the collector's Writer, the one path every ``llm_calls``
row takes, so whatever the writer maintains besides the row (rollups) follows;
the row replaces its older version under ReplacingMergeTree, so nothing is
counted twice, and a second run finds nothing to change.

Calls whose cost the sender provided are left alone: the sender's cost wins
over any table (DESIGN.md "Cost").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from tokentrail.collector.pricing import Pricer
from tokentrail.collector.records import LlmCall
from tokentrail.collector.writer import Writer, llm_call_columns
from tokentrail.schema.store import Store

PAGE_SIZE = 5_000

# What pricing reads and writes: enough to decide whether a call changed,
# without the prompt and completion, which only changed calls need.
_PRICING_COLUMNS = """
    trace_id, span_id, toUnixTimestamp64Nano(Timestamp) AS start_time_unix_nano, provider,
    request_model, response_model, input_tokens, output_tokens, cache_read_tokens,
    cache_write_tokens, reasoning_tokens, input_cost_usd, output_cost_usd, total_cost_usd,
    price_status
"""
# Keyset pagination in the table's own order; the extra lower bound on Timestamp
# lets ClickHouse skip the pages already done by the primary index.
_PAGE = f"""
SELECT {_PRICING_COLUMNS}
FROM llm_calls FINAL
WHERE project_id = {{project_id:String}}
    AND Timestamp >= fromUnixTimestamp64Nano({{start_ns:Int64}})
    AND Timestamp < fromUnixTimestamp64Nano({{end_ns:Int64}})
    AND Timestamp >= fromUnixTimestamp64Nano({{after_ns:Int64}})
    AND (toUnixTimestamp64Nano(Timestamp), trace_id, span_id)
        > ({{after_ns:Int64}}, {{after_trace:String}}, {{after_span:String}})
    AND ({{provider:String}} = '' OR provider = {{provider:String}})
    AND ({{model:String}} = '' OR request_model = {{model:String}}
         OR response_model = {{model:String}})
ORDER BY Timestamp, trace_id, span_id
LIMIT {{limit:UInt32}}
"""
# Exactly the columns the writer writes, so a re-written row loses nothing.
_WRITTEN = [name for name in llm_call_columns("", []) if name not in ("project_id", "Timestamp")]
_FULL_ROWS = f"""
SELECT {", ".join(_WRITTEN)}, toUnixTimestamp64Nano(Timestamp) AS start_time_unix_nano
FROM llm_calls FINAL
WHERE project_id = {{project_id:String}}
    AND Timestamp >= fromUnixTimestamp64Nano({{first_ns:Int64}})
    AND Timestamp <= fromUnixTimestamp64Nano({{last_ns:Int64}})
    AND span_id IN {{span_ids:Array(String)}}
"""


@dataclass(frozen=True)
class RepriceScope:
    """Calls of ``[start_ns, end_ns)``, optionally of one model and/or provider ('' = any)."""

    start_ns: int
    end_ns: int
    model: str = ""
    provider: str = ""


@dataclass
class RepriceCounts:
    examined: int = 0  # calls read in the scope
    changed: int = 0  # re-written with another cost or status
    unpriced: int = 0  # still without a price afterwards
    provided: int = 0  # cost sent by the caller: never re-priced
    unpriced_models: set[str] = field(default_factory=set)


def _costs(call: LlmCall) -> tuple[Any, ...]:
    return call.input_cost_usd, call.output_cost_usd, call.total_cost_usd, call.price_status


def _pages(store: Store, project_id: str, scope: RepriceScope) -> Iterator[list[LlmCall]]:
    params: dict[str, Any] = {
        "project_id": project_id,
        "start_ns": scope.start_ns,
        "end_ns": scope.end_ns,
        "provider": scope.provider,
        "model": scope.model,
        "limit": PAGE_SIZE,
    }
    after: tuple[int, str, str] = (scope.start_ns - 1, "", "")
    while True:
        params.update(after_ns=after[0], after_trace=after[1], after_span=after[2])
        rows = store.query(_PAGE, params).dicts()
        # Only what pricing needs: the rest of a changed call is read back before writing.
        page = [LlmCall(parent_span_id="", duration_ns=0, **row) for row in rows]
        if page:
            yield page
        if len(page) < PAGE_SIZE:
            return
        last = page[-1]
        after = (last.start_time_unix_nano, last.trace_id, last.span_id)


def _full_calls(store: Store, project_id: str, changed: list[LlmCall]) -> list[LlmCall]:
    """The whole stored rows of ``changed``, read back to be re-written intact."""
    wanted = {(call.trace_id, call.span_id) for call in changed}
    params = {
        "project_id": project_id,
        "first_ns": min(call.start_time_unix_nano for call in changed),
        "last_ns": max(call.start_time_unix_nano for call in changed),
        "span_ids": sorted({call.span_id for call in changed}),
    }
    rows = store.query(_FULL_ROWS, params).dicts()
    return [LlmCall(**row) for row in rows if (row["trace_id"], row["span_id"]) in wanted]


def reprice_calls(
    store: Store,
    writer: Writer,
    pricer: Pricer,
    project_id: str,
    scope: RepriceScope,
    guard: AbstractContextManager[Any] | None = None,
) -> RepriceCounts:
    """Re-price ``project_id``'s calls in ``scope`` with ``pricer``; write the changed ones.

    ``guard`` is held for each page from its read to its write: the ingest
    pipeline passes its batch lock, so a batch re-writing one of these calls
    (late context) cannot slip between, and be overwritten by, an older copy.
    """
    counts = RepriceCounts()
    for page in _pages(store, project_id, scope):
        with guard or nullcontext():
            changed = []
            for call in page:
                counts.examined += 1
                if call.price_status == "provided":
                    counts.provided += 1
                    continue
                before = _costs(call)
                pricer.price(project_id, call)
                if call.price_status == "unpriced":
                    counts.unpriced += 1
                    counts.unpriced_models.add(call.model)
                if _costs(call) != before:
                    changed.append(call)
            if changed:
                full = _full_calls(store, project_id, changed)
                for call in full:
                    pricer.price(project_id, call)
                writer.write(project_id, calls=full)
                counts.changed += len(full)
    return counts
