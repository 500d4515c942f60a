"""The one store interface over clickhouse-connect, for both backends.

clickhouse-connect already hides the transport: ``chdb:///dir`` gives the
in-process engine, ``http(s)://`` a server. This module adds only what tokentrail
needs on top: opening from a DSN, column-oriented inserts, rows as dicts, and the
few places where the experimental chDB interface needs help.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

DEFAULT_DATA_DIR = "./tokentrail-data"
DSN_ENV = "TOKENTRAIL_CLICKHOUSE_URL"


def embedded_dsn(data_dir: str | os.PathLike[str]) -> str:
    """DSN of the embedded engine owning ``data_dir``."""
    return "chdb://" + str(Path(data_dir).resolve())


def dsn_from_env(data_dir: str | os.PathLike[str] | None = None) -> str:
    """The server DSN from ``TOKENTRAIL_CLICKHOUSE_URL``, else the embedded one."""
    url = os.environ.get(DSN_ENV, "").strip()
    if url:
        return url
    return embedded_dsn(data_dir or os.environ.get("TOKENTRAIL_DATA_DIR", DEFAULT_DATA_DIR))


# One export may carry spans from many days (a backfill, a skewed clock) and the
# tables are partitioned by day or month: past ClickHouse's default of 100
# partitions per insert the whole batch would fail, be answered as retryable,
# and be resent forever. A one-off insert of many small parts is the lesser harm.
_INSERT_SETTINGS = {"max_partitions_per_insert_block": 0}


# clickhouse-connect escapes a bound string in Python one character at a time,
# about 6 µs per 32-character id, and ingest binds lists of tens of thousands
# of trace and span ids. A list of strings with nothing to escape is formatted
# here in one join, exactly as clickhouse-connect would format it; its
# ``format_bind_value`` passes an object of a type it does not know through
# ``str()``. Anything else is left to clickhouse-connect.
_MUST_ESCAPE = re.compile(r"[\\'`\t\n]")


class _ArrayLiteral:
    """A pre-formatted Array(String) parameter value."""

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        self._text = text

    def __str__(self) -> str:
        return self._text


def _bindable(value: Any) -> Any:
    if not isinstance(value, list) or not value or not all(type(v) is str for v in value):
        return value
    if _MUST_ESCAPE.search("".join(value)):
        return value
    return _ArrayLiteral("['" + "', '".join(value) + "']")


def _bound(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    return {name: _bindable(value) for name, value in (parameters or {}).items()}


@dataclass(frozen=True)
class QueryResult:
    column_names: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.column_names, row, strict=True)) for row in self.rows]


class Store:
    """Parameterized SQL and columnar inserts against one ClickHouse database."""

    def __init__(self, client: Client, *, embedded: bool, data_dir: Path | None = None) -> None:
        """``data_dir``: where the embedded engine keeps its files (None for a server)."""
        self._client = client
        self.embedded = embedded
        self._data_dir = data_dir
        # The chDB engine is one per process and its client interface is marked
        # experimental; serializing calls keeps concurrent API threads and the
        # writer from interleaving on it. A server client needs no such lock.
        self._lock: threading.Lock | None = threading.Lock() if embedded else None

    @contextmanager
    def _serialized(self) -> Iterator[None]:
        if self._lock is None:
            yield
            return
        with self._lock:
            yield

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        with self._serialized():
            return self._client.command(sql, parameters=_bound(parameters))

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        """Run a SELECT; values are bound server-side through ``{name:Type}``."""
        with self._serialized():
            result = self._client.query(sql, parameters=_bound(parameters))
            rows = [tuple(row) for row in result.result_rows]
        return QueryResult(tuple(result.column_names), rows)

    def insert_columns(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """Insert one block given as ``{column: values}``; empty blocks are skipped."""
        names = list(columns)
        if not names or not len(columns[names[0]]):
            return
        with self._serialized():
            self._client.insert(
                table,
                [columns[name] for name in names],
                column_names=names,
                column_oriented=True,
                settings=_INSERT_SETTINGS,
            )

    def ping(self) -> bool:
        """Whether the store answers; bounded to seconds, as readiness probes need."""
        try:
            if self.embedded:
                return bool(self.command("SELECT 1") == 1)
            return bool(self._client.ping())  # GET /ping with a short timeout of its own
        except Exception:
            return False

    def persist(self) -> None:
        """Make every write so far survive a power loss; raises OSError if the disk cannot.

        ClickHouse does not fsync the parts it writes, so an insert that returned
        may still sit in the page cache. Embedded, the file system of the data
        directory is flushed (one ``syncfs``, a few ms after a large write). A
        server keeps its own promise: replication, or its fsync settings.
        """
        if self._data_dir is not None:
            _sync_file_system(self._data_dir)

    def release_memory(self) -> None:
        """Return memory the embedded engine has freed to the OS (a server's is its own).

        chDB's allocator (jemalloc) keeps freed pages for reuse; after a large
        insert that is hundreds of MB the process holds but does not use.
        """
        if self.embedded:
            self.command("SYSTEM JEMALLOC PURGE")

    def close(self) -> None:
        self._client.close()


def open_store(dsn: str) -> Store:
    """Open the store behind ``dsn`` (``chdb:///dir`` or ``http(s)://…/db``)."""
    scheme = urlsplit(dsn).scheme
    if scheme == "chdb":
        data_dir = Path(urlsplit(dsn).path)
        data_dir.mkdir(parents=True, exist_ok=True)
        return Store(clickhouse_connect.get_client(dsn=dsn), embedded=True, data_dir=data_dir)
    if scheme in ("http", "https", "clickhouse", "clickhouses"):
        # API threads query concurrently; a shared session id would make the
        # server reject overlapping queries.
        # A server that stops answering must fail a write in seconds, not the
        # driver's default five minutes, so the collector turns to its spool.
        client = clickhouse_connect.get_client(
            dsn=dsn, autogenerate_session_id=False, connect_timeout=5, send_receive_timeout=60
        )
        return Store(client, embedded=False)
    raise ValueError(f"unsupported ClickHouse DSN scheme {scheme!r}: use chdb:///dir or http(s)://")


def _sync_file_system(directory: Path) -> None:
    """Flush the file system holding ``directory``: Linux ``syncfs``, else every one (``sync``)."""
    syncfs = getattr(_libc, "syncfs", None)
    if syncfs is None:
        os.sync()
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"cannot flush {directory}: {os.strerror(errno)}")
    finally:
        os.close(fd)


_libc = ctypes.CDLL(None, use_errno=True)
