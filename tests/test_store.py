"""The store and its migrations on the real embedded engine, and on a server when one exists."""

from __future__ import annotations

from pathlib import Path

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


def test_persist_flushes_the_engine_files_and_a_failure_names_the_directory(
    store: Store, tmp_path: Path
) -> None:
    store.persist()  # the embedded store's file system, flushed
    # One engine per process: a second Store over the same client, with a data
    # directory that cannot be opened, stands for a disk that cannot flush.
    unflushable = Store(store._client, embedded=True, data_dir=tmp_path / "missing")
    with pytest.raises(OSError, match="missing"):
        unflushable.persist()
