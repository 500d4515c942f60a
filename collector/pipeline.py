"""One ingest path for every receiver: normalize → redact → context, repeats → price → write."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from tokentrail.collector import telemetry
from tokentrail.collector.context import ContextResolver
from tokentrail.collector.duplicates import DuplicateResolver
from tokentrail.collector.log_content import LogContent
from tokentrail.collector.normalize import normalize, tree_of
from tokentrail.collector.pricing import Pricer
from tokentrail.collector.records import LogRecord, Score, Span
from tokentrail.collector.redact import ContentRedactor
from tokentrail.collector.reprice import RepriceCounts, RepriceScope, reprice_calls
from tokentrail.collector.rollup_repair import repair_rollups
from tokentrail.collector.writer import Writer
from tokentrail.redaction import Redactor
from tokentrail.schema.prices import load_prices
from tokentrail.schema.store import Store

# In server mode the API and collectors may run as separate processes.
PRICE_REFRESH_SECONDS = 30.0
_REPAIR_MARGIN_NS = 3600 * 10**9


class IngestPipeline:
    """Turns decoded spans (and API scores) into stored rows.

    ``ingest`` returns only once the rows are written (the ingest queue
    commits its spool after that, never before). Batches are written one at a
    time: context resolution reads what earlier batches stored, so two
    concurrent batches of one trace could each miss the other's spans.
    """

    def __init__(
        self,
        store: Store,
        redactor: Redactor | None = None,
        price_refresh_s: float = PRICE_REFRESH_SECONDS,
    ) -> None:
        """``redactor``: redact content before it is stored (off when None; see ``redact``).

        ``price_refresh_s``: re-read the price table at most this often, so a
        price changed by another process (API, ``prices import``) reaches ingest.
        """
        self._store = store
        self._redact = ContentRedactor(redactor) if redactor and redactor.active else None
        self._writer = Writer(store)
        self._context = ContextResolver(store)
        self._duplicates = DuplicateResolver(store)
        self._log_content = LogContent(store)
        self._price_refresh_s = price_refresh_s
        self.reload_prices()
        self._lock = threading.Lock()

    def reload_prices(self) -> None:
        """Price from the stored table as it is now (after an API change, or periodically)."""
        self._pricer = Pricer(load_prices(self._store))
        self._prices_loaded_at = time.monotonic()

    def reprice(self, project_id: str, scope: RepriceScope) -> RepriceCounts:
        """Re-price stored calls with the current table, pages under the batch lock."""
        self.reload_prices()
        return reprice_calls(
            self._store, self._writer, self._pricer, project_id, scope, guard=self._lock
        )

    def ingest(self, project_id: str, spans: Sequence[Span]) -> None:
        """Store ``spans`` and what derives from them; counted in the collector's metrics."""
        self._ingest(project_id, spans)
        telemetry.SPANS_WRITTEN.inc(len(spans))

    def _ingest(self, project_id: str, spans: Sequence[Span]) -> None:
        # Redaction leaves the context and kind keys the tree is made of alone.
        tree = tree_of(spans)
        calls, scores = normalize(list(spans), tree)
        if self._redact is not None:
            self._redact.batch(spans, calls, scores)
        with self._lock:
            completed = self._context.resolve(project_id, spans, calls, tree.ancestry)
            repeated = self._duplicates.resolve(project_id, spans, calls, tree.links, completed)
            if time.monotonic() - self._prices_loaded_at >= self._price_refresh_s:
                self.reload_prices()
            for call in calls:
                self._pricer.price(project_id, call)
            self._context.assign_features(project_id, scores, calls)
            with telemetry.WRITE_SECONDS.time():
                self._writer.write(project_id, spans, [*calls, *completed, *repeated], scores)

    def repair(self, project_id: str, spans: Sequence[Span]) -> None:
        """Re-align the rollups with the ledger around ``spans``, which may be half-written.

        Called after re-writing a batch whose earlier attempt may have stopped
        inside the rollups' fan-out (a crash, a failed write). The window
        reaches an hour past the spans, for the scores and calls they re-wrote.
        """
        if spans:
            start = min(span.start_time_unix_nano for span in spans) - _REPAIR_MARGIN_NS
            end = max(span.end_time_unix_nano for span in spans) + _REPAIR_MARGIN_NS
            repair_rollups(self._store, project_id, start, end)

    def ingest_logs(self, project_id: str, records: Sequence[LogRecord]) -> None:
        """Log records as sent, then the LLM content in them, under the call's span.

        Not under the batch lock: content rows are versioned by how many records
        they were derived from, so concurrent batches cannot overwrite a fuller
        row with a poorer one.
        """
        if self._redact is not None:
            self._redact.logs(records)
        self._writer.write_logs(project_id, records)
        self._writer.write_content(project_id, self._log_content.derive(project_id, records))
        telemetry.LOGS_WRITTEN.inc(len(records))

    def record_scores(self, project_id: str, scores: list[Score]) -> None:
        """Scores sent through the API: same feature resolution, same table."""
        with self._lock:
            self._context.assign_features(project_id, scores, [])
            self._writer.write(project_id, scores=scores)
