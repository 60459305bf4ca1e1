"""Per-channel order in app.outbound.publisher.ResilientPublisher: the real store (SQLite in tmp_path) and
the real breaker, and a scripted link with OutboundLink's interface (publish/unavailable_reason).

The link's publishes are held, failed or let through per message_id by the test, so the
interleavings that a real broker produces only by chance happen here every time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.events import DeliveryPath, Event
from app.outbound.breaker import Breaker
from app.outbound.connection import BrokerUnavailable
from app.outbound.publisher import Outcome, ResilientPublisher
from app.store.fallback import FallbackStore

DEADLINE_S = 0.3


class ScriptedLink:
    """Stands in for OutboundLink. By default every publish is confirmed at once; `hold(id)`
    makes the publish of that event wait until the test releases or fails it, and `refuse(id)`
    makes its next publish raise BrokerUnavailable at once."""

    def __init__(self) -> None:
        self.confirmed: list[str] = []
        self.attempted: list[str] = []
        self._held: dict[str, asyncio.Future[None]] = {}
        self._refused: set[str] = set()

    def hold(self, message_id: str) -> asyncio.Future[None]:
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._held[message_id] = gate
        return gate

    def refuse(self, message_id: str) -> None:
        self._refused.add(message_id)

    def unavailable_reason(self) -> str | None:
        return None

    async def publish(self, event: Event, path: DeliveryPath) -> None:
        self.attempted.append(event.message_id)
        if event.message_id in self._refused:
            self._refused.discard(event.message_id)  # once: a later retry (replay) goes through
            raise BrokerUnavailable("scripted: refused")
        gate = self._held.get(event.message_id)
        if gate is not None:
            await gate
        self.confirmed.append(event.message_id)


def event(message_id: str, channel: str = "orders.created") -> Event:
    return Event(
        channel=channel,
        body=b'{"n": "%s"}' % message_id.encode(),
        message_id=message_id,
        correlation_id=f"corr-{message_id}",
        timestamp=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC),
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FallbackStore]:
    opened = FallbackStore(tmp_path / "fallback.db", max_bytes=10_000_000)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def link() -> ScriptedLink:
    return ScriptedLink()


@pytest.fixture
def publisher(link: ScriptedLink, store: FallbackStore) -> ResilientPublisher:
    # A breaker that never opens in these tests: order must hold without its help.
    breaker = Breaker(fail_max=1000, reset_timeout_s=60)
    return ResilientPublisher(link, breaker, store, deadline_s=DEADLINE_S)  # type: ignore[arg-type]


async def stored_ids(store: FallbackStore) -> list[str]:
    return [row.event.message_id for row in await store.peek(1000)]


async def test_once_an_event_is_stored_later_events_of_its_channel_queue_behind_it(
    publisher: ResilientPublisher, link: ScriptedLink, store: FallbackStore
) -> None:
    link.refuse("a1")

    assert await publisher.submit(event("a1")) is Outcome.stored
    # The broker takes events again, but a1 waits in the store: a2 and a3 must not overtake it.
    assert await publisher.submit(event("a2")) is Outcome.stored
    assert await publisher.submit(event("a3")) is Outcome.stored
    # Another channel has no backlog and goes straight out.
    assert await publisher.submit(event("b1", "payments.captured")) is Outcome.published

    assert await stored_ids(store) == ["a1", "a2", "a3"]
    assert link.confirmed == ["b1"]


async def test_an_event_arriving_while_an_earlier_one_is_being_stored_does_not_overtake_it(
    publisher: ResilientPublisher, link: ScriptedLink, store: FallbackStore
) -> None:
    link.refuse("a1")

    # Both start before a1's store write has committed (it commits on the writer thread).
    first = asyncio.create_task(publisher.submit(event("a1")))
    second = asyncio.create_task(publisher.submit(event("a2")))

    assert await first is Outcome.stored
    assert await second is Outcome.stored
    assert "a2" not in link.attempted
    assert await stored_ids(store) == ["a1", "a2"]


async def test_an_earlier_publish_that_times_out_is_stored_before_a_later_diverted_event(
    publisher: ResilientPublisher, link: ScriptedLink, store: FallbackStore
) -> None:
    link.hold("a1")  # never confirmed: a1 runs into the deadline
    link.refuse("a2")  # a2 fails at once, while a1 still waits

    first = asyncio.create_task(publisher.submit(event("a1")))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(publisher.submit(event("a2")))
    await asyncio.sleep(0.05)
    assert not second.done(), "a2 was answered before a1, which came first, was settled"

    assert await first is Outcome.stored
    assert await second is Outcome.stored
    assert await stored_ids(store) == ["a1", "a2"]


async def test_an_earlier_publish_that_fails_late_is_stored_before_a_later_diverted_event(
    publisher: ResilientPublisher, link: ScriptedLink, store: FallbackStore
) -> None:
    gate = link.hold("a1")
    link.refuse("a2")

    first = asyncio.create_task(publisher.submit(event("a1")))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(publisher.submit(event("a2")))
    await asyncio.sleep(0.01)
    gate.set_exception(BrokerUnavailable("scripted: connection lost mid-confirm"))

    assert await first is Outcome.stored
    assert await second is Outcome.stored
    assert await stored_ids(store) == ["a1", "a2"]


async def test_every_answer_comes_within_the_deadline_even_behind_a_stuck_publish(
    publisher: ResilientPublisher, link: ScriptedLink, store: FallbackStore
) -> None:
    for n in range(5):
        link.hold(f"a{n}")  # every publish hangs, as in a partition

    started = asyncio.get_running_loop().time()
    outcomes = await asyncio.gather(*(publisher.submit(event(f"a{n}")) for n in range(5)))
    elapsed = asyncio.get_running_loop().time() - started

    assert outcomes == [Outcome.stored] * 5
    assert elapsed < DEADLINE_S + 0.25
    assert await stored_ids(store) == [f"a{n}" for n in range(5)]


async def test_a_channel_publishes_directly_again_once_its_backlog_is_drained(
    publisher: ResilientPublisher, link: ScriptedLink, store: FallbackStore
) -> None:
    link.refuse("a1")
    assert await publisher.submit(event("a1")) is Outcome.stored

    [row] = await store.peek(10)
    await publisher.publish(row.event, DeliveryPath.replay)  # what the replayer does
    await store.delete([row.seq])

    assert await publisher.submit(event("a2")) is Outcome.published
    assert link.confirmed == ["a1", "a2"]


async def test_a_nack_of_an_earlier_event_lets_a_later_confirmed_one_through_first(
    publisher: ResilientPublisher, link: ScriptedLink, store: FallbackStore
) -> None:
    """The documented limit of pipelining (README, Guarantees): when the broker nacks one
    event while a later one of the same channel is confirmed, the later one is already on the
    exchange; the nacked one is not lost but stored and replayed after it."""
    gate = link.hold("a1")

    first = asyncio.create_task(publisher.submit(event("a1")))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(publisher.submit(event("a2")))
    await asyncio.sleep(0.01)
    gate.set_exception(BrokerUnavailable("scripted: the broker nacked a1"))

    assert [await first, await second] == [Outcome.stored, Outcome.published]
    assert link.confirmed == ["a2"]
    assert await stored_ids(store) == ["a1"]
