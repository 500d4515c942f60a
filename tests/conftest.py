"""Shared fixtures: one real embedded ClickHouse for the whole test session.

chDB runs one engine per process and it owns a single data directory, so every
test shares this store and isolates itself with a fresh ``project_id``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from serving import QueueFor

from tokentrail.schema import Store, apply_migrations, open_store

if TYPE_CHECKING:
    from tokentrail.collector.ingest_queue import IngestQueue
    from tokentrail.collector.pipeline import IngestPipeline


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    opened = open_store("chdb://" + str(tmp_path_factory.mktemp("chdb")))
    apply_migrations(opened)
    yield opened
    opened.close()


@pytest.fixture
def project_id() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[str]:
    """Base URL of a fake OpenAI + Anthropic API (see tests/fake_provider.py).

    OpenAI clients take `base_url=fake_provider + "/v1"`, Anthropic clients
    `base_url=fake_provider`. What it received: `fake_provider.received(url)`.
    """
    from fake_provider import FakeProvider  # tests/ is on sys.path under pytest

    with FakeProvider() as server:
        yield server.url


@pytest.fixture
def queue_for(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueFor]:
    """Opens a started ingest queue (its own spool) over a pipeline; closed after the test."""
    from tokentrail.collector.service import open_ingest_queue

    opened: list[IngestQueue] = []

    def open_queue(pipeline: IngestPipeline) -> IngestQueue:
        queue = open_ingest_queue(store, pipeline, tmp_path_factory.mktemp("spool"), 1024**3)
        opened.append(queue)
        return queue

    yield open_queue
    for queue in opened:
        queue.close()
