"""Helpers for the outage tests: a consumer in a thread of its own, HTTP senders that time every
answer, a /readyz watcher, and the per-channel order check.

Everything here is thread-based on purpose: the tests drive a gateway in another process with
blocking HTTP calls, and a consumer on the test's own event loop would stall (and so misreport
receive times) while those calls block.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage

from app.broker.topology import EVENTS_EXCHANGE, EVENTS_EXCHANGE_ARGUMENTS, UNROUTED
from app.catalog.default import DEFAULT_CATALOG

RABBITMQCTL = os.environ.get("RABBITMQCTL", "rabbitmqctl")

# -- consuming ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as a consumer bound to `breakwater.events` saw it."""

    received: float  # time.monotonic() in the consumer thread, when the message was handed over
    message_id: str
    correlation_id: str | None
    timestamp: datetime | None
    path: str | None  # the x-breakwater-path header
    routing_key: str
    body: bytes


class Recorder:
    """A consumer of `breakwater.events` running in a thread with its own event loop.

    It keeps every message whose message_id starts with `prefix`, with the (monotonic) time it
    arrived. Without `queue_name` the queue is exclusive (gone with the connection). With
    `queue_name` it is a named, non-exclusive queue that survives a forced close of the
    connection (the robust connection re-consumes it) and is deleted by `stop()`.
    """

    def __init__(
        self, url: str, prefix: str, *, routing_key: str = "#", queue_name: str | None = None
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.routing_key = routing_key
        self.queue_name = queue_name
        self._records: list[Delivery] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None

    def start(self) -> Self:
        self._thread.start()
        self._call(self._start(), timeout=30)
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        self._connection = await aio_pika.connect_robust(self.url)
        channel = await self._connection.channel()
        await channel.declare_exchange(UNROUTED, aio_pika.ExchangeType.FANOUT, durable=True)
        exchange = await channel.declare_exchange(
            EVENTS_EXCHANGE,
            aio_pika.ExchangeType.TOPIC,
            durable=True,
            arguments=EVENTS_EXCHANGE_ARGUMENTS,
        )
        if self.queue_name is None:
            queue = await channel.declare_queue(exclusive=True)
        else:
            queue = await channel.declare_queue(self.queue_name, durable=True)
        await queue.bind(exchange, self.routing_key)
        await queue.consume(self._on_message)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        received = time.monotonic()
        message_id = message.message_id or ""
        if message_id.startswith(self.prefix):
            headers = message.headers or {}
            path = headers.get("x-breakwater-path")
            if isinstance(path, bytes):
                path = path.decode()
            record = Delivery(
                received=received,
                message_id=message_id,
                correlation_id=message.correlation_id,
                timestamp=message.timestamp,
                path=path if isinstance(path, str) else None,
                routing_key=message.routing_key or "",
                body=message.body,
            )
            with self._lock:
                self._records.append(record)
        await message.ack()

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._records)

    def seen_ids(self, path: str | None = None) -> set[str]:
        """Ids seen at least once (by the given `x-breakwater-path` only, if `path` is set)."""
        return {r.message_id for r in self.deliveries() if path is None or r.path == path}

    def wait_for(
        self, ids: Iterable[str], timeout: float, path: str | None = None
    ) -> list[Delivery]:
        """Wait until every id in `ids` arrived at least once (by `path`, if set); fail naming
        the missing ones."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        while True:
            missing = wanted - self.seen_ids(path)
            if not missing:
                return self.deliveries()
            if time.monotonic() > deadline:
                how = f" by {path}" if path else ""
                raise AssertionError(
                    f"{len(missing)} of {len(wanted)} accepted events not delivered{how} within"
                    f" {timeout}s, e.g. {sorted(missing)[:5]}"
                )
            time.sleep(0.05)

    def wait_quiet(self, quiet_s: float = 0.5, timeout: float = 10.0) -> None:
        """Wait until nothing new arrived for `quiet_s` (late duplicates have come in)."""
        deadline = time.monotonic() + timeout
        count = len(self.deliveries())
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now_count = len(self.deliveries())
            if now_count != count:
                count, quiet_since = now_count, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return

    async def _stop(self) -> None:
        if self._connection is None:
            return
        if self.queue_name is not None:
            with contextlib.suppress(Exception):
                channel = await self._connection.channel()
                await channel.queue_delete(self.queue_name)
        with contextlib.suppress(Exception):
            await self._connection.close()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._stop(), timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def first_occurrences(deliveries: Sequence[Delivery]) -> dict[str, list[str]]:
    """Per routing key, the message ids in the order they first arrived."""
    seen: set[str] = set()
    order: dict[str, list[str]] = {}
    for record in deliveries:
        if record.message_id in seen:
            continue
        seen.add(record.message_id)
        order.setdefault(record.routing_key, []).append(record.message_id)
    return order


def assert_in_acceptance_order(
    deliveries: Sequence[Delivery], accepted: Mapping[str, Sequence[str]]
) -> None:
    """Per channel, the first occurrences of the accepted ids follow their acceptance order."""
    order = first_occurrences(deliveries)
    for channel, ids in accepted.items():
        wanted = set(ids)
        got = [message_id for message_id in order.get(channel, []) if message_id in wanted]
        assert set(got) == wanted, f"{channel}: {len(wanted - set(got))} accepted events missing"
        if got != list(ids):
            at = next(i for i, (a, b) in enumerate(zip(got, ids, strict=True)) if a != b)
            raise AssertionError(
                f"{channel}: delivered out of acceptance order at position {at}:"
                f" expected {list(ids)[at : at + 3]}, got {got[at : at + 3]}"
            )


def max_in_window(times: Sequence[float], window_s: float = 1.0) -> int:
    """The most of `times` that fall in any closed window of `window_s` seconds."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, now in enumerate(ordered):
        while now - ordered[start] > window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


# -- HTTP --------------------------------------------------------------------------------------


def payload(channel: str, message_id: str) -> dict[str, Any]:
    """A valid payload of `channel` that names its event (so bodies differ)."""
    body = dict(DEFAULT_CATALOG[channel].example)
    body["order_id"] = message_id
    return body


@dataclass(frozen=True, slots=True)
class Answer:
    channel: str
    message_id: str
    correlation_id: str
    status_code: int  # 0: no answer (connection error or client timeout)
    status: str | None  # "published" | "stored" for a 202
    elapsed: float
    wall_start: float  # time.time() before sending and after the answer: bounds the stamp
    wall_end: float
    retry_after: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status_code == 202


def post_event(
    client: httpx.Client, channel: str, message_id: str, *, timeout: float = 10.0
) -> Answer:
    correlation_id = f"corr-{message_id}"
    wall_start = time.time()
    started = time.monotonic()
    try:
        response = client.post(
            f"/v1/events/{channel}",
            json=payload(channel, message_id),
            headers={"Idempotency-Key": message_id, "X-Correlation-Id": correlation_id},
            timeout=timeout,
        )
    except httpx.HTTPError:
        elapsed = time.monotonic() - started
        return Answer(
            channel, message_id, correlation_id, 0, None, elapsed, wall_start, time.time()
        )
    elapsed = time.monotonic() - started
    status = response.json().get("status") if response.status_code == 202 else None
    if status is not None:
        assert response.json()["message_id"] == message_id
    return Answer(
        channel,
        message_id,
        correlation_id,
        response.status_code,
        status,
        elapsed,
        wall_start,
        time.time(),
        response.headers.get("retry-after"),
    )


@dataclass
class Sender:
    """Posts events of one channel one after the other, in a thread, until stopped or `count`.

    Sequential on purpose: each event is accepted before the next is sent, so the acceptance
    order of the channel is the sending order.
    """

    base_url: str
    channel: str
    prefix: str
    count: int | None = None
    pause_s: float = 0.0
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._next = 0

    def _ids(self) -> Iterator[str]:
        while self.count is None or self._next < self.count:
            yield f"{self.prefix}-{self.channel}-{self._next:05d}"
            self._next += 1

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url) as client:
            for message_id in self._ids():
                if self._stop.is_set():
                    return
                self.answers.append(post_event(client, self.channel, message_id))
                if self.pause_s:
                    time.sleep(self.pause_s)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> list[Answer]:
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"sender of {self.channel} hung"
        return self.answers

    def join(self, timeout: float = 60.0) -> list[Answer]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"sender of {self.channel} hung"
        return self.answers

    def accepted_ids(self) -> list[str]:
        return [answer.message_id for answer in self.answers if answer.accepted]


def send_sequentially(base_url: str, channel: str, ids: Iterable[str]) -> list[Answer]:
    with httpx.Client(base_url=base_url) as client:
        return [post_event(client, channel, message_id) for message_id in ids]


def send_concurrently(base_url: str, channel: str, prefix: str, count: int) -> list[Answer]:
    """Post `count` events of one channel at the same time, each on its own connection."""

    def send(i: int) -> Answer:
        with httpx.Client(base_url=base_url) as client:
            return post_event(client, channel, f"{prefix}-{i:05d}")

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(send, range(count)))


# -- /readyz -----------------------------------------------------------------------------------


def readyz(base_url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{base_url}/readyz", timeout=5).json()
    return body


class ReadyWatcher:
    """Polls /readyz in a thread and keeps the breaker states it saw, in order."""

    def __init__(self, base_url: str, interval_s: float = 0.05) -> None:
        self.base_url = base_url
        self.interval_s = interval_s
        self.states: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=5) as client:
            while not self._stop.is_set():
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    body = client.get("/readyz").json()
                    self.bodies.append(body)
                    if not self.states or self.states[-1] != body["breaker"]:
                        self.states.append(body["breaker"])
                self._stop.wait(self.interval_s)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(10)
        return self.states


def wait_until(
    predicate: Any, timeout: float, interval: float = 0.05, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


def wait_breaker(base_url: str, state: str, timeout: float) -> None:
    wait_until(
        lambda: readyz(base_url)["breaker"] == state,
        timeout,
        what=f"breaker {state!r} on /readyz",
    )


# -- AMQP ingress ------------------------------------------------------------------------------


def publish_inbound(url: str, channel: str, ids: Sequence[str]) -> None:
    """Publish one valid message per id to `breakwater.in.<channel>`, in order, confirmed."""

    async def publish() -> None:
        connection = await aio_pika.connect(url)
        async with connection:
            amqp_channel = await connection.channel(publisher_confirms=True)
            for message_id in ids:
                body = json.dumps(payload(channel, message_id)).encode()
                await amqp_channel.default_exchange.publish(
                    aio_pika.Message(
                        body,
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=message_id,
                        correlation_id=f"corr-{message_id}",
                    ),
                    routing_key=f"breakwater.in.{channel}",
                )

    asyncio.run(publish())


# Quorum queues publish their message counts to `rabbitmqctl list_queues` on a timer (every 5 s):
# a count read there may describe the queue as it was up to that long ago.
QUORUM_COUNTS_LAG_S = 6.0


def queue_counts(vhost: str, queue: str, ctl: Callable[..., str] | None = None) -> tuple[int, int]:
    """(ready, unacknowledged) messages of `queue`, from `rabbitmqctl list_queues` (the shared
    broker's, or `ctl` such as a private node's `RabbitNode.ctl`). For a quorum queue this may
    be up to QUORUM_COUNTS_LAG_S old: see `fresh_queue_total`."""
    args = (
        *("list_queues", "-p", vhost),
        *("name", "messages_ready", "messages_unacknowledged", "--formatter", "json"),
    )
    if ctl is None:
        out = subprocess.run(
            [RABBITMQCTL, *args], check=True, capture_output=True, text=True, timeout=60
        ).stdout
    else:
        out = ctl(*args)
    for row in json.loads(out):
        if row["name"] == queue:
            return int(row["messages_ready"]), int(row["messages_unacknowledged"])
    raise AssertionError(f"queue {queue!r} not found in vhost {vhost!r}")


def fresh_queue_total(vhost: str, queue: str, since: float) -> int:
    """Ready + unacknowledged messages of a quorum queue as they were at `since` (a
    time.monotonic() value) or later: waits until the counts are that fresh."""
    time.sleep(max(0.0, since + QUORUM_COUNTS_LAG_S - time.monotonic()))
    return sum(queue_counts(vhost, queue))


def purge_inbound_queues(url: str) -> None:
    """Empty the gateway's inbound queues (a failed test must not leave work for the next)."""

    async def purge() -> None:
        connection = await aio_pika.connect(url)
        async with connection:
            for name in DEFAULT_CATALOG:
                amqp_channel = await connection.channel()
                try:
                    queue = await amqp_channel.declare_queue(f"breakwater.in.{name}", passive=True)
                except aio_pika.exceptions.ChannelClosed:
                    continue  # not declared yet in this vhost
                await queue.purge()
                await amqp_channel.close()

    asyncio.run(purge())
