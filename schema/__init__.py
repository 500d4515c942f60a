"""Storage: the ClickHouse store, its migrations and the shipped price table.

One copy of the SQL serves both backends (embedded chDB and a ClickHouse
server); only the DSN passed to :func:`open_store` differs.
"""

from tokentrail.schema.migrate import apply_migrations
from tokentrail.schema.store import DEFAULT_DATA_DIR, Store, dsn_from_env, open_store

__all__ = ["DEFAULT_DATA_DIR", "Store", "apply_migrations", "dsn_from_env", "open_store"]
