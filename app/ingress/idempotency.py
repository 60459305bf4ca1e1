"""Idempotency keys: a producer's retry of an event it already handed over is not published again.

An event has a key when its producer named it: the HTTP `Idempotency-Key` header, or the inbound
AMQP message's `message_id` (both become the event's `message_id`). Semantics follow the IETF
HTTP APIs draft `draft-ietf-httpapi-idempotency-key-header` and what payment APIs do:

- a key seen within the window, with the same channel and normalised body (the `digest`), is a
  repeat: answered with the first event's outcome (`published` or `stored`), nothing is published;
- the same key with another channel or body is a conflict (HTTP 422, AMQP dead-letter);
- a repeat while the first is still being published or stored: HTTP 409 with `Retry-After`;
  AMQP ingress waits for the first to settle instead (an AMQP delivery cannot be answered "later").

A key is recorded only once its event is stored (in the same transaction as the event, before the
answer) or published (the keys of published events are written together, at most
KEY_WRITE_DELAY_S after their answers), in the store's SQLite file, so a restart does not forget
it. A kill before a published event's key is written loses the key but not the event: the
producer's retry is then published again, with the same `message_id` (at-least-once, as without
keys). The window is per process (per replica): a
retry that reaches another replica is published again with the same `message_id`.

The window is bounded by age (`ttl_s`) and count (`max_keys`, the oldest go first); the keys in
memory are the authority while running, the table is what a restart loads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Final, Literal

from ..events import Event
from ..outbound.publisher import Outcome, ResilientPublisher
from ..store.fallback import FallbackStore, RememberedKey, StoreError, epoch_ms

log = logging.getLogger("breakwater.idempotency")

RETRY_AFTER_IN_FLIGHT_S: Final = 1
EXPIRY_INTERVAL_S: Final = 60.0
# Keys of published events are written together, at most this long after their answer (or as soon
# as this many wait): a write per answer cost a third of the published throughput (`make bench`).
KEY_WRITE_DELAY_S: Final = 0.05
KEY_WRITE_BATCH: Final = 500

# The window's entry for a key: (channel, digest, outcome, created_ms), an exact tuple of plain
# values rather than a RememberedKey. The garbage collector stops tracking such a tuple at its
# first collection, so a window of up to `max_keys` entries adds nothing to the full collections a
# busy gateway runs about once a second; one tracked object per key made each of them walk the
# whole window (a `gc` callback in the HTTP benchmark's stored gateways: 22 full collections took
# 0.87 s with 60,000 keys in the window, 0.38 s without).
_Entry = tuple[str, bytes, str, int]
_CHANNEL: Final = 0
_DIGEST: Final = 1
_OUTCOME: Final = 2
_CREATED_MS: Final = 3


def digest(event: Event) -> bytes:
    """What a repeat must match: the channel and the normalised body (so key order and
    whitespace that validation normalises away do not make a retry a conflict)."""
    return hashlib.sha256(event.channel.encode() + b"\0" + event.body).digest()[:16]


class KeyConflict(Exception):
    """The key was used for another event (another channel or body) within the window; `str()`
    says so in HTTP's words, `reason("message_id")` in another ingress' words."""

    def __init__(self, key: str, first_channel: str, channel: str) -> None:
        self.key = key
        self.first_channel = first_channel
        self.channel = channel
        super().__init__(self.reason("Idempotency-Key"))

    def reason(self, key_name: str) -> str:
        where = "" if self.first_channel == self.channel else f" on channel {self.first_channel!r}"
        return (
            f"{key_name} {self.key!r} was already used{where} for a different event;"
            " a retry must repeat the first one's channel and body, a new event needs a new key"
        )


class KeyInFlight(Exception):
    """The first request with this key has not been answered yet."""

    def __init__(self, key: str) -> None:
        self.retry_after_s = RETRY_AFTER_IN_FLIGHT_S
        super().__init__(
            f"a request with Idempotency-Key {key!r} is still being processed; retry after"
            f" {RETRY_AFTER_IN_FLIGHT_S} s to get its outcome"
        )


@dataclass(slots=True)
class _Pending:
    channel: str
    digest: bytes
    settled: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class Accepted:
    """What the ingress answers: the outcome, and whether it is a repeat's (the first event's)."""

    outcome: Outcome
    repeat: bool = False


class IdempotentPublisher:
    """The ingresses' way in: `submit` deduplicates keyed events, then hands new ones to the
    `ResilientPublisher`. With `ttl_s == 0` keys are not remembered (every event is new)."""

    def __init__(
        self,
        publisher: ResilientPublisher,
        store: FallbackStore,
        *,
        ttl_s: float,
        max_keys: int,
    ) -> None:
        self._publisher = publisher
        self._store = store
        self.ttl_ms = int(ttl_s * 1000)
        self.max_keys = max_keys
        self._seen: OrderedDict[str, _Entry] = OrderedDict()
        self._pending: dict[str, _Pending] = {}
        self._unwritten: list[RememberedKey] = []
        self._write_timer: asyncio.TimerHandle | None = None
        self._writing: set[asyncio.Future[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.ttl_ms > 0 and self.max_keys > 0

    def __len__(self) -> int:
        return len(self._seen)

    def oldest_age_s(self) -> float:
        """Age of the oldest remembered key: how far back repeats are recognised right now."""
        if not self._seen:
            return 0.0
        first = next(iter(self._seen.values()))
        return max(0.0, (_now_ms() - first[_CREATED_MS]) / 1000)

    async def load(self) -> None:
        """Take the keys of the window from the store (after it opened)."""
        if not self.enabled:
            return
        since = _now_ms() - self.ttl_ms
        for key in await self._store.recent_keys(since, self.max_keys):
            self._remember(key)

    def check(self, event: Event) -> None:
        """Raise the KeyConflict or KeyInFlight that `submit` (refusing in-flight repeats) would
        raise for `event`, a keyed one, right now; change nothing. An atomic batch checks every
        key before it submits any event."""
        if not self.enabled:
            return
        key, mark = event.message_id, digest(event)
        pending = self._pending.get(key)
        if pending is not None:
            if pending.digest != mark:
                raise KeyConflict(key, pending.channel, event.channel)
            raise KeyInFlight(key)
        seen = self._in_window(key)
        if seen is not None and seen[_DIGEST] != mark:
            raise KeyConflict(key, seen[_CHANNEL], event.channel)

    async def submit(
        self, event: Event, *, keyed: bool, in_flight: Literal["refuse", "wait"] = "refuse"
    ) -> Accepted:
        """Publish or store `event`, unless it repeats a keyed event of the window. Raises
        KeyConflict, KeyInFlight (with `in_flight="refuse"`), and what `ResilientPublisher.submit`
        raises; nothing is recorded for an event that was neither published nor stored."""
        if not keyed or not self.enabled:
            return Accepted(await self._publisher.submit(event))
        key, mark = event.message_id, digest(event)
        while (pending := self._pending.get(key)) is not None:
            if pending.digest != mark:
                raise KeyConflict(key, pending.channel, event.channel)
            if in_flight == "refuse":
                raise KeyInFlight(key)
            await asyncio.shield(pending.settled)
        seen = self._in_window(key)
        if seen is not None:
            if seen[_DIGEST] != mark:
                raise KeyConflict(key, seen[_CHANNEL], event.channel)
            return Accepted(Outcome(seen[_OUTCOME]), repeat=True)
        # New (or its earlier use has expired). No await before the publisher takes it: AMQP
        # ingress relies on acceptance order being delivery order.
        pending = _Pending(event.channel, mark, asyncio.get_running_loop().create_future())
        self._pending[key] = pending
        try:
            created_ms = epoch_ms(event.timestamp)
            stored = RememberedKey(key, event.channel, mark, Outcome.stored.value, created_ms)
            outcome = await self._publisher.submit(event, key=stored)
            record = replace(stored, outcome=outcome.value)  # a plain str (see _Entry)
            if outcome is Outcome.published:
                self._remember_published(record)
            self._remember(record)
            return Accepted(outcome)
        finally:
            del self._pending[key]
            pending.settled.set_result(None)

    async def withdraw(self, event: Event) -> bool:
        """Take back a stored event its ingress will be handed again (an AMQP delivery that can
        no longer be acked): it leaves the store and its key the window, so the next delivery is
        taken as new, not answered as a repeat of a copy that is gone. False when the store did
        not hold it (it was published, or never queued). Raises StoreError."""
        self._seen.pop(event.message_id, None)
        return await self._store.withdraw([event.message_id]) > 0

    def _remember_published(self, record: RememberedKey) -> None:
        """The key of a published event, for the store's next write of keys (see
        KEY_WRITE_DELAY_S): the broker has confirmed the event, so the answer does not wait for
        a disk write the published path has no other need of. In memory it counts at once."""
        self._unwritten.append(record)
        if len(self._unwritten) >= KEY_WRITE_BATCH:
            self.write_keys()
        elif self._write_timer is None:
            loop = asyncio.get_running_loop()
            self._write_timer = loop.call_later(KEY_WRITE_DELAY_S, self.write_keys)

    def write_keys(self) -> None:
        """Queue the published events' keys not yet written for the store's next group commit."""
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        keys, self._unwritten = self._unwritten, []
        if not keys:
            return
        try:
            written = self._store.remember_nowait(keys)
        except StoreError as exc:
            self._kept_in_memory_only(len(keys), exc)
            return
        self._writing.add(written)
        written.add_done_callback(functools.partial(self._written, len(keys)))

    async def keys_written(self) -> None:
        """Write what is waiting and return once every queued write of keys has settled (at a
        clean stop, before the store closes; in tests, to look at the file)."""
        self.write_keys()
        if self._writing:
            await asyncio.wait(self._writing)

    def _written(self, count: int, written: asyncio.Future[None]) -> None:
        self._writing.discard(written)
        exc = written.exception() if not written.cancelled() else None
        if isinstance(exc, StoreError):
            self._kept_in_memory_only(count, exc)
        elif exc is not None:
            log.error("writing %d idempotency keys failed", count, exc_info=exc)

    @staticmethod
    def _kept_in_memory_only(count: int, exc: StoreError) -> None:
        # The events are out; only their keys are not durable. This process still knows them;
        # after a restart a retry would be published again with the same message_id.
        log.warning(
            "%d idempotency keys of published events are only kept in memory: %s", count, exc
        )

    def _in_window(self, key: str) -> _Entry | None:
        """The entry of `key` if it is still within the TTL (`expire` drops older ones only once
        a minute, so an entry may outlive its window until then)."""
        seen = self._seen.get(key)
        if seen is None or seen[_CREATED_MS] < _now_ms() - self.ttl_ms:
            return None
        return seen

    def _remember(self, record: RememberedKey) -> None:
        self._seen[record.key] = (record.channel, record.digest, record.outcome, record.created_ms)
        self._seen.move_to_end(record.key)
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)

    def expire(self) -> int:
        """Forget the keys older than the window (in memory); returns how many."""
        cutoff = _now_ms() - self.ttl_ms
        expired = 0
        while self._seen and next(iter(self._seen.values()))[_CREATED_MS] < cutoff:
            self._seen.popitem(last=False)
            expired += 1
        return expired

    async def run_expiry(self, interval_s: float = EXPIRY_INTERVAL_S) -> None:
        """Expire keys in memory and in the store, every `interval_s`, until cancelled."""
        if not self.enabled:
            return
        while True:
            await asyncio.sleep(interval_s)
            self.expire()
            with contextlib.suppress(StoreError):  # the next round tries again
                await self._store.forget(_now_ms() - self.ttl_ms, self.max_keys)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
