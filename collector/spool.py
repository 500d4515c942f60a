"""The write-ahead spool: an export is on local disk, fsync'd, before it is acknowledged.

Records are appended to segment files (``<first seq>.seg``) and fsync'd before
:meth:`Spool.append` returns. The writer marks how far it has stored with
:meth:`Spool.commit`, which persists a checkpoint and deletes segments wholly
behind it. At start-up every record after the checkpoint is handed back for
replay; re-storing one that had been stored already is harmless because every
write downstream is idempotent (rows are keyed by their ids, rollups by a
ledger).

A record is ``header | payload``. The header holds a magic number, the CRC-32
of the payload, the sequence number and the payload length, so a record torn
by a crash mid-append is recognised and cut off, never replayed half-read.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_MAGIC = 0x54545331  # "TTS1"
_HEADER = struct.Struct("<IIQI")  # magic, crc32(payload), seq, payload length
_FIELDS = struct.Struct("<HHH")  # lengths of signal, project id, content type; body is the rest
_SUFFIX = ".seg"
_CHECKPOINT = "checkpoint"
# Big enough that rotation is rare, small enough that a stored segment is freed soon.
SEGMENT_BYTES = 64 * 1024 * 1024


class SpoolFull(Exception):
    """Appending would pass the spool's disk bound."""


@dataclass(frozen=True)
class SpoolRecord:
    """One export as the receiver accepted it: enough to decode it again."""

    signal: str  # "traces" or "logs"
    project_id: str
    content_type: str
    body: bytes  # uncompressed request body


@dataclass(frozen=True)
class SpoolRef:
    """Where a record lies and whose it is, so it can be queued without holding its body."""

    seq: int
    segment: Path
    offset: int
    size: int  # header included: what it occupies on disk
    signal: str
    project_id: str


@dataclass
class _Segment:
    path: Path
    first_seq: int
    last_seq: int  # first_seq - 1 while empty


class Spool:
    """Append-only, fsync'd record log in one directory, with a commit checkpoint.

    Thread-safe. One process owns a spool directory at a time (``serve`` runs
    one per data directory).
    """

    def __init__(self, directory: Path, max_bytes: int) -> None:
        """Open ``directory`` (created if needed) and cut any torn tail left by a crash.

        ``max_bytes`` bounds the bytes of records not yet committed; past it
        :meth:`append` raises :class:`SpoolFull`.
        """
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._committed = self._read_checkpoint()
        self._segments: list[_Segment] = []
        self._uncommitted: deque[SpoolRef] = deque()
        self._stored: set[int] = set()  # stored out of order, ahead of the checkpoint
        self._pending_bytes = 0
        self._recover()
        next_seq = max([self._committed, *(s.last_seq for s in self._segments)]) + 1
        # Appends always go to a fresh segment: nothing is written after a torn tail.
        self._active = self._open_segment(next_seq)
        self._fd = os.open(self._active.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._offset = 0
        self._sync_directory()

    @property
    def pending_bytes(self) -> int:
        """Bytes of records appended and not yet committed."""
        return self._pending_bytes

    def unwritten(self) -> list[SpoolRef]:
        """Records after the checkpoint, oldest first: what a restart must replay."""
        with self._lock:
            return list(self._uncommitted)

    def append(self, record: SpoolRecord) -> SpoolRef:
        """Write ``record`` and fsync it; it survives a crash once this returns."""
        payload = _encode(record)
        with self._lock:
            size = _HEADER.size + len(payload)
            if self._pending_bytes + size > self.max_bytes:
                raise SpoolFull(
                    f"spool holds {self._pending_bytes} unwritten bytes; "
                    f"{size} more would pass its {self.max_bytes}-byte bound"
                )
            if self._offset and self._offset + size > SEGMENT_BYTES:
                self._rotate()
            seq = self._active.last_seq + 1
            header = _HEADER.pack(_MAGIC, zlib.crc32(payload), seq, len(payload))
            _write_all(self._fd, header + payload)
            os.fsync(self._fd)
            ref = SpoolRef(
                seq, self._active.path, self._offset, size, record.signal, record.project_id
            )
            self._active.last_seq = seq
            self._offset += size
            self._uncommitted.append(ref)
            self._pending_bytes += size
            return ref

    def read(self, ref: SpoolRef) -> SpoolRecord:
        """The record at ``ref`` (checked against its CRC)."""
        with ref.segment.open("rb") as segment:
            segment.seek(ref.offset)
            data = segment.read(ref.size)
        parsed = _parse(data, 0)
        if parsed is None or parsed[0] != ref.seq:
            raise OSError(f"spool record {ref.seq} in {ref.segment.name} is unreadable")
        return _decode(parsed[1])

    def commit(self, seqs: Iterable[int]) -> None:
        """These records are stored: persist the checkpoint, and free what is behind it.

        The checkpoint only passes records that are all stored, whatever the
        order ``seqs`` arrive in, so a restart never skips an unwritten one.
        """
        with self._lock:
            self._stored.update(seqs)
            head = self._committed
            while self._uncommitted and self._uncommitted[0].seq in self._stored:
                ref = self._uncommitted.popleft()
                self._stored.discard(ref.seq)
                self._pending_bytes -= ref.size
                head = ref.seq
            if head == self._committed:
                return
            self._committed = head
            self._write_checkpoint(head)
            while len(self._segments) > 1 and self._segments[0].last_seq <= head:
                self._segments.pop(0).path.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)

    def _rotate(self) -> None:
        os.close(self._fd)
        self._active = self._open_segment(self._active.last_seq + 1)
        self._fd = os.open(self._active.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._offset = 0
        self._sync_directory()

    def _open_segment(self, first_seq: int) -> _Segment:
        segment = _Segment(self.directory / f"{first_seq:020d}{_SUFFIX}", first_seq, first_seq - 1)
        self._segments.append(segment)
        return segment

    def _recover(self) -> None:
        """Index the records after the checkpoint; truncate torn tails; drop spent segments."""
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            data = path.read_bytes()
            first_seq = int(path.stem)
            segment = _Segment(path, first_seq, first_seq - 1)
            offset = 0
            while (parsed := _parse(data, offset)) is not None:
                seq, payload, size = parsed
                if seq > self._committed:
                    signal, project_id, _, _ = _fields(payload)
                    self._uncommitted.append(SpoolRef(seq, path, offset, size, signal, project_id))
                    self._pending_bytes += size
                segment.last_seq = seq
                offset += size
            if offset < len(data):
                # Only a record whose fsync never returned can be torn, and that
                # export was never acknowledged: its client sends it again.
                logger.warning(
                    "spool %s: cut %d bytes of a torn record", path.name, len(data) - offset
                )
                with path.open("r+b") as torn:
                    torn.truncate(offset)
            if segment.last_seq <= self._committed or segment.last_seq < first_seq:
                path.unlink()  # spent, or empty
            else:
                self._segments.append(segment)

    def _read_checkpoint(self) -> int:
        try:
            return int((self.directory / _CHECKPOINT).read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def _write_checkpoint(self, seq: int) -> None:
        staged = self.directory / f"{_CHECKPOINT}.tmp"
        with staged.open("w") as out:
            out.write(str(seq))
            out.flush()
            os.fsync(out.fileno())
        staged.replace(self.directory / _CHECKPOINT)
        self._sync_directory()

    def _sync_directory(self) -> None:
        """Make created, renamed and deleted files durable, not just their contents."""
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _encode(record: SpoolRecord) -> bytes:
    signal = record.signal.encode()
    project = record.project_id.encode()
    content_type = record.content_type.encode()
    fields = _FIELDS.pack(len(signal), len(project), len(content_type))
    return b"".join((fields, signal, project, content_type, record.body))


def _decode(payload: bytes) -> SpoolRecord:
    signal, project, content_type, body_at = _fields(payload)
    return SpoolRecord(signal, project, content_type, payload[body_at:])


def _fields(payload: bytes) -> tuple[str, str, str, int]:
    """Signal, project id and content type of a payload, and where its body starts."""
    signal_len, project_len, type_len = _FIELDS.unpack_from(payload)
    at = _FIELDS.size
    signal = payload[at : at + signal_len].decode()
    at += signal_len
    project = payload[at : at + project_len].decode()
    at += project_len
    return signal, project, payload[at : at + type_len].decode(), at + type_len


def _parse(data: bytes, offset: int) -> tuple[int, bytes, int] | None:
    """(seq, payload, record size) of the record at ``offset``, or None if absent or torn."""
    end = offset + _HEADER.size
    if end > len(data):
        return None
    magic, crc, seq, length = _HEADER.unpack_from(data, offset)
    payload = data[end : end + length]
    if magic != _MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
        return None
    return seq, payload, _HEADER.size + length
