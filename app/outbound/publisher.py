"""The one way out: every event (HTTP, AMQP, replay) is published through `ResilientPublisher`.

Direct path: breaker admits the call -> connection checked -> publish -> confirm, all inside one
deadline. When the breaker is open, the broker is unreachable, blocked or too slow, the event goes to
the fallback store instead and the caller learns `stored`.

Order per channel: once an event of a channel has been diverted to the store, later events of that
channel follow it into the store until the replay has drained it; and stores of one channel happen in
acceptance order even when an earlier direct publish fails after a later event was diverted.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from contextlib import AbstractContextManager
from enum import StrEnum
from typing import Protocol

from ..events import DeliveryPath, Event
from ..store.fallback import FallbackStore, RememberedKey
from .breaker import Breaker, CircuitOpenError
from .connection import BrokerUnavailable, OutboundLink

MAX_IN_FLIGHT = 256


class Outcome(StrEnum):
    published = "published"
    stored = "stored"


class PublishObserver(Protocol):
    def published(self, channel: str, seconds: float, path: DeliveryPath) -> None: ...


class PublishTracer(Protocol):
    """Spans around the way out (app/tracing). Without one (tracing off) the way out is as it
    was but for one attribute test."""

    def publishing(self, event: Event, path: DeliveryPath) -> AbstractContextManager[Event]:
        """Around one publish, until confirmed; gives the event to send (with the span's trace
        context)."""
        ...

    def storing(self, event: Event) -> AbstractContextManager[None]:
        """Around one event's way into the store, until committed."""
        ...


class _NullObserver:
    def published(self, channel: str, seconds: float, path: DeliveryPath) -> None:
        return None


class _AcceptanceOrder:
    """Per channel, a chain of futures: each settles only after its predecessor has.

    A caller about to write to the store first waits for everything accepted before it in the same
    channel to settle, so the store's sequence is the acceptance order.
    """

    def __init__(self) -> None:
        self._tail: dict[str, asyncio.Future[None]] = {}

    def enter(self, channel: str) -> tuple[asyncio.Future[None] | None, asyncio.Future[None]]:
        previous = self._tail.get(channel)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tail[channel] = mine
        return previous, mine

    def settle(
        self, channel: str, previous: asyncio.Future[None] | None, mine: asyncio.Future[None]
    ) -> None:
        def done(_: object = None) -> None:
            if not mine.done():
                mine.set_result(None)
            if self._tail.get(channel) is mine:
                del self._tail[channel]

        if previous is None or previous.done():
            done()
        else:
            previous.add_done_callback(done)


class ResilientPublisher:
    def __init__(
        self,
        link: OutboundLink,
        breaker: Breaker,
        store: FallbackStore,
        *,
        deadline_s: float,
        observer: PublishObserver | None = None,
        tracer: PublishTracer | None = None,
    ) -> None:
        self.link = link
        self.breaker = breaker
        self.store = store
        self.deadline_s = deadline_s
        self._observer = observer or _NullObserver()
        self._tracer = tracer
        self._order = _AcceptanceOrder()
        self._diverting: defaultdict[str, int] = defaultdict(int)
        # Enough to keep the broker busy while AMQP ingress forwards a full prefetch window (256
        # by default; measured with `python -m bench forwarding`: 64 in flight left the broker
        # waiting on confirms), few enough that a flood of HTTP requests waits here, under its
        # deadline, instead of piling up unconfirmed inside aiormq.
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    def channel_has_backlog(self, channel: str) -> bool:
        return self._diverting[channel] > 0 or self.store.has_backlog(channel)

    async def submit(self, event: Event, key: RememberedKey | None = None) -> Outcome:
        """Publish `event` or store it durably. Raises StoreError when neither is possible, and
        `Unroutable` when the broker returned it. A stored event's idempotency `key` is committed
        with it (a published one's is the caller's to record)."""
        previous, mine = self._order.enter(event.channel)
        try:
            if not self.channel_has_backlog(event.channel) and self.breaker.allows():
                try:
                    await self.publish(event, DeliveryPath.direct)
                except (CircuitOpenError, BrokerUnavailable, TimeoutError):
                    pass
                else:
                    return Outcome.published
            if self._tracer is None:
                await self._store_in_order(event, previous, mine, key)
            else:
                with self._tracer.storing(event):
                    await self._store_in_order(event, previous, mine, key)
            return Outcome.stored
        finally:
            self._order.settle(event.channel, previous, mine)

    async def publish(self, event: Event, path: DeliveryPath) -> None:
        """One guarded, deadline-bound publish (also the replay's way out), in its span when
        tracing."""
        if self._tracer is None:
            await self._publish(event, path)
            return
        with self._tracer.publishing(event, path) as traced:
            await self._publish(traced, path)

    async def _publish(self, event: Event, path: DeliveryPath) -> None:
        """The deadline covers waiting for a publishing slot, the connection check, the send and the
        confirm. Only the part after the slot is the broker's doing, so only a timeout there
        counts against the breaker: a queue of callers in this process is not a broker outage.
        """
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + self.deadline_s
        if self._slots.locked():
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        else:
            await self._slots.acquire()  # a free slot is taken at once: no timeout to arm
        try:
            async with self.breaker.guard(), asyncio.timeout_at(deadline):
                await self.link.publish(event, path)
        finally:
            self._slots.release()
        self._observer.published(event.channel, time.perf_counter() - started, path)

    async def _store_in_order(
        self,
        event: Event,
        previous: asyncio.Future[None] | None,
        mine: asyncio.Future[None],
        key: RememberedKey | None,
    ) -> None:
        self._diverting[event.channel] += 1
        try:
            if previous is not None:
                await asyncio.shield(previous)
            committed = self.store.put_nowait(event, key)
            # The store's order is fixed once the event is queued: the next event of the channel
            # may queue behind it now, and both ride in one group commit instead of one fsync each.
            self._order.settle(event.channel, None, mine)
            await committed
        finally:
            self._diverting[event.channel] -= 1
