"""One ingest path for every receiver: normalize → resolve context → price → write."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from tokentrail.collector.context import ContextResolver
from tokentrail.collector.normalize import normalize
from tokentrail.collector.pricing import Pricer
from tokentrail.collector.records import Score, Span
from tokentrail.collector.writer import Writer
from tokentrail.schema.prices import load_prices
from tokentrail.schema.store import Store


class IngestPipeline:
    """Turns decoded spans (and API scores) into stored rows.

    ``ingest`` returns only once the rows are written, so a receiver that
    acknowledges after it returns never acknowledges data it could lose.
    Batches are written one at a time: context resolution reads what earlier
    batches stored, so two concurrent batches of one trace could each miss the
    other's spans.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._writer = Writer(store)
        self._context = ContextResolver(store)
        self._pricer = Pricer(load_prices(store))
        self._lock = threading.Lock()

    def reload_prices(self) -> None:
        self._pricer = Pricer(load_prices(self._store))

    def ingest(self, project_id: str, spans: Sequence[Span]) -> None:
        calls, scores = normalize(list(spans))
        with self._lock:
            completed = self._context.resolve(project_id, spans, calls)
            for call in calls:
                self._pricer.price(project_id, call)
            self._context.assign_features(project_id, scores, calls)
            self._writer.write(project_id, spans, [*calls, *completed], scores)

    def record_scores(self, project_id: str, scores: list[Score]) -> None:
        """Scores sent through the API: same feature resolution, same table."""
        with self._lock:
            self._context.assign_features(project_id, scores, [])
            self._writer.write(project_id, scores=scores)
