"""Shared fixtures: one real embedded ClickHouse for the whole test session.

chDB runs one engine per process and it owns a single data directory, so every
test shares this store and isolates itself with a fresh ``project_id``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tokentrail.schema import Store, apply_migrations, open_store


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
