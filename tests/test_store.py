"""The store and its migrations on the real embedded engine, and on a server when one exists."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tokentrail.schema import Store, apply_migrations, open_store
from tokentrail.schema.migrate import applied_versions, shipped_migrations


def test_migrations_are_recorded_and_idempotent(store: Store) -> None:
    versions = {m.version for m in shipped_migrations()}
    assert applied_versions(store) == versions
    assert apply_migrations(store) == []
    tables = {row[0] for row in store.query("SHOW TABLES").rows}
    assert {"spans", "llm_calls", "scores", "model_prices", "api_keys"} <= tables


def test_parameters_are_bound_not_spliced(store: Store, project_id: str) -> None:
    hostile = "x' OR 1=1 --"
    store.insert_columns("api_keys", {"key_sha256": [hostile], "project_id": [project_id]})
    rows = store.query(
        "SELECT project_id FROM api_keys FINAL WHERE key_sha256 = {k:String}", {"k": hostile}
    ).rows
    assert rows == [(project_id,)]
    none = store.query(
        "SELECT count() FROM api_keys FINAL WHERE key_sha256 = {k:String}", {"k": "x"}
    ).rows
    assert none == [(0,)]


def test_unknown_dsn_scheme_is_named() -> None:
    with pytest.raises(ValueError, match="ftp"):
        open_store("ftp://example/db")


def _server_dsn() -> Iterator[str]:
    url = os.environ.get("TOKENTRAIL_CLICKHOUSE_URL", "")
    if url.startswith("http"):
        yield url
        return
    try:
        import docker.errors
        from testcontainers.community.clickhouse import ClickHouseContainer
    except ImportError as exc:  # pragma: no cover - dev extra installs both
        pytest.skip(f"testcontainers not installed: {exc}")
    try:
        container = ClickHouseContainer("clickhouse/clickhouse-server:25.8")
        container.start()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine for a ClickHouse server container: {exc}")
    try:
        host, port = container.get_container_host_ip(), container.get_exposed_port(8123)
        yield f"http://{container.username}:{container.password}@{host}:{port}/{container.dbname}"
    finally:
        container.stop()


@pytest.fixture(scope="module")
def server_store() -> Iterator[Store]:
    for dsn in _server_dsn():
        opened = open_store(dsn)
        apply_migrations(opened)
        yield opened
        opened.close()


@pytest.mark.server
def test_same_migrations_and_sql_on_a_server(server_store: Store, project_id: str) -> None:
    assert apply_migrations(server_store) == []
    server_store.insert_columns(
        "api_keys", {"key_sha256": ["h1", "h1"], "project_id": [project_id, project_id]}
    )
    rows = server_store.query(
        "SELECT count() FROM api_keys FINAL WHERE project_id = {p:String}", {"p": project_id}
    ).rows
    assert rows == [(1,)]
