"""Behaviour of app.store.fallback.FallbackStore on real SQLite files in tmp_path (sqlite never mocked)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.events import Event, utc_now
from app.store import fallback as store_module
from app.store.fallback import (
    ROW_OVERHEAD_BYTES,
    FallbackStore,
    RememberedKey,
    StoreCorrupt,
    StoreFull,
    StoreReader,
    StoreUnavailable,
    epoch_ms,
)

REPO = Path(__file__).resolve().parents[2]
BASE_TIME = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def make_event(
    n: int = 0,
    channel: str = "orders.created",
    *,
    message_id: str | None = None,
    body: bytes | None = None,
) -> Event:
    return Event(
        channel=channel,
        body=body if body is not None else b'{"n": %d}' % n,
        message_id=message_id or f"msg-{n}",
        correlation_id=f"corr-{n}",
        timestamp=BASE_TIME + timedelta(milliseconds=n),
    )


def logical_size(event: Event) -> int:
    ids = event.channel + event.message_id + event.correlation_id
    return len(event.body) + len(ids.encode()) + ROW_OVERHEAD_BYTES


# File preparation is synchronous on purpose: tiny, and before or after the store runs.
def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def read_file(path: Path) -> bytes:
    return path.read_bytes()


def overwrite_pages(path: Path) -> None:
    """Structural damage: SQLite raises "database disk image is malformed"."""
    with path.open("r+b") as damaged:
        damaged.seek(4096 * 3)
        damaged.write(b"\xa5" * 4096 * 4)


def miscount_free_pages(path: Path) -> None:
    """Damage SQLite reads past: only quick_check's report ("freelist: size is 0 but should be
    5") shows it, so this proves that report is looked at, not just exceptions."""
    with path.open("r+b") as damaged:
        damaged.seek(36)  # the header's freelist page count
        damaged.write((5).to_bytes(4, "big"))


def row_count(path: Path) -> int:
    """Counted through an independent connection: what is committed, not what the store thinks."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        count: int = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    return count


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "fallback.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[FallbackStore]:
    opened = FallbackStore(db_path, max_bytes=50_000_000)
    await opened.open()
    yield opened
    await opened.close()


async def reopen(store: FallbackStore) -> FallbackStore:
    await store.close()
    again = FallbackStore(store.path, max_bytes=store.max_bytes)
    await again.open()
    return again


# -- storing and reading ---------------------------------------------------------------------


async def test_put_then_peek_round_trips_the_event_exactly(store: FallbackStore) -> None:
    event = Event(
        channel="payments.captured",
        body=bytes(range(256)),  # every byte value, to prove the body is stored as a BLOB
        message_id="idempotency-ключ-1",
        correlation_id="corr-ü",
        timestamp=datetime(2025, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC),
    )

    assert await store.put(event) is True
    [stored] = await store.peek(10)

    assert stored.event == event
    assert stored.event.timestamp.tzinfo is not None
    assert stored.event.timestamp.utcoffset() == timedelta(0)
    assert isinstance(stored.event.body, bytes)
    assert store.depth() == 1
    assert store.channel_depths() == {"payments.captured": 1}
    assert store.has_backlog("payments.captured")
    assert not store.has_backlog("orders.created")
    assert store.used_bytes() == logical_size(event)
    assert store.oldest_timestamps() == {"payments.captured": event.timestamp}


async def test_peek_is_ordered_by_acceptance_across_and_within_channels(
    store: FallbackStore,
) -> None:
    channels = ["orders.created", "orders.cancelled", "payments.captured"]
    events = [make_event(n, channels[n % 3]) for n in range(12)]
    for event in events:
        await store.put(event)

    everything = await store.peek(100)
    cancelled = await store.peek(100, channel="orders.cancelled")
    first_page = await store.peek(5)
    second_page = await store.peek(5, after_seq=first_page[-1].seq)

    assert [row.event for row in everything] == events
    assert [row.seq for row in everything] == sorted({row.seq for row in everything})
    assert [row.event for row in cancelled] == [
        e for e in events if e.channel == "orders.cancelled"
    ]
    assert [row.event for row in first_page + second_page] == events[:10]
    assert await store.peek(0) == []
    assert store.channel_depths() == dict.fromkeys(channels, 4)
    assert store.oldest_timestamps() == {e.channel: e.timestamp for e in events[2::-1]}


async def test_concurrent_puts_are_committed_in_far_fewer_transactions_than_callers(
    store: FallbackStore,
) -> None:
    events = [make_event(n) for n in range(500)]

    results = await asyncio.gather(*(store.put(event) for event in events))

    assert results == [True] * 500
    assert row_count(store.path) == 500
    assert store.commits < 10, f"{store.commits} commits for 500 concurrent puts: no group commit"


async def test_a_batch_never_exceeds_max_batch(db_path: Path) -> None:
    store = FallbackStore(db_path, max_bytes=50_000_000, max_batch=50)
    await store.open()
    try:
        await asyncio.gather(*(store.put(make_event(n)) for n in range(500)))
        assert store.commits >= 10
        assert store.depth() == 500
    finally:
        await store.close()


async def test_one_bad_event_does_not_fail_the_others_queued_with_it(store: FallbackStore) -> None:
    bad = make_event(1, message_id="lone-surrogate-\ud800")

    good_result, bad_result = await asyncio.gather(
        store.put(make_event(0)), store.put(bad), return_exceptions=True
    )

    assert good_result is True
    assert isinstance(bad_result, UnicodeEncodeError)
    assert store.depth() == 1


# -- idempotency -----------------------------------------------------------------------------


async def test_same_message_id_twice_is_stored_once_and_reported_as_duplicate(
    store: FallbackStore,
) -> None:
    first = make_event(1, message_id="order-42")
    retry = make_event(2, message_id="order-42", body=b'{"retry": true}')

    assert await store.put(first) is True
    used = store.used_bytes()
    assert await store.put(retry) is False

    assert [row.event for row in await store.peek(10)] == [first]
    assert store.depth() == 1
    assert store.used_bytes() == used
    assert row_count(store.path) == 1


async def test_duplicates_within_one_batch_count_once(store: FallbackStore) -> None:
    before = store.commits
    copies = [make_event(n, message_id="same-id", body=b"copy %d" % n) for n in range(5)]

    results = await asyncio.gather(*(store.put(copy) for copy in copies))

    assert store.commits == before + 1, "the copies were meant to share one batch"
    assert results == [True, False, False, False, False]
    assert [row.event for row in await store.peek(10)] == [copies[0]]
    assert store.depth() == 1
    assert store.used_bytes() == logical_size(copies[0])


# -- the bound -------------------------------------------------------------------------------


async def test_a_full_store_refuses_new_events_without_evicting_any(db_path: Path) -> None:
    events = [make_event(n, body=b"x" * 1000) for n in range(6)]
    bound = sum(logical_size(e) for e in events[:5])
    store = FallbackStore(db_path, max_bytes=bound)
    await store.open()
    try:
        for event in events[:5]:
            assert await store.put(event) is True

        with pytest.raises(StoreFull) as refused:
            await store.put(events[5])

        assert refused.value.used_bytes == bound
        assert refused.value.max_bytes == bound
        size = f"{bound / 1000:.1f} kB" if bound >= 1000 else f"{bound} bytes"
        assert str(refused.value).startswith(f"fallback store is full ({size} of {size});")
        assert "refused until the broker drains it" in str(refused.value)
        assert store.depth() == 5
        assert [row.event for row in await store.peek(10)] == events[:5]
        # A retry of something already stored is still a duplicate, not a refusal.
        assert await store.put(events[0]) is False

        await store.delete([(await store.peek(1))[0].seq])
        assert await store.put(events[5]) is True
        assert [row.event for row in await store.peek(10)] == events[1:]
    finally:
        await store.close()


async def test_only_the_events_that_fit_are_taken_from_a_batch(db_path: Path) -> None:
    events = [make_event(n, body=b"y" * 500) for n in range(10)]
    store = FallbackStore(db_path, max_bytes=sum(logical_size(e) for e in events[:4]))
    await store.open()
    try:
        results = await asyncio.gather(*(store.put(e) for e in events), return_exceptions=True)
    finally:
        await store.close()

    assert results[:4] == [True] * 4
    assert all(isinstance(result, StoreFull) for result in results[4:])
    assert row_count(db_path) == 4


# -- durability ------------------------------------------------------------------------------


async def test_delete_is_durable_on_return_and_updates_the_counters(store: FallbackStore) -> None:
    events = [make_event(n, "orders.created" if n < 3 else "orders.cancelled") for n in range(5)]
    for event in events:
        await store.put(event)
    rows = await store.peek(10)

    await store.delete([rows[0].seq, rows[3].seq, rows[4].seq, 999_999])

    assert row_count(store.path) == 2
    assert [row.event for row in await store.peek(10)] == events[1:3]
    assert store.depth() == 2
    assert store.channel_depths() == {"orders.created": 2}
    assert not store.has_backlog("orders.cancelled")
    assert store.used_bytes() == sum(logical_size(e) for e in events[1:3])
    assert store.oldest_timestamps() == {"orders.created": events[1].timestamp}


async def test_withdraw_removes_the_events_and_their_keys_by_message_id(
    store: FallbackStore,
) -> None:
    events = [make_event(n, "orders.created" if n < 3 else "orders.cancelled") for n in range(5)]
    for event in events:
        key = RememberedKey(event.message_id, event.channel, b"d", "stored", epoch_ms(utc_now()))
        await store.put_nowait(event, key)

    await store.withdraw([events[0].message_id, events[3].message_id, "never-stored"])

    assert [row.event for row in await store.peek(10)] == [events[1], events[2], events[4]]
    assert store.channel_depths() == {"orders.created": 2, "orders.cancelled": 1}
    assert store.used_bytes() == sum(logical_size(events[n]) for n in (1, 2, 4))
    assert store.oldest_timestamps()["orders.created"] == events[1].timestamp
    keys = {key.key for key in await store.recent_keys(0, 100)}
    assert keys == {events[n].message_id for n in (1, 2, 4)}
    # Durable on return: what another connection sees.
    assert row_count(store.path) == 3


async def test_a_withdrawal_queued_behind_its_put_takes_it_back_in_the_same_batch(
    store: FallbackStore,
) -> None:
    """The AMQP ingress withdraws a delivery's event right after its put was queued (its task was
    cancelled while waiting for the commit): both may ride in one batch, the put first."""
    first, kept, taken_back = make_event(0), make_event(1), make_event(2)
    key = RememberedKey(taken_back.message_id, taken_back.channel, b"d", "stored", 1)
    thread_free = threading.Event()
    # The writer thread busy, and the writer waiting for it with a batch of one put in hand...
    busy = asyncio.ensure_future(store._run_on_writer(lambda conn: thread_free.wait(10)))
    await asyncio.sleep(0)
    puts = [store.put_nowait(first)]
    await asyncio.sleep(0)
    # ...so these three are queued together and taken as the next batch.
    puts += [store.put_nowait(kept), store.put_nowait(taken_back, key)]
    withdrawn = asyncio.ensure_future(store.withdraw([taken_back.message_id]))
    await asyncio.sleep(0)
    commits = store.commits
    thread_free.set()
    await busy

    assert await asyncio.gather(*puts) == [True, True, True]
    assert await withdrawn == 1
    assert store.commits == commits + 2  # the first put's batch, then the other three's
    assert [row.event for row in await store.peek(10)] == [first, kept]
    assert store.depth() == 2
    assert store.used_bytes() == logical_size(first) + logical_size(kept)
    assert await store.recent_keys(0, 10) == []


async def test_reopening_keeps_rows_counters_and_keeps_seq_increasing(
    store: FallbackStore,
) -> None:
    for n in range(6):
        await store.put(make_event(n, "orders.created" if n % 2 else "payments.captured"))
    rows = await store.peek(10)
    await store.delete([rows[0].seq, rows[-1].seq])  # the highest seq too: it must not come back
    before = (
        await store.peek(10),
        store.depth(),
        store.channel_depths(),
        store.used_bytes(),
        store.oldest_timestamps(),
    )

    again = await reopen(store)
    try:
        after = (
            await again.peek(10),
            again.depth(),
            again.channel_depths(),
            again.used_bytes(),
            again.oldest_timestamps(),
        )
        await again.put(make_event(100))
        newest = (await again.peek(10))[-1]
    finally:
        await again.close()

    assert after == before
    assert newest.event.message_id == "msg-100"
    assert newest.seq > rows[-1].seq


async def test_close_finishes_queued_writes_and_later_puts_are_refused(
    store: FallbackStore,
) -> None:
    pending = [asyncio.create_task(store.put(make_event(n))) for n in range(50)]
    await asyncio.sleep(0)  # let every put reach the queue

    await store.close()
    await store.close()  # idempotent

    assert [task.result() for task in pending] == [True] * 50
    assert row_count(store.path) == 50
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.put(make_event(99))


KILLED_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from app.events import Event
    from app.store.fallback import FallbackStore

    async def producer(store, k):
        for i in range(1_000_000):
            event = Event.accept("orders.created", b"{}", message_id=f"p{k}-{i}")
            await store.put(event)
            print(event.message_id, flush=True)

    async def main():
        store = FallbackStore(Path(sys.argv[1]), max_bytes=10**9)
        await store.open()
        await asyncio.gather(*(producer(store, k) for k in range(8)))

    asyncio.run(main())
    """
)


async def test_every_event_reported_stored_survives_kill_9(db_path: Path) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KILLED_WRITER,
        str(db_path),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None
    printed: list[str] = []
    try:
        async with asyncio.timeout(15):
            while len(printed) < 400:
                line = await child.stdout.readline()
                assert line, "the writer exited before it was killed"
                printed.append(line.decode().strip())
    finally:
        child.send_signal(signal.SIGKILL)
    # Lines still in the pipe were printed after their put returned: they were reported too.
    rest, _ = await child.communicate()
    printed += rest.decode().split()

    store = FallbackStore(db_path, max_bytes=10**9)
    await store.open()
    try:
        rows = await store.peek(10**6)
    finally:
        await store.close()

    assert child.returncode == -signal.SIGKILL
    assert not list(db_path.parent.glob("*.corrupt-*")), "the killed store did not reopen cleanly"
    seq_of = {row.event.message_id: row.seq for row in rows}
    missing = [mid for mid in printed if mid not in seq_of]
    assert not missing, f"{len(missing)} of {len(printed)} events reported stored were lost"
    for producer in range(8):
        mine = [seq_of[mid] for mid in printed if mid.startswith(f"p{producer}-")]
        assert mine == sorted(mine), "a producer's events are out of acceptance order"


# -- corruption ------------------------------------------------------------------------------

GARBAGE = b"this is not a database, it is garbage \x00\xff" * 200


async def test_a_corrupt_file_is_quarantined_and_a_new_store_started(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_file(db_path, GARBAGE)
    store = FallbackStore(db_path, max_bytes=1_000_000)

    with caplog.at_level(logging.WARNING, logger="breakwater.store"):
        await store.open()
    try:
        assert await store.put(make_event(1)) is True
        assert [row.event for row in await store.peek(10)] == [make_event(1)]
    finally:
        await store.close()

    [moved] = db_path.parent.glob("fallback.db.corrupt-*")
    assert read_file(moved) == GARBAGE
    assert row_count(db_path) == 1
    [warning] = [
        r for r in caplog.records if r.name == "breakwater.store" and r.levelno >= logging.WARNING
    ]
    assert warning.levelno == logging.WARNING
    assert str(moved) in warning.getMessage()
    assert "new, empty store" in warning.getMessage()


async def test_a_second_quarantine_never_overwrites_the_first(db_path: Path) -> None:
    for round_ in range(2):
        write_file(db_path, GARBAGE + bytes([round_]))
        store = FallbackStore(db_path, max_bytes=1_000_000)
        await store.open()
        await store.close()

    kept = sorted(read_file(p)[-1] for p in db_path.parent.glob("fallback.db.corrupt-*"))
    assert kept == [0, 1]


async def test_refuse_raises_store_corrupt_and_leaves_the_file_alone(db_path: Path) -> None:
    write_file(db_path, GARBAGE)
    store = FallbackStore(db_path, max_bytes=1_000_000, on_corrupt="refuse")

    with pytest.raises(StoreCorrupt) as refused:
        await store.open()

    assert str(db_path) in str(refused.value)
    assert "left untouched" in str(refused.value)
    assert read_file(db_path) == GARBAGE
    assert [p.name for p in db_path.parent.iterdir()] == ["fallback.db"]


@pytest.mark.parametrize("damage", [overwrite_pages, miscount_free_pages])
async def test_a_damaged_database_is_quarantined(
    db_path: Path, damage: Callable[[Path], None]
) -> None:
    store = FallbackStore(db_path, max_bytes=10_000_000)
    await store.open()
    await asyncio.gather(*(store.put(make_event(n, body=b"z" * 1000)) for n in range(300)))
    await store.close()  # the last close checkpoints the WAL into the main file
    damage(db_path)
    damaged_bytes = read_file(db_path)

    store = FallbackStore(db_path, max_bytes=10_000_000)
    await store.open()
    try:
        assert store.depth() == 0
    finally:
        await store.close()

    [moved] = db_path.parent.glob("fallback.db.corrupt-*")
    assert read_file(moved) == damaged_bytes


# -- unwritable ------------------------------------------------------------------------------


async def test_an_unwritable_location_fails_open_with_store_unavailable(tmp_path: Path) -> None:
    # Root ignores directory permissions, so make the parent "directory" a regular file instead:
    # no user, root included, can create a database under it.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    store = FallbackStore(blocker / "fallback.db", max_bytes=1_000_000)

    with pytest.raises(StoreUnavailable) as failed:
        await store.open()

    assert str(failed.value).startswith(f"fallback store at {blocker / 'fallback.db'} cannot be")
    await store.close()


async def test_a_failed_write_reaches_every_caller_in_the_batch_and_the_writer_recovers(
    store: FallbackStore,
) -> None:
    # Disk full, simulated at the SQLite level because it also works as root: max_page_count
    # caps the file at its current size, so the next batch needing a new page gets SQLITE_FULL.
    await store.put(make_event(0))
    commits = store.commits
    await store._run_on_writer(
        lambda conn: conn.execute(
            f"PRAGMA max_page_count={conn.execute('PRAGMA page_count').fetchone()[0]}"
        )
    )

    big = [make_event(n, body=b"q" * 20_000) for n in range(1, 4)]
    results = await asyncio.gather(*(store.put(e) for e in big), return_exceptions=True)

    assert all(isinstance(result, StoreUnavailable) for result in results), results
    assert "cannot be written: database or disk is full" in str(results[0])
    assert store.commits == commits
    assert (store.depth(), row_count(store.path)) == (1, 1)
    assert not store.is_writable()

    await store._run_on_writer(lambda conn: conn.execute("PRAGMA max_page_count=1073741823"))
    assert await store.put(big[0]) is True
    assert store.depth() == 2
    assert store.is_writable()


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a real full disk and a real read-only filesystem, where mount works."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def remount(mount_point: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount_point)], check=True)


async def put_until_it_fails(store: FallbackStore) -> tuple[int, StoreUnavailable]:
    for n in range(200):
        try:
            await store.put(make_event(n, body=b"f" * 8000))
        except StoreUnavailable as exc:
            return n, exc
    raise AssertionError("200 events of 8 kB fit into a 256 KiB filesystem")


async def test_a_really_full_disk_gives_store_unavailable_until_space_returns(
    tiny_tmpfs: Path,
) -> None:
    store = FallbackStore(tiny_tmpfs / "fallback.db", max_bytes=10**9)
    await store.open()
    try:
        stored, failure = await put_until_it_fails(store)
        assert "cannot be written" in str(failure)
        assert "full" in str(failure)
        assert store.depth() == stored

        remount(tiny_tmpfs, "size=4m")
        assert await store.put(make_event(1000, body=b"f" * 8000)) is True
        assert store.depth() == stored + 1
    finally:
        await store.close()


async def test_a_read_only_filesystem_fails_open_with_store_unavailable(
    tiny_tmpfs: Path,
) -> None:
    remount(tiny_tmpfs, "ro")
    store = FallbackStore(tiny_tmpfs / "fallback.db", max_bytes=1_000_000)

    with pytest.raises(StoreUnavailable, match="cannot be written"):
        await store.open()


# -- logging ---------------------------------------------------------------------------------


async def test_storing_events_logs_nothing_per_event(
    store: FallbackStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="breakwater.store"):
        for n in range(100):
            await store.put(make_event(n))
        await store.delete([row.seq for row in await store.peek(100)])

    assert [r for r in caplog.records if r.name == "breakwater.store"] == []


async def test_a_second_process_cannot_open_a_store_that_is_in_use(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with FallbackStore(path, max_bytes=1_000_000):
        opener = textwrap.dedent(
            f"""
            import asyncio
            from pathlib import Path
            from app.store.fallback import FallbackStore, StoreInUse
            async def main():
                try:
                    await FallbackStore(Path({str(path)!r}), max_bytes=1000).open()
                except StoreInUse as exc:
                    print("in use:", exc)
            asyncio.run(main())
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", opener], capture_output=True, text=True, timeout=30
        )
        assert "in use: fallback store at" in result.stdout, result.stderr
    # Released on close: the next owner gets it.
    async with FallbackStore(path, max_bytes=1_000_000) as reopened:
        assert reopened.depth() == 0


async def test_a_clean_close_lets_the_next_open_skip_the_integrity_check_but_not_after_a_change(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    async with FallbackStore(path, max_bytes=1_000_000) as store:
        await store.put(make_event(1))
    mark = path.with_name("store.db.clean")
    assert mark.exists()  # written by the clean close

    async with FallbackStore(path, max_bytes=1_000_000) as store:
        assert not mark.exists()  # used once: a crash from here on leaves no mark
        assert store.depth() == 1

    # Damaged after a clean close: the mark no longer matches, the check runs and quarantines.
    with path.open("r+b") as damaged:
        damaged.seek(0)
        damaged.write(b"not a database header at all")
    async with FallbackStore(path, max_bytes=1_000_000) as store:
        assert store.depth() == 0
    assert list(tmp_path.glob("store.db.corrupt-*"))


# -- counters kept in the clean-close mark ---------------------------------------------------


@pytest.fixture
def whole_file_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the two whole-file reads an open may do, in order: "check" (quick_check) and
    "scan" (the counters), each still done for real."""
    reads: list[str] = []
    find_corruption, load_counters = store_module._find_corruption, store_module._load_counters

    def check(path: Path) -> str | None:
        reads.append("check")
        return find_corruption(path)

    def scan(conn: sqlite3.Connection) -> object:
        reads.append("scan")
        return load_counters(conn)

    monkeypatch.setattr(store_module, "_find_corruption", check)
    monkeypatch.setattr(store_module, "_load_counters", scan)
    return reads


Counters = tuple[int, dict[str, int], int, dict[str, datetime]]


def counters_of(store: FallbackStore) -> Counters:
    """Depth, per-channel depth, used bytes and per-channel oldest timestamp, as the store has
    them in memory."""
    return (store.depth(), store.channel_depths(), store.used_bytes(), store.oldest_timestamps())


def file_identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


async def fill_and_close(path: Path) -> Counters:
    """Three channels with bodies of different sizes; then drain one channel and the oldest row
    of another, so the counters at close differ from what the puts alone would give; and close
    with a fourth channel's puts still queued, which the close must write before its mark."""
    channels = ["orders.created", "orders.cancelled", "payments.captured"]
    async with FallbackStore(path, max_bytes=1_000_000) as store:
        for n in range(30):
            await store.put(make_event(n, channels[n % 3], body=b"b" * n))
        rows = await store.peek(100)
        cancelled = [row.seq for row in rows if row.event.channel == "orders.cancelled"]
        await store.delete([*cancelled, rows[0].seq])
        queued = [store.put_nowait(make_event(n, "refunds.issued")) for n in range(30, 40)]
    assert [future.result() for future in queued] == [True] * 10
    at_close = counters_of(store)
    assert at_close[1] == {"orders.created": 9, "payments.captured": 10, "refunds.issued": 10}
    return at_close


async def test_a_clean_reopen_takes_its_counters_from_the_mark_and_they_equal_a_full_scan(
    tmp_path: Path, whole_file_reads: list[str]
) -> None:
    path = tmp_path / "store.db"
    at_close = await fill_and_close(path)

    whole_file_reads.clear()
    async with FallbackStore(path, max_bytes=1_000_000) as store:
        from_mark = counters_of(store)
    assert whole_file_reads == []  # neither the check nor the scan ran

    path.with_name("store.db.clean").unlink()  # the mark that close wrote: force a scan
    async with FallbackStore(path, max_bytes=1_000_000) as store:
        from_scan = counters_of(store)
    assert whole_file_reads == ["check", "scan"]

    assert from_mark == from_scan == at_close


def old_plain_text_mark(path: Path, mark: bytes) -> bytes:
    """What a clean close wrote before the mark held counters: the identity alone, matching."""
    size, mtime_ns, inode = file_identity(path)
    return f"{size} {mtime_ns} {inode}".encode()


def cut_short(path: Path, mark: bytes) -> bytes:
    return mark[: len(mark) // 2]  # a crash or power cut while the close wrote it


def not_utf8(path: Path, mark: bytes) -> bytes:
    return b"\xff\xfe\x00garbage" * 10


def a_counter_missing(path: Path, mark: bytes) -> bytes:
    recorded = json.loads(mark)
    del recorded["oldest_ms"]
    return json.dumps(recorded).encode()


def wrong_counters(mark: bytes) -> bytes:
    """The mark's counters replaced: used, they would show on the reopened store."""
    recorded = json.loads(mark)
    recorded.update(depths={"bogus": 7}, oldest_ms={"bogus": 0}, used_bytes=1)
    return json.dumps(recorded).encode()


def file_touched_since(path: Path, mark: bytes) -> bytes:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    return wrong_counters(mark)


def file_replaced_by_a_copy(path: Path, mark: bytes) -> bytes:
    copy = path.with_name("copy.db")
    shutil.copy2(path, copy)  # same size and mtime, another inode
    copy.replace(path)
    return wrong_counters(mark)


@pytest.mark.parametrize(
    "spoil",
    [
        old_plain_text_mark,
        cut_short,
        not_utf8,
        a_counter_missing,
        file_touched_since,
        file_replaced_by_a_copy,
    ],
)
async def test_a_mark_that_is_old_malformed_or_of_another_file_falls_back_to_check_and_scan(
    tmp_path: Path, whole_file_reads: list[str], spoil: Callable[[Path, bytes], bytes]
) -> None:
    path = tmp_path / "store.db"
    at_close = await fill_and_close(path)
    mark = path.with_name("store.db.clean")
    mark.write_bytes(spoil(path, mark.read_bytes()))

    whole_file_reads.clear()
    async with FallbackStore(path, max_bytes=1_000_000) as store:
        assert not mark.exists()  # used once, even when not trusted
        reopened = counters_of(store)

    assert whole_file_reads == ["check", "scan"]
    assert reopened == at_close


CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from app.events import Event
    from app.store.fallback import FallbackStore

    async def main():
        store = FallbackStore(Path(sys.argv[1]), max_bytes=1_000_000)
        await store.open()
        for n in range(5):
            await store.put(Event.accept("audit.logged", b"{}", message_id=f"crash-{n}"))
        os.kill(os.getpid(), signal.SIGKILL)  # no close: no checkpoint, no mark

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("mark_comes_back", [False, True], ids=["crash", "crash-mark-comes-back"])
async def test_after_a_crash_the_next_open_checks_and_scans(
    tmp_path: Path, whole_file_reads: list[str], mark_comes_back: bool
) -> None:
    path = tmp_path / "store.db"
    at_close = await fill_and_close(path)
    mark = path.with_name("store.db.clean")
    recorded, identity = mark.read_bytes(), file_identity(path)

    # Opens with the clean mark, writes, and dies: the new rows are only in the WAL.
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(path)],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=30,
        check=False,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()
    assert not mark.exists()
    if mark_comes_back:
        # The mark's removal lost (a power cut before it reached the disk): the file itself is
        # untouched, so only the WAL beside it tells that the mark is stale.
        mark.write_bytes(recorded)
        assert file_identity(path) == identity

    whole_file_reads.clear()
    async with FallbackStore(path, max_bytes=1_000_000) as store:
        reopened = counters_of(store)

    assert whole_file_reads == ["check", "scan"]
    assert reopened[0] == at_close[0] + 5 == row_count(path)
    assert reopened[1] == {**at_close[1], "audit.logged": 5}


# -- extra headers, and files written before events had them -----------------------------------

HEADERS = (("cloudEvents_id", "msg-1"), ("cloudEvents_source", "/tests/ü"), ("traceparent", "00-1"))

# The events table as gateways created it before events carried extra headers.
SCHEMA_WITHOUT_HEADERS = """
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    correlation_id TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX events_channel_seq ON events (channel, seq);
"""


def write_store_without_headers(path: Path, events: list[Event]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(SCHEMA_WITHOUT_HEADERS)
        conn.executemany(
            "INSERT INTO events (channel, message_id, correlation_id, timestamp, body)"
            " VALUES (?, ?, ?, ?, ?)",
            [row[:5] for row in map(store_module._to_row, events)],
        )
        conn.commit()


def columns(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [row[1] for row in conn.execute("PRAGMA table_info(events)")]


async def test_extra_headers_are_kept_in_order_and_count_against_the_bound(
    store: FallbackStore,
) -> None:
    event = dataclasses.replace(make_event(1), headers=HEADERS)
    plain = make_event(2)

    await store.put(event)
    await store.put(plain)
    stored = [row.event for row in await store.peek(10)]

    assert stored == [event, plain]
    assert stored[0].headers == HEADERS
    headers_json = json.dumps(dict(HEADERS), ensure_ascii=False, separators=(",", ":"))
    assert store.used_bytes() == (
        logical_size(event) + len(headers_json.encode()) + logical_size(plain)
    )
    reopened = await reopen(store)
    try:
        assert [row.event for row in await reopened.peek(10)] == [event, plain]
        assert reopened.used_bytes() == store.used_bytes()
    finally:
        await reopened.close()


async def test_a_file_from_before_extra_headers_opens_keeps_its_events_and_takes_new_ones(
    tmp_path: Path, whole_file_reads: list[str]
) -> None:
    path = tmp_path / "old.db"
    old = [make_event(n) for n in range(3)]
    write_store_without_headers(path, old)
    # The clean-close mark an older gateway left: its counters, this file's identity.
    counters = store_module._Counters(
        depths={"orders.created": 3},
        oldest_ms={"orders.created": store_module.epoch_ms(old[0].timestamp)},
        used_bytes=sum(map(logical_size, old)),
    )
    store_module._mark_clean(path, counters)
    whole_file_reads.clear()

    async with FallbackStore(path, max_bytes=1_000_000) as store:
        assert whole_file_reads == []  # the old mark is trusted: the file is as it was left
        assert columns(path)[-1] == "headers"
        assert [row.event for row in await store.peek(10)] == old
        assert store.used_bytes() == sum(map(logical_size, old))
        new = dataclasses.replace(make_event(3), headers=HEADERS)
        await store.put(new)
        at_close = counters_of(store)

    # The column added changed the file: the mark this close wrote describes the file as it is
    # now, and the next open trusts it with the same counters a full scan gives.
    async with FallbackStore(path, max_bytes=1_000_000) as store:
        assert whole_file_reads == []
        assert counters_of(store) == at_close
        assert [row.event for row in await store.peek(10)] == [*old, new]
    path.with_name("old.db.clean").unlink()
    async with FallbackStore(path, max_bytes=1_000_000) as store:
        assert whole_file_reads == ["check", "scan"]
        assert counters_of(store) == at_close


def test_the_reader_reads_a_file_from_before_extra_headers_without_changing_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    old = [make_event(n) for n in range(3)]
    write_store_without_headers(path, old)
    before = read_file(path)

    with StoreReader(path) as reader:
        assert [row.event for row in reader.events()] == old
        assert reader.stats()["bytes"] == sum(map(logical_size, old))

    assert read_file(path) == before
    assert "headers" not in columns(path)
