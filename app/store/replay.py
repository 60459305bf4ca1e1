"""Drains the fallback store to the broker: oldest first, at a bounded rate, pipelined.

A row is deleted only after the broker confirmed its publish, so a crash at any point replays it
again (at-least-once; consumers deduplicate by `message_id`). The replay goes through the same
breaker as live traffic, which makes it the breaker's probe: a failing replay opens it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..events import DeliveryPath
from ..outbound.breaker import BreakerState
from ..outbound.publisher import ResilientPublisher
from .fallback import StoredEvent, StoreError

log = logging.getLogger("breakwater.replay")

IDLE_POLL_S = 0.2
# How long the replay waits before trying the store again after a failed read or delete.
STORE_RETRY_S = 1.0


class TokenBucket:
    """At most `rate` takes in any one-second window, with bursts of at most `burst`.

    A bucket that starts full allows `burst + refill - 1` takes in a one-second window, so the
    refill rate is lowered by `burst - 1` to keep the window bound exact.
    """

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = max(1.0, burst)
        self.refill_per_s = max(rate - (self.burst - 1.0), 1e-9)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()

    @classmethod
    def for_rate(cls, rate: float) -> TokenBucket:
        # A hundredth of the rate as burst keeps wake-ups few and the achieved rate within 1 %.
        return cls(rate, burst=min(rate / 10, max(1.0, rate / 100)))

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.refill_per_s)
        self._last = now

    async def take(self) -> None:
        self._refill()
        while self._tokens < 1.0:
            await asyncio.sleep((1.0 - self._tokens) / self.refill_per_s)
            self._refill()
        self._tokens -= 1.0


class Replayer:
    def __init__(
        self,
        publisher: ResilientPublisher,
        *,
        rate: float,
        batch: int,
        replays: Callable[[str], bool] = lambda channel: True,
    ) -> None:
        self._publisher = publisher
        # A channel the loaded catalog no longer has: its events stay in the store, unreplayed,
        # for an operator to export or purge (or a catalog that has it again), never dropped.
        self._replays = replays
        self._stranded: frozenset[str] = frozenset()
        self._store = publisher.store
        self._breaker = publisher.breaker
        self._bucket = TokenBucket.for_rate(rate)
        self._batch = batch
        self.rate = rate
        self.replayed = 0
        self.on_replayed: Callable[[str], None] = lambda channel: None
        # Rows published and confirmed whose delete failed (store unwritable, e.g. disk full):
        # deleted before anything else is read, so they are not published again and again.
        self._undeleted: list[int] = []

    async def run(self, *, until_empty: bool = False) -> None:
        """Replay forever (the gateway), or until the store is empty (`breakwater store replay`)."""
        draining = False
        store_failing = False
        while True:
            if self._pending() == 0:
                if draining:
                    log.info("fallback store drained")
                    draining = False
                if until_empty:
                    return
                await asyncio.sleep(IDLE_POLL_S)
                continue
            if not self._breaker.allows():
                await asyncio.sleep(min(max(self._breaker.retry_after_s, 0.05), 1.0))
                continue
            if not draining:
                log.info("replaying %d stored events at up to %.0f/s", self._pending(), self.rate)
                draining = True
            try:
                replayed_all = await self._replay_batch()
            except StoreError as exc:
                # The store cannot be read or written right now (disk full, read-only): the task
                # must outlive it, or nothing stored would ever be replayed again.
                if not store_failing:
                    log.warning("replay waits for the fallback store (retrying): %s", exc)
                    store_failing = True
                await asyncio.sleep(STORE_RETRY_S)
                continue
            if store_failing:
                log.info("fallback store usable again; replay resumed")
                store_failing = False
            if not replayed_all:
                # The breaker counted the failure; wait before probing again instead of spinning.
                await asyncio.sleep(min(max(self._breaker.retry_after_s, 0.2), 1.0))

    def _pending(self) -> int:
        """Stored events to replay: those of the channels the catalog has."""
        depths = self._store.channel_depths()
        stranded = frozenset(channel for channel in depths if not self._replays(channel))
        if stranded != self._stranded:
            if stranded:
                log.warning(
                    "stored events of channels the catalog does not have stay in the store,"
                    " not replayed: %s (breakwater store export/purge --channel)",
                    ", ".join(f"{channel} ({depths[channel]})" for channel in sorted(stranded)),
                )
            self._stranded = stranded
        return sum(depth for channel, depth in depths.items() if channel not in stranded)

    async def _replay_batch(self) -> bool:
        """Publish one batch in order, pipelined; delete what was confirmed. True if all went.
        Raises StoreError when the store cannot be read or the confirmed rows cannot be deleted."""
        if self._undeleted:
            await self._store.delete(self._undeleted)
            self._undeleted = []
        # While half-open only a single trial publish is admitted: send one row as the probe.
        limit = self._batch if self._breaker.state is BreakerState.closed else 1
        rows = await self._store.peek(limit, excluding=self._stranded)
        in_flight: list[tuple[StoredEvent, asyncio.Task[None]]] = []
        failures: list[asyncio.Task[None]] = []
        for row in rows:
            await self._bucket.take()
            if failures:
                break  # the broker is failing: stop sending behind the failed row
            task = asyncio.create_task(self._publisher.publish(row.event, DeliveryPath.replay))
            task.add_done_callback(
                lambda t: failures.append(t) if t.cancelled() or t.exception() else None
            )
            in_flight.append((row, task))
        await asyncio.gather(*(task for _, task in in_flight), return_exceptions=True)
        confirmed = [
            row for row, task in in_flight if not task.cancelled() and task.exception() is None
        ]
        if confirmed:
            self.replayed += len(confirmed)
            for row in confirmed:
                self.on_replayed(row.event.channel)
            self._undeleted = [row.seq for row in confirmed]
            await self._store.delete(self._undeleted)
            self._undeleted = []
        return len(confirmed) == len(rows)
