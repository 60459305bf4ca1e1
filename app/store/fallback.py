"""The durable local fallback store: where accepted events wait while the broker is away.

One SQLite file in WAL mode, one writer. Every `put` and `delete` is queued; a single writer task
takes everything queued (up to `max_batch`) and writes it in one transaction on a dedicated worker
thread (group commit), then answers each caller only after COMMIT returned. An event answered
"stored" therefore survives a kill -9. Reads (`peek`) use a second connection on a second thread;
WAL lets them run beside the writer.

Durability levels (`synchronous`):
- `FULL` (default): COMMIT returns after the WAL is fsynced; a committed event survives a process
  crash and a power loss.
- `NORMAL`: COMMIT returns before the fsync; a committed event still survives a process crash
  (kill -9, OOM), but the last commits before a power loss or kernel panic can be lost.

The bound (`max_bytes`) is on the logical size of the stored rows, not the file: per row,
`len(body)` + the UTF-8 lengths of channel, message_id, correlation_id and the extra headers' JSON
(if any) + `ROW_OVERHEAD_BYTES`
(which stands for seq, timestamp, record headers and index entries). The files are larger: the
database does not shrink when rows are deleted (SQLite reuses the freed pages), and the WAL beside
it grows to about 40 MB between checkpoints.

The same file holds the idempotency keys (`app.ingress.idempotency`), in a table of their own written by
the same writer: a stored event's key in the event's transaction, published events' keys in a
group commit of their own (`remember_nowait`). Keys are not counted against `max_bytes`; `forget` bounds them by age and count.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import json
import logging
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, TextIO, TypeVar

from ..events import Event, Headers

log = logging.getLogger("breakwater.store")

ROW_OVERHEAD_BYTES: Final = 64
"""Fixed per-row part of the logical size the bound is measured against."""

_T = TypeVar("_T")
# channel, message_id, correlation_id, timestamp ms, body; then, only when the event has extra
# headers, those as a JSON object: most events have none, and their rows stay as they were.
_Row = tuple[str, str, str, int, bytes] | tuple[str, str, str, int, bytes, str]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_MB: Final = 1_000_000
# Stays under SQLite's historical 999-parameter limit whatever the library was compiled with.
_PARAMS_PER_QUERY: Final = 500
_SYNCHRONOUS_LEVELS: Final = frozenset({"FULL", "NORMAL"})
_CORRUPTION_CODES: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})

_INSERTED: Final = 0
_DUPLICATE: Final = 1
_FULL: Final = 2

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    correlation_id TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    body BLOB NOT NULL,
    headers TEXT
);
CREATE INDEX IF NOT EXISTS events_channel_seq ON events (channel, seq);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    digest BLOB NOT NULL,
    outcome TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys (created_ms);
"""
# Must compute exactly what `_row_size` computes, or the bound drifts across restarts.
_ROW_SIZE_SQL: Final = (
    "(length(body) + length(CAST(channel AS BLOB)) + length(CAST(message_id AS BLOB))"
    " + length(CAST(correlation_id AS BLOB)) + coalesce(length(CAST(headers AS BLOB)), 0)"
    f" + {ROW_OVERHEAD_BYTES})"
)
_COLUMNS: Final = "seq, channel, message_id, correlation_id, timestamp, body, headers"
_INSERT: Final = (
    "INSERT OR IGNORE INTO events (channel, message_id, correlation_id, timestamp, body)"
    " VALUES (?, ?, ?, ?, ?)"
)
_INSERT_WITH_HEADERS: Final = (
    "INSERT OR IGNORE INTO events (channel, message_id, correlation_id, timestamp, body, headers)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
# Files written before events carried extra headers lack the column: it is added when a store
# opens such a file (an instant schema change; the rows are not rewritten and read as having none).
_ADD_HEADERS: Final = "ALTER TABLE events ADD COLUMN headers TEXT"
# A key seen again after its window replaces the expired row. Rows are appended as `(?, ...)`.
_REMEMBER_MANY: Final = (
    "INSERT OR REPLACE INTO idempotency_keys (key, channel, digest, outcome, created_ms) VALUES "
)
_KEY_ROWS_PER_QUERY: Final = _PARAMS_PER_QUERY // 5


@dataclass(frozen=True, slots=True)
class RememberedKey:
    """An idempotency key with what became of its event, as the store keeps it (see
    `app.ingress.idempotency`): `digest` identifies the channel and normalised body, `outcome` is
    `published` or `stored`, `created_ms` the acceptance time in milliseconds since the epoch."""

    key: str
    channel: str
    digest: bytes
    outcome: str
    created_ms: int

    def row(self) -> tuple[str, str, bytes, str, int]:
        return (self.key, self.channel, self.digest, self.outcome, self.created_ms)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the store holds it; `seq` is its place in acceptance order."""

    seq: int
    event: Event


class StoreError(Exception):
    """Base of the store's errors; `str()` is a sentence telling an operator what to do."""


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


class StoreFull(StoreError):
    """The bound is reached. Nothing is ever evicted: new events are refused instead."""

    def __init__(self, used_bytes: int, max_bytes: int) -> None:
        self.used_bytes = used_bytes
        self.max_bytes = max_bytes
        super().__init__(
            f"fallback store is full ({_size(used_bytes)} of {_size(max_bytes)});"
            " events are refused until the broker drains it"
            " (or BREAKWATER_STORE_MAX_BYTES is raised)"
        )


class StoreUnavailable(StoreError):
    """The store cannot be written (disk full, read-only directory, I/O error) or is not open."""


class StoreInUse(StoreError):
    """Another process has the store open: two writers would corrupt the counters and the order."""


class StoreCorrupt(StoreError):
    """The file is not a sound SQLite database and `on_corrupt="refuse"` forbids moving it aside."""


@dataclass(slots=True)
class _Put:
    row: _Row
    size: int
    future: asyncio.Future[bool]
    key: RememberedKey | None = None  # written in the same transaction, unless refused as full


@dataclass(slots=True)
class _Delete:
    seqs: tuple[int, ...]
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Withdraw:
    message_ids: tuple[str, ...]
    future: asyncio.Future[int]


@dataclass(slots=True)
class _Remember:
    keys: tuple[RememberedKey, ...]
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Forget:
    before_ms: int
    keep: int
    future: asyncio.Future[int]


_Op = _Put | _Delete | _Withdraw | _Remember | _Forget


@dataclass(slots=True)
class _Counters:
    depths: dict[str, int] = field(default_factory=dict)
    oldest_ms: dict[str, int] = field(default_factory=dict)
    used_bytes: int = 0


@dataclass(slots=True)
class _Outcome:
    """What one committed batch changed; applied to the counters on the event loop."""

    verdicts: list[int]
    depth_delta: dict[str, int]
    bytes_delta: int
    oldest_ms: dict[str, int | None]
    forgotten: list[int] = field(default_factory=list)  # keys removed, per _Forget in order
    withdrawn: list[int] = field(default_factory=list)  # events removed, per _Withdraw in order


@dataclass(frozen=True, slots=True)
class _KeyOps:
    """The idempotency-key writes of one batch: one entry per put (None: the put has no key),
    the keys of published events, and the expiries."""

    with_puts: list[RememberedKey | None]
    remembered: list[RememberedKey]
    forgets: list[tuple[int, int]]


class FallbackStore:
    """Durable, bounded, idempotent (by `message_id`) FIFO of events, ordered by `seq`.

    All methods must be called from the one event loop that ran `open()`. The counters (`depth`,
    `channel_depths`, `used_bytes`, `oldest_timestamps`) change only after a commit, and before
    the callers of that commit are answered: once `put` returned, `has_backlog` sees the event.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        synchronous: str = "FULL",
        on_corrupt: Literal["quarantine", "refuse"] = "quarantine",
        max_batch: int = 1000,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if synchronous.upper() not in _SYNCHRONOUS_LEVELS:
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        if on_corrupt not in ("quarantine", "refuse"):
            raise ValueError(f"on_corrupt must be 'quarantine' or 'refuse', not {on_corrupt!r}")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._path = Path(path)
        self._max_bytes = max_bytes
        self._synchronous = synchronous.upper()
        self._on_corrupt = on_corrupt
        self._max_batch = max_batch

        self._state: Literal["new", "open", "closing", "closed"] = "new"
        self._queue: deque[_Op] = deque()
        self._wakeup = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._closing: asyncio.Future[None] | None = None
        self._write_pool: ThreadPoolExecutor | None = None
        self._read_pool: ThreadPoolExecutor | None = None
        self._writer_conn: sqlite3.Connection | None = None
        self._reader_conn: sqlite3.Connection | None = None
        self._lock_file: TextIO | None = None

        self._counters = _Counters()
        self._depth = 0
        self._commits = 0
        self._failing = False
        self._full = False
        self._refused_at_bytes = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the directory, check integrity (quarantine or refuse a corrupt file), create the
        schema, load the counters and start the writer. Raises StoreUnavailable or StoreCorrupt."""
        if self._state != "new":
            raise RuntimeError(f"fallback store at {self._path} was already opened")
        loop = asyncio.get_running_loop()
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="breakwater-store-writer")
        self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="breakwater-store-reader")
        try:
            self._writer_conn, counters = await loop.run_in_executor(
                self._write_pool, self._open_writer
            )
            self._reader_conn = await loop.run_in_executor(self._read_pool, self._open_reader)
        except BaseException:
            await self._release()
            self._state = "closed"
            raise
        self._counters = counters
        self._depth = sum(counters.depths.values())
        self._state = "open"
        self._writer_task = loop.create_task(self._run_writer(), name="breakwater-store-writer")
        log.info(
            "fallback store at %s opened: %d events waiting, %.1f MB of %.1f MB used",
            self._path,
            self._depth,
            counters.used_bytes / _MB,
            self._max_bytes / _MB,
        )

    async def close(self) -> None:
        """Finish every queued write, stop the writer and close the connections. Idempotent."""
        if self._closing is None and self._state in ("new", "closed"):
            self._state = "closed"  # never opened, or open() failed and already released
            return
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._shutdown())
        # A caller cancelled mid-close must not leave the writer half stopped.
        await asyncio.shield(self._closing)

    async def __aenter__(self) -> FallbackStore:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _shutdown(self) -> None:
        self._state = "closing"
        self._wakeup.set()
        clean = False
        try:
            if self._writer_task is not None:
                await self._writer_task
            clean = not self._failing
        finally:
            await self._release()
            self._state = "closed"
        if clean:
            # Only now: the writer has drained the queue and the last connection has checkpointed
            # the WAL into the file, so these counters describe exactly the file the mark names.
            _mark_clean(self._path, self._counters)
        log.info("fallback store at %s closed: %d events waiting", self._path, self._depth)

    async def _release(self) -> None:
        loop = asyncio.get_running_loop()
        for pool, conn in (
            (self._write_pool, self._writer_conn),
            (self._read_pool, self._reader_conn),
        ):
            if pool is None:
                continue
            if conn is not None:
                try:
                    # On its own thread: sqlite3 connections refuse to be closed elsewhere.
                    await loop.run_in_executor(pool, conn.close)
                except sqlite3.Error:
                    log.exception("closing the fallback store at %s failed", self._path)
            pool.shutdown(wait=False)
        self._writer_conn = self._reader_conn = None
        self._write_pool = self._read_pool = None
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the lock
            self._lock_file = None

    def _open_writer(self) -> tuple[sqlite3.Connection, _Counters]:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unavailable(exc.strerror or str(exc)) from exc
        # Closed cleanly and untouched since: skip the integrity check and the counter scan, each
        # of which reads the whole file (the check alone takes about a second per million events),
        # and take the counters the close recorded. After a crash or any change, check and scan.
        counters_at_close = _take_clean_mark(self._path)
        if counters_at_close is None:
            self._check_integrity()  # first: a refused corrupt store leaves its directory untouched
        self._take_lock()
        try:
            conn = _connect_writer(self._path, self._synchronous)
        except sqlite3.Error as exc:
            raise self._unavailable(str(exc)) from exc
        if counters_at_close is not None:
            return conn, counters_at_close
        try:
            return conn, _load_counters(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise self._unavailable(str(exc)) from exc

    def _take_lock(self) -> None:
        # SQLite's own locking lets two processes write the same file in turn; the store keeps its
        # counters and order in memory, so exactly one process may own it. The lock goes with the
        # process, kill -9 included.
        lock_path = self._path.with_name(self._path.name + ".lock")
        try:
            lock_file = lock_path.open("a")
        except OSError as exc:
            raise self._unavailable(exc.strerror or str(exc)) from exc
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock_file.close()
            raise StoreInUse(
                f"fallback store at {self._path} is in use by another process (a second gateway"
                " or a `breakwater store` command); every gateway needs a store of its own"
            ) from None
        self._lock_file = lock_file

    def _open_reader(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=5.0)
            conn.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"fallback store at {self._path} cannot be read: {exc}") from exc
        return conn

    def _check_integrity(self) -> None:
        try:
            problem = _find_corruption(self._path)
        except sqlite3.Error as exc:
            raise self._unavailable(str(exc)) from exc
        if problem is None:
            return
        if self._on_corrupt == "refuse":
            raise StoreCorrupt(
                f"fallback store at {self._path} is corrupt ({problem}); it was left untouched."
                " Move it aside (events in it can be salvaged with sqlite3's .recover) and"
                " restart to begin with an empty store"
            )
        try:
            moved_to = _quarantine(self._path)
        except OSError as exc:
            reason = f"it is corrupt ({problem}) and could not be moved aside: {exc}"
            raise self._unavailable(reason) from exc
        log.warning(
            "fallback store at %s was corrupt (%s): moved it to %s and started a new, empty store;"
            " events in the old file were not replayed (sqlite3's .recover may salvage them)",
            self._path,
            problem,
            moved_to,
        )

    # -- writing ---------------------------------------------------------------------------

    async def put(self, event: Event) -> bool:
        """Store `event` durably; returns once its batch is committed.

        True if it was newly stored, False if an event with its message_id is already stored
        (then nothing changes). Raises StoreFull or StoreUnavailable; never evicts anything.
        Ids that cannot be encoded as UTF-8 raise UnicodeEncodeError here, before queueing, so
        one bad event cannot fail a batch.
        """
        return await self.put_nowait(event)

    def put_nowait(self, event: Event, key: RememberedKey | None = None) -> asyncio.Future[bool]:
        """Queue `event` at once: its place in the store's order is fixed when this returns.
        The future is answered like `put` (after the commit). `key` is committed with the event
        (also when the event was already stored), never when the event is refused."""
        row = _to_row(event)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._enqueue(_Put(row, _row_size(row), future, key))
        return future

    def remember_nowait(self, keys: Sequence[RememberedKey]) -> asyncio.Future[None]:
        """Queue idempotency keys (of events published, not stored) for the next group commit;
        the future is answered once they are durable. Keys SQLite cannot hold as text (lone
        surrogates) are left out, as `put_nowait` refuses such ids before queueing. Keys are not
        counted against `max_bytes`: `forget` bounds them."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(_Remember(tuple(key for key in keys if _storable(key)), future))
        return future

    async def forget(self, before_ms: int, keep: int) -> int:
        """Remove the keys created before `before_ms`, then the oldest beyond the newest `keep`;
        returns how many were removed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._enqueue(_Forget(before_ms, keep, future))
        return await future

    async def recent_keys(self, since_ms: int, limit: int) -> list[RememberedKey]:
        """The newest `limit` keys created at or after `since_ms`, oldest first."""
        if self._state != "open" or self._read_pool is None or self._reader_conn is None:
            raise StoreUnavailable(f"fallback store at {self._path} cannot be read: it is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._read_pool, _select_keys, self._reader_conn, since_ms, limit
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"fallback store at {self._path} cannot be read: {exc}") from exc

    async def delete(self, seqs: Sequence[int]) -> None:
        """Remove the rows with these seqs (unknown ones are ignored); durable on return."""
        if not seqs:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(_Delete(tuple(seqs), future))
        await future

    async def withdraw(self, message_ids: Sequence[str]) -> int:
        """Remove the events with these message_ids (unknown ones are ignored) and their
        idempotency keys, also when their puts are queued in the same batch; durable on return.
        Returns how many events were removed. For an event the gateway will be handed again (an
        AMQP delivery that can no longer be acked): the stored copy would only be a duplicate."""
        if not message_ids:
            return 0
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._enqueue(_Withdraw(tuple(message_ids), future))
        return await future

    def _enqueue(self, op: _Op) -> None:
        if self._state != "open":
            raise StoreUnavailable(
                f"fallback store at {self._path} cannot be written: it is not open"
            )
        self._queue.append(op)
        self._wakeup.set()

    async def _run_writer(self) -> None:
        while True:
            if self._queue:
                await self._write(self._take_batch())
            elif self._state == "closing":
                return
            else:
                await self._wakeup.wait()
                self._wakeup.clear()

    def _take_batch(self) -> list[_Op]:
        count = min(len(self._queue), self._max_batch)
        return [self._queue.popleft() for _ in range(count)]

    async def _write(self, batch: list[_Op]) -> None:
        puts = [op for op in batch if isinstance(op, _Put)]
        seqs = [seq for op in batch if isinstance(op, _Delete) for seq in op.seqs]
        withdrawals = [op.message_ids for op in batch if isinstance(op, _Withdraw)]
        keys = _KeyOps(
            with_puts=[put.key for put in puts],
            remembered=[key for op in batch if isinstance(op, _Remember) for key in op.keys],
            forgets=[(op.before_ms, op.keep) for op in batch if isinstance(op, _Forget)],
        )
        try:
            outcome = await self._in_writer(
                _write_batch,
                [put.row for put in puts],
                [put.size for put in puts],
                seqs,
                self._counters.used_bytes,
                self._max_bytes,
                keys,
                withdrawals,
            )
        except sqlite3.Error as exc:
            self._fail(batch, str(exc))
            return
        except asyncio.CancelledError:
            self._fail(batch, "the store is shutting down")
            raise
        except Exception as exc:
            # The writer must outlive any one batch, or every later caller would wait forever.
            log.exception("fallback store writer failed on a batch of %d", len(batch))
            self._fail(batch, repr(exc))
            return
        self._apply(outcome)
        self._answer(batch, puts, outcome.verdicts, outcome.forgotten, outcome.withdrawn)

    async def _in_writer(self, fn: Callable[..., _T], *args: object) -> _T:
        if self._write_pool is None or self._writer_conn is None:
            raise sqlite3.OperationalError("the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._write_pool, fn, self._writer_conn, *args)

    def _apply(self, outcome: _Outcome) -> None:
        depths = self._counters.depths
        for channel, delta in outcome.depth_delta.items():
            remaining = depths.get(channel, 0) + delta
            if remaining > 0:
                depths[channel] = remaining
            else:
                depths.pop(channel, None)
            self._depth += delta
        for channel, oldest in outcome.oldest_ms.items():
            if oldest is None:
                self._counters.oldest_ms.pop(channel, None)
            else:
                self._counters.oldest_ms[channel] = oldest
        self._counters.used_bytes += outcome.bytes_delta
        self._commits += 1
        if self._failing:
            self._failing = False
            log.info("fallback store at %s is writable again", self._path)

    def _answer(
        self,
        batch: list[_Op],
        puts: list[_Put],
        verdicts: list[int],
        forgotten_counts: list[int],
        withdrawn_counts: list[int],
    ) -> None:
        for put, verdict in zip(puts, verdicts, strict=True):
            if put.future.done():  # the caller gave up (cancelled); the event is stored anyway
                continue
            if verdict == _FULL:
                put.future.set_exception(StoreFull(self._counters.used_bytes, self._max_bytes))
            else:
                put.future.set_result(verdict == _INSERTED)
        forgotten = iter(forgotten_counts)
        withdrawn = iter(withdrawn_counts)
        for op in batch:
            if isinstance(op, _Forget | _Withdraw):
                count = next(forgotten if isinstance(op, _Forget) else withdrawn)
                if not op.future.done():
                    op.future.set_result(count)
            elif isinstance(op, _Delete | _Remember) and not op.future.done():
                op.future.set_result(None)
        self._note_fullness(_FULL in verdicts)

    def _note_fullness(self, refused: bool) -> None:
        # Log the transitions only: a full store under load would otherwise log once per batch.
        if refused:
            self._refused_at_bytes = self._counters.used_bytes
        if refused and not self._full:
            log.warning("%s", StoreFull(self._counters.used_bytes, self._max_bytes))
        elif not refused and self._full and self._counters.used_bytes < self._max_bytes:
            log.info("fallback store at %s accepts events again", self._path)
        else:
            return
        self._full = refused

    def _fail(self, batch: list[_Op], reason: str) -> None:
        if not self._failing:
            self._failing = True
            log.error("%s", self._unavailable(reason))
        for op in batch:
            if not op.future.done():
                op.future.set_exception(self._unavailable(reason))

    def _unavailable(self, reason: str) -> StoreUnavailable:
        return StoreUnavailable(
            f"fallback store at {self._path} cannot be written: {reason}; writes succeed again"
            " once the cause is fixed (free disk space, make the directory writable)"
        )

    async def _run_on_writer(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Fault-injection seam for tests: run `fn` on the writer connection, in the writer thread,
        between two batches."""
        return await self._in_writer(fn)

    # -- reading ---------------------------------------------------------------------------

    async def peek(
        self,
        limit: int,
        channel: str | None = None,
        after_seq: int = 0,
        excluding: Collection[str] = (),
    ) -> list[StoredEvent]:
        """Up to `limit` stored events with seq > `after_seq`, oldest first, optionally of one
        channel, none of the `excluding` channels. Nothing is removed: `delete` the seqs once
        they are safely elsewhere."""
        if limit <= 0:
            return []
        if self._state != "open" or self._read_pool is None or self._reader_conn is None:
            raise StoreUnavailable(f"fallback store at {self._path} cannot be read: it is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._read_pool, _select, self._reader_conn, limit, channel, after_seq, excluding
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"fallback store at {self._path} cannot be read: {exc}") from exc

    def depth(self) -> int:
        """Stored rows, from memory."""
        return self._depth

    def channel_depths(self) -> dict[str, int]:
        """Stored rows per channel, only channels that have some."""
        return dict(self._counters.depths)

    def has_backlog(self, channel: str) -> bool:
        return channel in self._counters.depths

    def used_bytes(self) -> int:
        """Logical bytes stored, the measure of the bound (see the module docstring)."""
        return self._counters.used_bytes

    def oldest_timestamps(self) -> dict[str, datetime]:
        """Per channel with rows, the timestamp of its oldest (lowest seq) row; from memory."""
        return {channel: _from_ms(ms) for channel, ms in self._counters.oldest_ms.items()}

    def is_writable(self) -> bool:
        """Open, below the bound, and the last batch did not fail (for readiness checks)."""
        used = self._counters.used_bytes
        # Below the bound is not enough: the last refusal says the next event did not fit, until
        # something has been deleted since.
        refused_at = self._refused_at_bytes if self._full else self._max_bytes
        return (
            self._state == "open" and not self._failing and used < min(refused_at, self._max_bytes)
        )

    @property
    def commits(self) -> int:
        """Write transactions committed since `open()`, one per batch: group commit made visible."""
        return self._commits

    @property
    def path(self) -> Path:
        return self._path

    @property
    def max_bytes(self) -> int:
        return self._max_bytes


# -- conversions -----------------------------------------------------------------------------


def epoch_ms(stamp: datetime) -> int:
    """Milliseconds since the epoch, as the store keeps times (events' and keys')."""
    if stamp.tzinfo is None:
        # Envelopes are stamped in UTC; a naive stamp is read as UTC, never as local time.
        stamp = stamp.replace(tzinfo=UTC)
    return (stamp - _EPOCH) // _MS


def _to_row(event: Event) -> _Row:
    millis = epoch_ms(event.timestamp)
    if event.headers:
        headers = _headers_json(event.headers)
        return (event.channel, event.message_id, event.correlation_id, millis, event.body, headers)
    return (event.channel, event.message_id, event.correlation_id, millis, event.body)


def _headers_json(headers: Headers) -> str:
    return json.dumps(dict(headers), ensure_ascii=False, separators=(",", ":"))


def _headers_of(stored: str | None) -> Headers:
    return () if stored is None else tuple(json.loads(stored).items())


def _row_size(row: _Row) -> int:
    channel, message_id, correlation_id, _, body = row[:5]
    return (
        len(body)
        + _utf8_len(channel)
        + _utf8_len(message_id)
        + _utf8_len(correlation_id)
        + (_utf8_len(row[5]) if len(row) == 6 else 0)
        + ROW_OVERHEAD_BYTES
    )


def _utf8_len(text: str) -> int:
    # isascii() is O(1) in CPython; encoding is only needed for the rare non-ASCII id, and it
    # also rejects what SQLite could not store (lone surrogates) before the event is queued.
    return len(text) if text.isascii() else len(text.encode())


def _storable(key: RememberedKey) -> bool:
    """Whether SQLite can hold the key's text (see _utf8_len): one that it cannot would fail the
    whole batch it is written in."""
    try:
        _utf8_len(key.key)
        _utf8_len(key.channel)
    except UnicodeEncodeError:
        return False
    return True


def _from_ms(millis: int) -> datetime:
    # Integer arithmetic: a float division could land a microsecond off.
    return _EPOCH + timedelta(milliseconds=millis)


def _chunks(values: Sequence[_T]) -> Iterator[Sequence[_T]]:
    return _chunks_of(values, _PARAMS_PER_QUERY)


def _chunks_of(values: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _marks(count: int) -> str:
    return ",".join("?" * count)


# -- opening (writer thread) -----------------------------------------------------------------


def _is_corruption(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _CORRUPTION_CODES


def _find_corruption(path: Path) -> str | None:
    """None if `path` is absent or a sound database, else what is wrong. Other failures (cannot
    open, locked) raise: they say nothing about the file's contents and must not quarantine it."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if _is_corruption(exc):
            return str(exc)
        raise
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    return "; ".join(problems[:3]) or None


def _clean_mark(path: Path) -> Path:
    return path.with_name(path.name + ".clean")


def _file_identity(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size} {stat.st_mtime_ns} {stat.st_ino}"


def _mark_clean(path: Path, counters: _Counters) -> None:
    """Note, after a clean close, the store file's identity and the counters of its content (JSON);
    any later change to the file invalidates the mark."""
    try:
        if Path(f"{path}-wal").exists():
            return  # not fully checkpointed: let the next open check it
        mark = {
            "identity": _file_identity(path),
            "depths": counters.depths,
            "oldest_ms": counters.oldest_ms,
            "used_bytes": counters.used_bytes,
        }
        _clean_mark(path).write_text(json.dumps(mark))
    except OSError:
        pass  # no mark only means the next open runs the full check and scan


def _take_clean_mark(path: Path) -> _Counters | None:
    """The counters recorded by the clean close, if the file is exactly as that close left it;
    None if it must be checked and scanned. The mark is used once: it is removed before the store
    is written again, so a crash after this open leaves no mark behind."""
    mark = _clean_mark(path)
    try:
        recorded = mark.read_bytes()  # decoded by json.loads: bad bytes only make it malformed
    except OSError:
        return None
    try:
        mark.unlink()
        if Path(f"{path}-wal").exists():
            # A clean close leaves no WAL, so this one holds commits made after it, which the
            # file's identity cannot show (e.g. a power cut lost the removal of this mark).
            return None
        identity = _file_identity(path)
    except OSError:
        return None
    return _counters_from_mark(recorded, identity)


def _counters_from_mark(recorded: bytes, identity: str) -> _Counters | None:
    """The counters in a mark that is well formed and names `identity`, else None: an old
    plain-text mark, one cut short by a crash, or one describing another state of the file."""
    try:
        mark = json.loads(recorded)
    except ValueError:  # UnicodeDecodeError included
        return None
    if not isinstance(mark, dict) or mark.get("identity") != identity:
        return None
    depths = _int_map(mark.get("depths"))
    oldest_ms = _int_map(mark.get("oldest_ms"))
    used_bytes = mark.get("used_bytes")
    if depths is None or oldest_ms is None or type(used_bytes) is not int:
        return None
    # The live counters' invariants: only channels with rows, each with its oldest timestamp.
    if depths.keys() != oldest_ms.keys() or min(depths.values(), default=1) < 1 or used_bytes < 0:
        return None
    return _Counters(depths=depths, oldest_ms=oldest_ms, used_bytes=used_bytes)


def _int_map(value: object) -> dict[str, int] | None:
    # `type() is int`: JSON's true/false would pass isinstance(…, int).
    if isinstance(value, dict) and all(type(item) is int for item in value.values()):
        return value
    return None


def _quarantine(path: Path) -> Path:
    """Rename `path` and its -wal/-shm to `<name>.corrupt-<UTC time>`; never overwrites."""
    stem = f"{path.name}.corrupt-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    target = path.with_name(stem)
    attempt = 0
    while any(Path(f"{target}{suffix}").exists() for suffix in ("", "-wal", "-shm")):
        attempt += 1
        target = path.with_name(f"{stem}.{attempt}")
    # Side files first: a new database must never meet the old one's WAL.
    for suffix in ("-wal", "-shm", ""):
        source = Path(f"{path}{suffix}")
        if source.exists():
            os.rename(source, f"{target}{suffix}")
    return target


def _connect_writer(path: Path, synchronous: str) -> sqlite3.Connection:
    # Autocommit mode: transactions are opened and closed explicitly, one per batch.
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"WAL mode is not supported there (got {mode})")
        conn.execute(f"PRAGMA synchronous={synchronous}")  # validated against a fixed set
        # Checkpoint every ~40 MB of WAL instead of 4 MB: random message_id index pages are then
        # written back once for many batches (measured 20-30% more events/s). The WAL is then
        # truncated back to 64 MB at most, so the file's disk use stays near the bound.
        conn.execute("PRAGMA wal_autocheckpoint=10000")
        conn.execute("PRAGMA journal_size_limit=67108864")
        # The message_id index takes random inserts; a warm cache keeps them off the disk.
        conn.execute("PRAGMA cache_size=-32768")
        conn.executescript(_SCHEMA)
        if not _has_headers_column(conn):
            conn.execute(_ADD_HEADERS)
    except BaseException:
        conn.close()
        raise
    return conn


def _has_headers_column(conn: sqlite3.Connection) -> bool:
    return any(row[1] == "headers" for row in conn.execute("PRAGMA table_info(events)"))


def _load_counters(conn: sqlite3.Connection) -> _Counters:
    counters = _Counters()
    query = f"SELECT channel, count(*), sum({_ROW_SIZE_SQL}) FROM events GROUP BY channel"
    for channel, count, size in conn.execute(query):
        counters.depths[channel] = count
        counters.used_bytes += size
    oldest = conn.execute(
        "SELECT channel, timestamp FROM events"
        " WHERE seq IN (SELECT min(seq) FROM events GROUP BY channel)"
    )
    counters.oldest_ms = {channel: millis for channel, millis in oldest}
    return counters


# -- one batch (writer thread) ---------------------------------------------------------------


def _write_batch(
    conn: sqlite3.Connection,
    rows: list[_Row],
    sizes: list[int],
    seqs: list[int],
    used_bytes: int,
    max_bytes: int,
    keys: _KeyOps,
    withdrawals: Sequence[Sequence[str]] = (),
) -> _Outcome:
    """Deletes, then inserts, then the idempotency keys, then withdrawals (events by message_id,
    with their keys), in one transaction. Deletes go first so the space they free is available to
    the inserts; every op of a batch is concurrent, so either order is correct. Withdrawals go
    last: one is queued after the put it takes back, which may ride in the same batch. A put's key
    is written only if its event was stored (or already was)."""
    if (
        not rows
        and not seqs
        and not withdrawals
        and not keys.forgets
        and len(keys.remembered) <= _KEY_ROWS_PER_QUERY
    ):
        # Only keys of published events: one statement is a transaction of its own (autocommit),
        # one step of this thread instead of three (see _insert_keys).
        _insert_keys(conn, [key.row() for key in keys.remembered])
        return _Outcome([], {}, 0, {})
    conn.execute("BEGIN IMMEDIATE")
    try:
        depth_delta, freed = _delete_rows(conn, seqs)
        verdicts, added, inserted = _insert_rows(conn, rows, sizes, used_bytes - freed, max_bytes)
        _add_to(depth_delta, inserted)
        forgotten = _write_keys(conn, keys, verdicts)
        withdrawn: list[int] = []
        for message_ids in withdrawals:
            taken, taken_bytes = _delete_rows(conn, _withdraw(conn, message_ids))
            _add_to(depth_delta, taken)
            freed += taken_bytes
            withdrawn.append(-sum(taken.values()))
        oldest = {channel: _oldest_ms(conn, channel) for channel in depth_delta}
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return _Outcome(verdicts, depth_delta, added - freed, oldest, forgotten, withdrawn)


def _add_to(totals: dict[str, int], deltas: dict[str, int]) -> None:
    for channel, delta in deltas.items():
        totals[channel] = totals.get(channel, 0) + delta


def _write_keys(conn: sqlite3.Connection, keys: _KeyOps, verdicts: list[int]) -> list[int]:
    """Record the batch's keys (in batch order: a later row for a key wins), then expire."""
    rows = [
        key.row()
        for key, verdict in zip(keys.with_puts, verdicts, strict=True)
        if key is not None and verdict != _FULL
    ]
    rows += [key.row() for key in keys.remembered]
    _insert_keys(conn, rows)
    return [_forget_keys(conn, before_ms, keep) for before_ms, keep in keys.forgets]


def _insert_keys(conn: sqlite3.Connection, rows: list[tuple[str, str, bytes, str, int]]) -> None:
    """Many rows per statement, not `executemany`: this thread must take the GIL back from a busy
    event loop once per statement step (the interpreter's switch interval, 5 ms, each time), and
    `executemany` steps once per row. Measured beside a busy thread: 32 keys in 200 ms that way,
    in 23 ms with one statement for the lot."""
    for chunk in _chunks_of(rows, _KEY_ROWS_PER_QUERY):
        values = ",".join(["(?, ?, ?, ?, ?)"] * len(chunk))
        conn.execute(_REMEMBER_MANY + values, [value for row in chunk for value in row])


def _forget_keys(conn: sqlite3.Connection, before_ms: int, keep: int) -> int:
    removed = conn.execute(
        "DELETE FROM idempotency_keys WHERE created_ms < ?", (before_ms,)
    ).rowcount
    (count,) = conn.execute("SELECT count(*) FROM idempotency_keys").fetchone()
    if count > keep:
        removed += conn.execute(
            "DELETE FROM idempotency_keys WHERE key IN"
            " (SELECT key FROM idempotency_keys ORDER BY created_ms, key LIMIT ?)",
            (count - keep,),
        ).rowcount
    return int(removed)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            # SQLite may already have rolled back by itself (e.g. after SQLITE_FULL).
            log.debug("rollback after a failed batch failed", exc_info=True)


def _withdraw(conn: sqlite3.Connection, message_ids: Sequence[str]) -> list[int]:
    """The seqs of the events with these message_ids, whose idempotency keys are removed here."""
    seqs: list[int] = []
    for chunk in _chunks(message_ids):
        marks = _marks(len(chunk))
        found = conn.execute(f"SELECT seq FROM events WHERE message_id IN ({marks})", chunk)
        seqs += [seq for (seq,) in found]
        conn.execute(f"DELETE FROM idempotency_keys WHERE key IN ({marks})", chunk)
    return seqs


def _delete_rows(conn: sqlite3.Connection, seqs: list[int]) -> tuple[dict[str, int], int]:
    depth_delta: dict[str, int] = {}
    freed = 0
    for chunk in _chunks(sorted(set(seqs))):
        marks = _marks(len(chunk))
        sizes = conn.execute(
            f"SELECT channel, count(*), sum({_ROW_SIZE_SQL}) FROM events"
            f" WHERE seq IN ({marks}) GROUP BY channel",
            chunk,
        )
        for channel, count, size in sizes:
            depth_delta[channel] = depth_delta.get(channel, 0) - count
            freed += size
        conn.execute(f"DELETE FROM events WHERE seq IN ({marks})", chunk)
    return depth_delta, freed


def _insert_rows(
    conn: sqlite3.Connection, rows: list[_Row], sizes: list[int], used: int, max_bytes: int
) -> tuple[list[int], int, dict[str, int]]:
    """Insert what is new and fits, in order. Returns a verdict per row, the bytes added and the
    rows added per channel."""
    if used + sum(sizes) <= max_bytes:
        return _insert_all(conn, rows, sizes)
    return _insert_within_bound(conn, rows, sizes, used, max_bytes)


def _insert_all(
    conn: sqlite3.Connection, rows: list[_Row], sizes: list[int]
) -> tuple[list[int], int, dict[str, int]]:
    """The common case, the whole batch fits: insert first and look for duplicates only when
    fewer rows went in than were offered (an index probe per row would cost a third more)."""
    first: dict[str, int] = {}
    for index, row in enumerate(rows):
        first.setdefault(row[1], index)
    unique = rows if len(first) == len(rows) else [rows[index] for index in first.values()]
    last_seq = _last_seq(conn)
    new: set[str] | None = None
    if _insert(conn, unique) != len(unique):
        # AUTOINCREMENT never reuses a seq, so the rows above the old maximum are exactly ours.
        query = "SELECT message_id FROM events WHERE seq > ?"
        new = {mid for (mid,) in conn.execute(query, (last_seq,))}
    verdicts: list[int] = []
    inserted: dict[str, int] = {}
    added = 0
    for index, (row, size) in enumerate(zip(rows, sizes, strict=True)):
        if first[row[1]] == index and (new is None or row[1] in new):
            verdicts.append(_INSERTED)
            inserted[row[0]] = inserted.get(row[0], 0) + 1
            added += size
        else:
            verdicts.append(_DUPLICATE)
    return verdicts, added, inserted


def _insert_within_bound(
    conn: sqlite3.Connection, rows: list[_Row], sizes: list[int], used: int, max_bytes: int
) -> tuple[list[int], int, dict[str, int]]:
    """Near the bound: a duplicate must still answer False, not StoreFull, so look them up
    first, then admit the new rows in order while they fit."""
    stored = _existing_ids(conn, [row[1] for row in rows])
    verdicts: list[int] = []
    accepted: list[_Row] = []
    inserted: dict[str, int] = {}
    added = 0
    for row, size in zip(rows, sizes, strict=True):
        if row[1] in stored:
            verdicts.append(_DUPLICATE)
        elif used + added + size > max_bytes:
            verdicts.append(_FULL)
        else:
            verdicts.append(_INSERTED)
            stored.add(row[1])  # a second copy later in this batch is a duplicate
            accepted.append(row)
            inserted[row[0]] = inserted.get(row[0], 0) + 1
            added += size
    if accepted:
        _insert(conn, accepted)
    return verdicts, added, inserted


def _insert(conn: sqlite3.Connection, rows: Sequence[_Row]) -> int:
    """INSERT OR IGNORE the rows in order, one statement per run of rows with or without
    headers; returns how many were inserted."""
    inserted = 0
    for width, run in itertools.groupby(rows, key=len):
        statement = _INSERT_WITH_HEADERS if width == 6 else _INSERT
        inserted += conn.executemany(statement, list(run)).rowcount
    return inserted


def _last_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return 0 if row is None else int(row[0])


def _existing_ids(conn: sqlite3.Connection, message_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(message_ids):
        query = f"SELECT message_id FROM events WHERE message_id IN ({_marks(len(chunk))})"
        found.update(mid for (mid,) in conn.execute(query, chunk))
    return found


def _oldest_ms(conn: sqlite3.Connection, channel: str) -> int | None:
    row = conn.execute(
        "SELECT timestamp FROM events WHERE channel = ? ORDER BY seq LIMIT 1", (channel,)
    ).fetchone()
    return None if row is None else int(row[0])


# -- reading (reader thread) -----------------------------------------------------------------


def _select(
    conn: sqlite3.Connection,
    limit: int,
    channel: str | None,
    after_seq: int,
    excluding: Collection[str] = (),
) -> list[StoredEvent]:
    skipped = tuple(excluding)
    where = f" AND channel NOT IN ({_marks(len(skipped))})" if skipped else ""
    if channel is None:
        query = f"SELECT {_COLUMNS} FROM events WHERE seq > ?{where} ORDER BY seq LIMIT ?"
        params: tuple[object, ...] = (after_seq, *skipped, limit)
    else:
        query = (
            f"SELECT {_COLUMNS} FROM events WHERE channel = ? AND seq > ?{where}"
            " ORDER BY seq LIMIT ?"
        )
        params = (channel, after_seq, *skipped, limit)
    return [
        StoredEvent(
            seq,
            Event(channel_, body, message_id, correlation_id, _from_ms(ms), _headers_of(headers)),
        )
        for seq, channel_, message_id, correlation_id, ms, body, headers in conn.execute(
            query, params
        )
    ]


def _select_keys(conn: sqlite3.Connection, since_ms: int, limit: int) -> list[RememberedKey]:
    query = (
        "SELECT key, channel, digest, outcome, created_ms FROM idempotency_keys"
        " WHERE created_ms >= ? ORDER BY created_ms DESC, key DESC LIMIT ?"
    )
    rows = conn.execute(query, (since_ms, limit)).fetchall()
    return [
        RememberedKey(key, channel, bytes(digest), outcome, created_ms)
        for key, channel, digest, outcome, created_ms in reversed(rows)
    ]


# -- read-only inspection (CLI) --------------------------------------------------------------


class StoreReader:
    """A read-only look at a store file, safe beside the gateway that owns it: in WAL mode a
    reader never blocks the writer and sees only committed events. Takes no lock, repairs nothing."""

    def __init__(self, path: Path) -> None:
        if not Path(path).exists():
            raise StoreUnavailable(f"no fallback store at {path}")
        self.path = Path(path)
        try:
            self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            self._conn.execute("SELECT count(*) FROM events").fetchone()
            if not _has_headers_column(self._conn):
                # A file no gateway has opened since events carry headers: read it through a
                # view that has the column (temporary, in memory: the file is not touched).
                self._conn.execute(
                    "CREATE TEMP VIEW events AS SELECT *, NULL AS headers FROM main.events"
                )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"fallback store at {path} cannot be read: {exc}") from exc

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._conn.close()

    def stats(self, now: datetime | None = None) -> dict[str, object]:
        counters = _load_counters(self._conn)
        now = now or datetime.now(UTC)

        def age_s(millis: int) -> float:
            return round((now - _from_ms(millis)).total_seconds(), 3)

        return {
            "path": str(self.path),
            "depth": sum(counters.depths.values()),
            "bytes": counters.used_bytes,
            "oldest_age_s": age_s(min(counters.oldest_ms.values())) if counters.oldest_ms else None,
            "channels": {
                channel: {"depth": depth, "oldest_age_s": age_s(counters.oldest_ms[channel])}
                for channel, depth in sorted(counters.depths.items())
            },
        }

    def events(self, channel: str | None = None, page: int = 1000) -> Iterator[StoredEvent]:
        """Every stored event, oldest first, read a page at a time."""
        after = 0
        while rows := _select(self._conn, page, channel, after):
            yield from rows
            after = rows[-1].seq
