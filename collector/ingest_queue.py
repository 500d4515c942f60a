"""The bounded queue between receiving an export and writing it, and its one writer.

A receiver decodes an export, then :meth:`IngestQueue.submit` appends it to the
spool (fsync'd: from here on it survives a crash) and queues it. One writer
thread takes queued exports in arrival order, merges those of one signal and
project into a single pipeline call (per-batch costs such as the rollup ledger
read are paid once for many exports), has the store make the write durable,
and only then commits the spool behind them.

Back-pressure, so memory stays bounded under any load:

* while the store takes writes, at most ``max_items`` decoded items wait in
  memory; past that :class:`QueueFull` (HTTP 429, gRPC RESOURCE_EXHAUSTED) asks
  exporters to retry later;
* while writes fail (a ClickHouse server unreachable), exports are still
  accepted into the spool, kept on disk only, up to the spool's byte bound;
  past it :class:`StorageUnavailable` (HTTP 503, gRPC UNAVAILABLE).

Writes are retried with backoff until they succeed. One export that fails
while the exports behind it succeed is judged unwritable, set aside in
``<spool>/rejected/`` and counted as dropped, so it cannot stall ingest for ever.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokentrail.collector import telemetry
from tokentrail.collector.spool import Spool, SpoolFull, SpoolRecord, SpoolRef

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
QUEUE_FULL_RETRY_AFTER_SECONDS = 1  # the writer frees room within a batch or two
# Failures of one export, while the ones behind it are written, before it is set aside.
UNWRITABLE_AFTER = 3
_BACKOFF_START_S = 0.2
_BACKOFF_MAX_S = 10.0
# A merged write reads spool-only exports back from disk: bound what it holds at once.
_MAX_BATCH_SPOOL_BYTES = 32 * 1024 * 1024


class Backpressure(Exception):
    """The export was not accepted; the client should retry after ``retry_after`` seconds."""

    retry_after = RETRY_AFTER_SECONDS


class QueueFull(Backpressure):
    """Too much is waiting to be written: the client sends faster than the store takes."""

    retry_after = QUEUE_FULL_RETRY_AFTER_SECONDS


class StorageUnavailable(Backpressure):
    """Neither the store nor the spool can take the export now."""


@dataclass(frozen=True)
class Export:
    """One decoded export request, as a receiver hands it over."""

    signal: str  # "traces" or "logs": which :class:`Route` stores it
    project_id: str
    items: list[Any]  # spans or log records that passed validation
    body: bytes  # the uncompressed request, spooled so it can be decoded again
    content_type: str


@dataclass(frozen=True)
class Route:
    """How one signal's spooled exports are decoded again and stored."""

    decode: Callable[[bytes, str], tuple[list[Any], list[str]]]  # → items, rejections
    store: Callable[[str, list[Any]], None]  # (project id, items); raises if not stored
    # Called after ``store`` for items an earlier attempt may have half-written
    # (replayed after a crash, or retried after a failed write).
    repair: Callable[[str, list[Any]], None] | None = None


# Freed memory goes back to the OS once the writer has had nothing to write for
# this long, and while it is busy at most every _RELEASE_EVERY_S. Releasing after
# every write cost ~2% of ingest CPU under load: the purge itself, and faulting
# back in the pages it handed back, which the very next write uses again.
_RELEASE_WHEN_IDLE_S = 0.25
_RELEASE_EVERY_S = 10.0
# How long, at most, the writer waits for a fuller batch under load (``_linger``).
_LINGER_S = 0.15


@dataclass(frozen=True)
class QueueLimits:
    """Bounds of the queue; every one is set from the environment by :func:`configured_queue`."""

    max_items: int = 16_384  # decoded spans/log records held in memory awaiting write
    batch_items: int = 8_192  # items merged into one pipeline call
    ack_wait_s: float = 5.0  # how long an export's answer waits for its write


@dataclass
class _Entry:
    ref: SpoolRef
    count: int
    items: list[Any] | None  # None: on disk only, decoded again when written
    answered: threading.Event = field(default_factory=threading.Event)  # written, or failed once
    failures: int = 0
    replayed: bool = False  # left unwritten by an earlier process

    @property
    def signal(self) -> str:
        return self.ref.signal

    @property
    def project_id(self) -> str:
        return self.ref.project_id


class IngestQueue:
    """Spool, bounded queue and writer thread; see the module docstring."""

    def __init__(
        self,
        spool: Spool,
        routes: Mapping[str, Route],
        limits: QueueLimits | None = None,
        release_memory: Callable[[], None] | None = None,
        persist: Callable[[], None] | None = None,
    ) -> None:
        """Queue what an earlier process left unwritten in ``spool``; call :meth:`start` next.

        ``persist`` is called after each write, before the spool lets go of
        it: it must make what the store wrote survive a power loss (ClickHouse
        does not fsync its parts), and raise if it cannot, so the write counts
        as failed and is retried.

        ``release_memory`` is called once the writer has been idle for a
        moment after writes, and while it stays busy at most every ten
        seconds: big merged writes free much memory that allocators would
        otherwise keep.
        """
        self._spool = spool
        self._routes = dict(routes)
        self._limits = limits or QueueLimits()
        self._release_memory = release_memory
        self._released_at = 0.0
        self._unreleased = False  # written since memory was last released
        # Exports in progress around the last write: those it answered and those queued behind it.
        self._expected = 0
        self._persist = persist
        self._cond = threading.Condition()
        self._entries: deque[_Entry] = deque()
        self._held_items = 0  # decoded items in memory, queued or being written
        self._queued_spans = 0  # spans accepted and not yet written
        self._busy = False  # the writer holds entries taken off the queue
        self._failure: str | None = None  # why the last write failed, until one succeeds
        self._stopping = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tokentrail-writer", daemon=True)
        # Replayed entries stay on disk until written; their size is known once decoded.
        self._entries.extend(_Entry(ref, 0, None, replayed=True) for ref in spool.unwritten())
        if self._entries:
            logger.info("spool: replaying %d exports not yet written", len(self._entries))
        self._publish()

    def start(self) -> None:
        self._thread.start()

    def submit(self, export: Export) -> None:
        """Make ``export`` durable and queue it; its 200 may be sent once this returns.

        Returns once the items are written or their first write failed, after
        ``ack_wait_s`` at most (they are safe on disk either way), and at once
        while writes are failing.
        Raises :class:`Backpressure` when the export is not accepted.
        """
        signal, project_id, items = export.signal, export.project_id, export.items
        count = len(items)
        with self._cond:
            if self._stopping:
                raise StorageUnavailable("the collector is shutting down; retry later")
            writing = self._failure is None
            # An empty queue takes even an export over the bound: none is refused for ever.
            if writing and self._held_items and self._held_items + count > self._limits.max_items:
                raise QueueFull(f"{self._held_items} items are waiting to be written; retry later")
        try:
            ref = self._spool.append(
                SpoolRecord(signal, project_id, export.content_type, export.body)
            )
        except SpoolFull as exc:
            raise StorageUnavailable(f"{exc}; the store is not keeping up, retry later") from exc
        except OSError as exc:
            logger.exception("spool: cannot append")
            raise StorageUnavailable(f"the spool cannot be written ({exc}); retry later") from exc
        with self._cond:
            held = self._held_items + count <= self._limits.max_items or not self._held_items
            entry = _Entry(ref, count, items if held else None)
            if held:
                self._held_items += count
            if signal == "traces":
                self._queued_spans += count
            self._entries.append(entry)
            self._publish()
            self._cond.notify_all()  # notify() could wake a drain() rather than the writer
        if writing:
            entry.answered.wait(self._limits.ack_wait_s)

    @property
    def spooled_bytes(self) -> int:
        """Bytes of accepted exports on disk and not yet written."""
        return self._spool.pending_bytes

    def readiness(self) -> str | None:
        """None while exports are written as they come, else why not (for ``/readyz``)."""
        failure = self._failure
        spool = self._spool
        if failure is not None:
            return (
                f"writes are failing ({failure}); accepting into the spool, "
                f"{spool.pending_bytes} of {spool.max_bytes} bytes used"
            )
        if spool.pending_bytes >= spool.max_bytes:
            return "the spool is full"
        return None

    def drain(self, timeout_s: float) -> bool:
        """Wait until everything queued is written; False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._entries or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop accepting, write what is queued for up to ``timeout_s``, stop the writer.

        What is still unwritten stays in the spool and is replayed at the next start.
        """
        with self._cond:
            self._stopping = True
        if self._thread.is_alive():
            if not self.drain(timeout_s):
                logger.warning("spool: stopping with exports unwritten; they replay at next start")
            self._stop.set()
            with self._cond:
                self._cond.notify_all()
            self._thread.join(timeout=_BACKOFF_MAX_S)
        self._spool.close()

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            idle = False
            with self._cond:
                while not self._entries and not self._stop.is_set():
                    if not self._unreleased:
                        self._cond.wait()
                    elif not self._cond.wait(_RELEASE_WHEN_IDLE_S) and not self._entries:
                        idle = True
                        break
                self._linger()
                batch = self._take()
                self._busy = bool(batch)
            if batch:
                self._write_until_done(batch)
                self._after_write()
            elif idle:
                self._release()
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _linger(self) -> None:
        """Under load, wait briefly for the exports of the clients the last write answered.

        A client waiting for its answer sends its next export only once the
        answer comes. Taking at once what is queued would split busy clients
        into two halves written in turn, each write half full, and a write
        costs much the same whether it carries 4k spans or 8k (the rollups'
        reads, parts the engine merges again): ~13% more CPU per span. So
        while writes succeed, fewer exports are queued than were in progress
        around the last write and the batch is not full, the writer waits for
        more, for ``_LINGER_S`` at most. A lone client is never kept waiting.
        Called with the condition held.
        """
        if self._failure is not None:
            return  # exports are answered at once while writes fail
        until = time.monotonic() + _LINGER_S
        while (
            self._entries
            and len(self._entries) < self._expected
            and self._held_items < self._limits.batch_items
            and not self._stop.is_set()
        ):
            left = until - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _after_write(self) -> None:
        """Release freed memory at most every _RELEASE_EVERY_S while busy (``_run`` when idle)."""
        self._unreleased = self._release_memory is not None
        if time.monotonic() - self._released_at >= _RELEASE_EVERY_S:
            self._release()

    def _release(self) -> None:
        self._released_at = time.monotonic()
        self._unreleased = False
        if self._release_memory is not None:
            try:
                self._release_memory()
            except Exception:
                # Only memory stays high; turning it off keeps the writer and the log clean.
                logger.warning("cannot release freed memory; not trying again", exc_info=True)
                self._release_memory = None

    def _take(self) -> list[_Entry]:
        """Entries from the head of the queue, as many as one merged write should carry."""
        batch: list[_Entry] = []
        items = spooled = 0
        while self._entries:
            entry = self._entries[0]
            if batch and (
                items + entry.count > self._limits.batch_items
                or spooled + entry.ref.size > _MAX_BATCH_SPOOL_BYTES
            ):
                break
            batch.append(self._entries.popleft())
            items += entry.count
            spooled += entry.ref.size if entry.items is None else 0
        return batch

    def _write_until_done(self, batch: list[_Entry]) -> None:
        """Write ``batch``, retrying with backoff; exports that cannot be written are set aside."""
        backoff = _BACKOFF_START_S
        while not self._stop.is_set():
            try:
                self._write(batch)
            except Exception as exc:
                self._failed(batch, exc)
                if len(batch) > 1:
                    # Written one by one from now on, so one bad export cannot hold the rest.
                    for entry in batch:
                        self._write_until_done([entry])
                    return
                if self._unwritable(batch[0]):
                    return
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
            else:
                self._written(batch)
                return

    def _write(self, batch: Sequence[_Entry]) -> None:
        groups: dict[tuple[str, str], list[Any]] = {}
        for entry in batch:
            items = entry.items if entry.items is not None else self._decode(entry)
            groups.setdefault((entry.signal, entry.project_id), []).extend(items)
        recovering = any(entry.failures or entry.replayed for entry in batch)
        for (signal, project_id), items in groups.items():
            route = self._routes[signal]
            if items:
                route.store(project_id, items)
                if recovering and route.repair is not None:
                    route.repair(project_id, items)
        if self._persist is not None:
            self._persist()

    def _decode(self, entry: _Entry) -> list[Any]:
        record = self._spool.read(entry.ref)
        items, _ = self._routes[record.signal].decode(record.body, record.content_type)
        return items

    def _failed(self, batch: Sequence[_Entry], exc: Exception) -> None:
        telemetry.WRITE_FAILURES.inc()
        with self._cond:
            first_failure = self._failure is None
            self._failure = f"{type(exc).__name__}: {exc}"[:300]
        for entry in batch:
            entry.failures += 1
            entry.answered.set()  # safe in the spool: the client need not wait for the retry
        if first_failure:
            logger.exception("writing %d exports failed; retrying with backoff", len(batch))

    def _unwritable(self, entry: _Entry) -> bool:
        """Set ``entry`` aside if it keeps failing while the export behind it is written."""
        if entry.failures < UNWRITABLE_AFTER:
            return False
        with self._cond:
            behind = self._entries[0] if self._entries else None
        if behind is None:
            return False
        try:
            self._write([behind])
        except Exception:
            behind.failures += 1  # possibly half-written too: repaired once written
            return False  # the store is failing, not this export
        with self._cond:
            self._entries.remove(behind)
        self._set_aside(entry)
        self._written([entry, behind])
        return True

    def _set_aside(self, entry: _Entry) -> None:
        rejected = self._spool.directory / "rejected"
        rejected.mkdir(exist_ok=True)
        record = self._spool.read(entry.ref)
        encoding = "json" if "json" in record.content_type else "pb"  # to send it again by hand
        path = rejected / f"{entry.ref.seq:020d}.{record.signal}.{encoding}"
        with path.open("wb") as out:
            out.write(record.body)
            out.flush()
            os.fsync(out.fileno())
        if record.signal == "traces":
            # A replayed export's size is known only once decoded.
            dropped = len(self._decode(entry)) if entry.replayed else entry.count
            telemetry.SPANS_DROPPED.inc(dropped)
        logger.error(
            "project %s: an export of %s could not be written %d times while later ones "
            "were; its body is kept in %s and it is counted as dropped",
            entry.project_id,
            record.signal,
            entry.failures,
            path,
        )

    def _written(self, batch: Sequence[_Entry]) -> None:
        self._spool.commit(entry.ref.seq for entry in batch)
        with self._cond:
            self._failure = None
            # Counted before the answers go out: the clients answered may send again at once.
            self._expected = len(batch) + len(self._entries)
            for entry in batch:
                if entry.items is not None:
                    self._held_items -= entry.count
                    entry.items = None
                if entry.signal == "traces":
                    self._queued_spans -= entry.count
            self._publish()
            self._cond.notify_all()
        for entry in batch:
            entry.answered.set()

    def _publish(self) -> None:
        """Refresh the queue gauges; called with the condition held."""
        telemetry.SPANS_QUEUED.set(self._queued_spans)
        telemetry.SPOOL_BYTES.set(self._spool.pending_bytes)
