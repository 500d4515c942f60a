"""Versioned, idempotent migrations from ``schema/migrations/NNNN_name.sql``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from tokentrail.schema.store import Store

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    applied_at DateTime64(6) DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """Split on ``;`` at line ends; comments are dropped first."""
        body = "\n".join(
            line for line in self.sql.splitlines() if not line.lstrip().startswith("--")
        )
        return [stmt.strip() for stmt in re.split(r";\s*$", body, flags=re.M) if stmt.strip()]


def shipped_migrations() -> list[Migration]:
    folder = resources.files("tokentrail.schema").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def applied_versions(store: Store) -> set[int]:
    store.command(_LEDGER)
    return {row[0] for row in store.query("SELECT version FROM schema_migrations FINAL").rows}


def apply_migrations(store: Store) -> list[Migration]:
    """Apply every shipped migration not yet recorded; return the ones applied."""
    done = applied_versions(store)
    applied = []
    for migration in shipped_migrations():
        if migration.version in done:
            continue
        for statement in migration.statements():
            store.command(statement)
        store.insert_columns(
            "schema_migrations", {"version": [migration.version], "name": [migration.name]}
        )
        applied.append(migration)
    return applied
