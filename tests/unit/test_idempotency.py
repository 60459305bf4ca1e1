"""app.ingress.idempotency.IdempotentPublisher on the real store (SQLite in tmp_path) and the real breaker,
with the scripted link of test_publisher: repeats, conflicts, keys in flight, expiry, the bound,
keys surviving a reopen of the file, and nothing remembered for an event that was refused."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.events import Event, utc_now
from app.ingress.idempotency import (
    KEY_WRITE_BATCH,
    KEY_WRITE_DELAY_S,
    IdempotentPublisher,
    KeyConflict,
    KeyInFlight,
    digest,
)
from app.outbound.breaker import Breaker
from app.outbound.publisher import Outcome, ResilientPublisher
from app.store.fallback import FallbackStore, StoreFull, epoch_ms

from .test_publisher import DEADLINE_S, ScriptedLink

CHANNEL = "orders.created"


def event(key: str, body: bytes = b'{"n": 1}', channel: str = CHANNEL) -> Event:
    return Event.accept(channel, body, message_id=key)


async def key_rows(gateway: Gateway) -> dict[str, tuple[str, str]]:
    """The keys table once the waiting keys are written, as a second reader sees it."""
    await gateway.keys.keys_written()
    return _key_rows(gateway.path)


def _key_rows(path: Path) -> dict[str, tuple[str, str]]:
    """The keys table as a second reader sees it: key -> (channel, outcome)."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT key, channel, outcome FROM idempotency_keys").fetchall()
    return {key: (channel, outcome) for key, channel, outcome in rows}


class Gateway:
    """The publishing half of a gateway on one store file, opened and closed like the real one."""

    def __init__(self, path: Path, *, ttl_s: float = 60, max_keys: int = 1000, **store: int):
        self.path = path
        self.link = ScriptedLink()
        self.store = FallbackStore(path, max_bytes=store.get("max_bytes", 10_000_000))
        breaker = Breaker(fail_max=1000, reset_timeout_s=60)
        self.publisher = ResilientPublisher(
            self.link,  # type: ignore[arg-type]
            breaker,
            self.store,
            deadline_s=DEADLINE_S,
        )
        self.keys = IdempotentPublisher(self.publisher, self.store, ttl_s=ttl_s, max_keys=max_keys)

    async def __aenter__(self) -> Gateway:
        await self.store.open()
        await self.keys.load()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.keys.keys_written()  # as the gateway stops: waiting keys first
        await self.store.close()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with Gateway(tmp_path / "fallback.db") as opened:
        yield opened


async def test_a_repeat_is_answered_with_the_first_outcome_and_not_published_again(
    gateway: Gateway,
) -> None:
    first = await gateway.keys.submit(event("k1"), keyed=True)
    again = await gateway.keys.submit(event("k1"), keyed=True)

    assert (first.outcome, first.repeat) == (Outcome.published, False)
    assert (again.outcome, again.repeat) == (Outcome.published, True)
    assert gateway.link.attempted == ["k1"]
    assert await key_rows(gateway) == {"k1": (CHANNEL, "published")}


async def test_published_keys_are_written_together_shortly_after_their_answers(
    gateway: Gateway,
) -> None:
    commits = gateway.store.commits
    for n in range(3):
        await gateway.keys.submit(event(f"k{n}"), keyed=True)
    assert _key_rows(gateway.path) == {}  # answered, not yet written: in memory only

    async with asyncio.timeout(KEY_WRITE_DELAY_S + 2):
        while len(_key_rows(gateway.path)) < 3:
            await asyncio.sleep(0.01)
    assert gateway.store.commits == commits + 1  # one write for the three

    for n in range(KEY_WRITE_BATCH):  # a full batch is written at once, without the delay
        await gateway.keys.submit(event(f"batch-{n}"), keyed=True)
    async with asyncio.timeout(2):
        while gateway.store.commits < commits + 2:
            await asyncio.sleep(0)
    assert len(_key_rows(gateway.path)) == 3 + KEY_WRITE_BATCH


async def test_events_without_a_key_are_never_taken_for_repeats(gateway: Gateway) -> None:
    for _ in range(2):
        accepted = await gateway.keys.submit(event("generated"), keyed=False)
        assert not accepted.repeat
    assert gateway.link.attempted == ["generated", "generated"]
    assert await key_rows(gateway) == {}


async def test_the_window_adds_nothing_for_the_garbage_collector_to_walk(tmp_path: Path) -> None:
    """A busy gateway runs a full collection about once a second, and each one walks every object
    the collector tracks: a window of 100,000 keys must not be 100,000 more of them (a `gc`
    callback in the HTTP benchmark's stored gateways: 22 full collections took 0.87 s with 60,000
    keys in the window, 0.38 s without)."""
    path = tmp_path / "fallback.db"
    keys = 2000

    async def tracked_after(submit: bool) -> int:
        async with Gateway(path, max_keys=10 * keys) as gateway:
            if submit:
                for n in range(keys):
                    if n % 2:
                        gateway.link.refuse(f"k{n}")  # stored, with its key in the same commit
                    await gateway.keys.submit(event(f"k{n}"), keyed=True)
                await gateway.keys.keys_written()
            # A step of its own: the wake-up that resumed this task still holds the result of the
            # last await (the list of keys load() read) until the step ends.
            await asyncio.sleep(0)
            gc.collect()
            return len(gc.get_objects())

    empty = await tracked_after(submit=False)
    full = await tracked_after(submit=True)  # the published and stored keys, in memory
    loaded = await tracked_after(submit=False)  # the same keys, loaded from the file

    assert full - empty < keys / 4
    assert loaded - empty < keys / 4


async def test_a_stored_event_keeps_its_key_in_the_same_commit_and_repeats_answer_stored(
    gateway: Gateway,
) -> None:
    gateway.link.refuse("k1")
    commits = gateway.store.commits

    first = await gateway.keys.submit(event("k1"), keyed=True)

    assert first.outcome is Outcome.stored
    assert gateway.store.commits == commits + 1  # the event and its key: one transaction
    assert await key_rows(gateway) == {"k1": (CHANNEL, "stored")}
    again = await gateway.keys.submit(event("k1"), keyed=True)
    assert (again.outcome, again.repeat) == (Outcome.stored, True)
    assert gateway.store.depth() == 1


async def test_the_same_key_for_another_body_or_channel_is_a_conflict(gateway: Gateway) -> None:
    await gateway.keys.submit(event("k1", b'{"n": 1}'), keyed=True)

    with pytest.raises(KeyConflict, match="'k1' was already used for a different event"):
        await gateway.keys.submit(event("k1", b'{"n": 2}'), keyed=True)
    with pytest.raises(KeyConflict, match=r"on channel 'orders\.created'"):
        await gateway.keys.submit(event("k1", channel="payments.captured"), keyed=True)
    assert gateway.link.attempted == ["k1"]


async def test_a_repeat_in_flight_is_refused_or_waits_but_is_never_published_twice(
    gateway: Gateway,
) -> None:
    held = gateway.link.hold("k1")
    first = asyncio.create_task(gateway.keys.submit(event("k1"), keyed=True))
    await asyncio.sleep(0.01)

    with pytest.raises(KeyInFlight) as refused:
        await gateway.keys.submit(event("k1"), keyed=True)
    assert refused.value.retry_after_s == 1
    with pytest.raises(KeyConflict):  # a different body is a conflict even while in flight
        await gateway.keys.submit(event("k1", b'{"n": 2}'), keyed=True)
    waiting = [
        asyncio.create_task(gateway.keys.submit(event("k1"), keyed=True, in_flight="wait"))
        for _ in range(20)
    ]
    await asyncio.sleep(0.01)
    assert not any(task.done() for task in waiting)
    held.set_result(None)

    assert (await first).repeat is False
    assert all(result.repeat for result in await asyncio.gather(*waiting))
    assert gateway.link.attempted == ["k1"]


async def test_a_refused_event_leaves_no_key_so_its_retry_is_taken(tmp_path: Path) -> None:
    async with Gateway(tmp_path / "small.db", max_bytes=100) as small:
        small.link.refuse("k1")
        big = event("k1", b'{"padding": "%s"}' % (b"x" * 200))
        with pytest.raises(StoreFull):
            await small.keys.submit(big, keyed=True)
        assert await key_rows(small) == {}
        assert len(small.keys) == 0

        retried = await small.keys.submit(big, keyed=True)  # the broker takes it this time
        assert (retried.outcome, retried.repeat) == (Outcome.published, False)


async def test_keys_expire_after_the_ttl_in_memory_and_on_disk(tmp_path: Path) -> None:
    async with Gateway(tmp_path / "ttl.db", ttl_s=0.2) as short:
        await short.keys.submit(event("k1"), keyed=True)
        assert (await short.keys.submit(event("k1"), keyed=True)).repeat
        await asyncio.sleep(0.3)

        assert not (await short.keys.submit(event("k1", b'{"n": 9}'), keyed=True)).repeat
        await asyncio.sleep(0.3)
        assert short.keys.expire() == 1
        assert await short.store.forget(before_ms=_now_ms() - 200, keep=1000) == 1
        assert await key_rows(short) == {}
    assert short.link.attempted == ["k1", "k1"]


async def test_the_window_holds_the_newest_max_keys(tmp_path: Path) -> None:
    async with Gateway(tmp_path / "bound.db", max_keys=3) as bounded:
        for n in range(5):
            await bounded.keys.submit(event(f"k{n}"), keyed=True)
        assert len(bounded.keys) == 3
        await bounded.keys.keys_written()
        assert await bounded.store.forget(before_ms=0, keep=3) == 2
        assert sorted(await key_rows(bounded)) == ["k2", "k3", "k4"]

        assert not (await bounded.keys.submit(event("k0"), keyed=True)).repeat
        assert (await bounded.keys.submit(event("k4"), keyed=True)).repeat


async def test_keys_survive_reopening_the_store(tmp_path: Path) -> None:
    path = tmp_path / "reopened.db"
    async with Gateway(path) as before:
        await before.keys.submit(event("published"), keyed=True)
        before.link.refuse("stored")
        await before.keys.submit(event("stored"), keyed=True)

    async with Gateway(path) as after:
        assert len(after.keys) == 2
        published = await after.keys.submit(event("published"), keyed=True)
        stored = await after.keys.submit(event("stored"), keyed=True)
        assert (published.outcome, published.repeat) == (Outcome.published, True)
        assert (stored.outcome, stored.repeat) == (Outcome.stored, True)
        with pytest.raises(KeyConflict):
            await after.keys.submit(event("published", b'{"n": 2}'), keyed=True)
        assert after.link.attempted == []


async def test_a_zero_ttl_turns_the_window_off(tmp_path: Path) -> None:
    async with Gateway(tmp_path / "off.db", ttl_s=0) as off:
        for _ in range(2):
            assert not (await off.keys.submit(event("k1"), keyed=True)).repeat
        assert off.link.attempted == ["k1", "k1"]
        assert await key_rows(off) == {}


def test_the_digest_is_of_the_channel_and_the_normalised_body() -> None:
    assert digest(event("a")) == digest(event("b"))  # the key itself is not part of it
    assert digest(event("a")) != digest(event("a", b'{"n": 2}'))
    assert digest(event("a")) != digest(event("a", channel="payments.captured"))


def _now_ms() -> int:
    return epoch_ms(utc_now())


async def test_a_key_sqlite_cannot_hold_is_kept_in_memory_and_does_not_fail_the_others(
    gateway: Gateway,
) -> None:
    odd = "odd-\udcff"  # a lone surrogate: not UTF-8, so not storable as SQLite text
    await gateway.keys.submit(event(odd), keyed=True)
    await gateway.keys.submit(event("plain"), keyed=True)

    assert (await gateway.keys.submit(event(odd), keyed=True)).repeat
    assert await key_rows(gateway) == {"plain": (CHANNEL, "published")}
