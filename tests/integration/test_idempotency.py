"""Idempotency keys (app/ingress/idempotency.py) on the real gateway process, the real broker and the real
SQLite store: a retry with the same `Idempotency-Key` (or inbound `message_id`) within the window
is answered with the first event's outcome and not published again; in flight it is a 409, with
another body a 422 (AMQP: dead-lettered). Keys outlive a restart, and a kill -9 once written (a
published event's key within KEY_WRITE_DELAY_S of its answer); a kill -9 before that degrades to
at-least-once with the same `message_id`, and so does a retry after the window. A refused event
leaves no key.

Every consumer here reads `breakwater.events` straight from the broker; where the gateway's
outbound link has to fail, it runs through a `FaultProxy`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection

from app.broker.topology import DEAD_LETTER_QUEUE
from app.catalog.default import DEFAULT_CATALOG
from app.ingress.idempotency import KEY_WRITE_DELAY_S
from tests.support.fault_proxy import FaultProxy

from .consumers import bind_queue, collect
from .gateway_process import GatewayProcess
from .idempotency_helpers import (
    CommandGateway,
    keys_on_disk,
    kill_9,
    metric,
    path_of,
    receive_exactly,
    wait_metric,
)
from .test_amqp_ingress import publish_inbound

pytestmark = pytest.mark.integration

GatewayFactory = Callable[..., GatewayProcess]

CHANNEL = "orders.created"
ORDER: dict[str, Any] = dict(DEFAULT_CATALOG[CHANNEL].example)
# Valid too, but another event: a retry must not carry it.
OTHER_ORDER: dict[str, Any] = {**ORDER, "order_id": "ord-2002"}
CANCELLATION: dict[str, Any] = dict(DEFAULT_CATALOG["orders.cancelled"].example)
PAYMENT: dict[str, Any] = dict(DEFAULT_CATALOG["payments.captured"].example)

REPLAYED = "Idempotent-Replayed"
REPEATS = "breakwater_idempotent_repeats_total"
REJECTED = "breakwater_events_rejected_total"
ACCEPTED = "breakwater_events_accepted_total"
FAST_BREAKER = {
    "publish_timeout_s": "1",
    "breaker_fail_max": "2",
    "breaker_reset_timeout_s": "1",
}


def new_key() -> str:
    return f"idem-{uuid.uuid4().hex}"


async def post(
    client: httpx.AsyncClient,
    key: str,
    body: dict[str, Any] = ORDER,
    channel: str = CHANNEL,
    timeout: float = 15.0,  # noqa: ASYNC109 - the HTTP client's own bound
) -> httpx.Response:
    return await client.post(
        f"/v1/events/{channel}", json=body, headers={"Idempotency-Key": key}, timeout=timeout
    )


def assert_first(response: httpx.Response, key: str, status: str) -> None:
    """The answer to the first request with `key`: accepted with `status`, not a repeat."""
    assert response.status_code == 202, response.text
    assert response.json() == {"message_id": key, "status": status}
    assert REPLAYED not in response.headers


def assert_repeat(response: httpx.Response, key: str, status: str) -> None:
    """The answer to a repeat: the first request's message_id and outcome, flagged."""
    assert response.status_code == 202, response.text
    assert response.json() == {"message_id": key, "status": status}
    assert response.headers.get(REPLAYED) == "true"


async def readyz(base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        body: dict[str, Any] = (await client.get(f"{base_url}/readyz", timeout=5)).json()
    return body


async def wait_ready(
    base_url: str,
    check: Callable[[dict[str, Any]], bool],
    what: str,
    timeout_s: float = 30.0,
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check(body := await readyz(base_url)):
        assert time.monotonic() < deadline, f"{what} not reached within {timeout_s}s: {body}"
        await asyncio.sleep(0.1)


def drained(body: dict[str, Any]) -> bool:
    """Broker back, breaker closed, nothing stored: a new event would be published."""
    return (
        bool(body["broker_connected"]) and body["breaker"] == "closed" and not body["store_depth"]
    )


@pytest.fixture
def proxy_url(fault_proxy: FaultProxy, vhost: str) -> str:
    """The gateway's outbound URL: the session's vhost on the shared broker, via the proxy."""
    return f"amqp://guest:guest@127.0.0.1:{fault_proxy.port}/{vhost}"


# -- 1: a repeat -------------------------------------------------------------------------------


async def test_a_repeated_key_is_answered_with_the_first_outcome_and_published_once(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection
) -> None:
    gateway = start_gateway()
    queue = await bind_queue(amqp, CHANNEL)
    key = new_key()

    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        first = await post(client, key)
        second = await post(client, key)

    assert_first(first, key, "published")
    assert_repeat(second, key, "published")
    [message] = await receive_exactly(queue, key, 1)
    assert path_of(message) == "direct"
    assert json.loads(message.body)["order_id"] == ORDER["order_id"]
    base = gateway.base_url
    assert await metric(base, REPEATS, channel=CHANNEL, ingress="http") == 1
    assert await metric(base, REPEATS, channel=CHANNEL, ingress="amqp") == 0
    # The repeat is not a second accepted event.
    assert await metric(base, ACCEPTED, channel=CHANNEL, status="published") == 1
    assert await metric(base, "breakwater_idempotency_keys") == 1


# -- 2: concurrent duplicates ------------------------------------------------------------------

CONCURRENT = 30


@pytest.mark.timeout(60)
async def test_concurrent_duplicates_are_one_event_the_others_wait_with_409_or_get_its_outcome(
    start_gateway: GatewayFactory,
    fault_proxy: FaultProxy,
    proxy_url: str,
    broker_url: str,
    amqp: AbstractRobustConnection,
) -> None:
    # A long deadline: the first request's publish is held by the partition, not given up.
    gateway = start_gateway(
        broker_url=proxy_url, inbound_broker_url=broker_url, publish_timeout_s="10"
    )
    queue = await bind_queue(amqp, CHANNEL)
    key = new_key()

    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        fault_proxy.partition()
        try:
            requests = [asyncio.create_task(post(client, key)) for _ in range(CONCURRENT)]
            # Every request but the one whose publish the partition holds is answered meanwhile.
            try:
                async with asyncio.timeout(10):
                    while sum(task.done() for task in requests) < CONCURRENT - 1:
                        await asyncio.sleep(0.05)
            except TimeoutError:
                answered = sum(task.done() for task in requests)
                for task in requests:
                    task.cancel()
                await asyncio.gather(*requests, return_exceptions=True)
                raise AssertionError(
                    f"{answered} of {CONCURRENT} answered while the first one's publish was held"
                ) from None
            await asyncio.sleep(0.3)  # nothing else is answered while the first is in flight
            during = [task.result() for task in requests if task.done()]
        finally:
            fault_proxy.heal()
        answers = await asyncio.gather(*requests)
        after = await post(client, key)

    assert len(during) == CONCURRENT - 1
    for response in during:
        assert response.status_code == 409, response.text
        assert response.headers["retry-after"] == "1"
        assert key in response.json()["detail"]
    [first] = [a for a in answers if a.status_code == 202 and REPLAYED not in a.headers]
    assert_first(first, key, "published")
    # The guarantee, however the requests interleave: one new event, every other answer a 409 or
    # the first one's outcome.
    others = [a for a in answers if a is not first]
    assert len(others) == CONCURRENT - 1
    assert all(a.status_code == 409 or a.headers.get(REPLAYED) == "true" for a in others)
    assert_repeat(after, key, "published")
    await receive_exactly(queue, key, 1)
    in_flight = await metric(
        gateway.base_url, REJECTED, channel=CHANNEL, reason="idempotency_in_flight"
    )
    assert in_flight == CONCURRENT - 1


# -- 3: conflicts ------------------------------------------------------------------------------


async def test_a_key_reused_for_another_body_or_channel_is_a_422_and_nothing_is_published(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection
) -> None:
    gateway = start_gateway()
    queue = await bind_queue(amqp)  # every channel
    key = new_key()

    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        first = await post(client, key)
        other_body = await post(client, key, OTHER_ORDER)
        other_channel = await post(client, key, CANCELLATION, "orders.cancelled")
        # Key order and spacing are normalised away: the same event, so a repeat.
        reordered = await client.post(
            f"/v1/events/{CHANNEL}",
            content=json.dumps(dict(reversed(ORDER.items())), indent=2),
            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
        )

    assert_first(first, key, "published")
    for conflict in (other_body, other_channel):
        assert conflict.status_code == 422, conflict.text
        assert REPLAYED not in conflict.headers
        assert key in conflict.json()["detail"]
    assert f"on channel {CHANNEL!r}" in other_channel.json()["detail"]
    assert_repeat(reordered, key, "published")
    [message] = await receive_exactly(queue, key, 1)
    assert message.routing_key == CHANNEL
    assert json.loads(message.body)["order_id"] == ORDER["order_id"]
    base = gateway.base_url
    for channel in (CHANNEL, "orders.cancelled"):
        assert await metric(base, REJECTED, channel=channel, reason="idempotency_conflict") == 1
    assert await metric(base, ACCEPTED, channel="orders.cancelled", status="published") == 0


# -- 4: the stored path ------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_a_repeat_of_a_stored_event_is_answered_stored_and_the_replay_delivers_one_copy(
    start_gateway: GatewayFactory,
    fault_proxy: FaultProxy,
    proxy_url: str,
    broker_url: str,
    amqp: AbstractRobustConnection,
    tmp_path: Path,
) -> None:
    # The outbound broker refuses every connection (rather than a partition, which would hold a
    # timed-out trial publish and deliver it after healing: a known, separate duplicate).
    store_path = str(tmp_path / "stored.db")
    gateway = start_gateway(
        broker_url=proxy_url, inbound_broker_url=broker_url, store_path=store_path, **FAST_BREAKER
    )
    queue = await bind_queue(amqp, CHANNEL)
    key = new_key()
    fault_proxy.reject_new(True)
    fault_proxy.reset()
    try:
        await wait_ready(gateway.base_url, lambda body: not body["broker_connected"], "outage")
        async with httpx.AsyncClient(base_url=gateway.base_url) as client:
            first = await post(client, key)
            second = await post(client, key)
        during = await readyz(gateway.base_url)
    finally:
        fault_proxy.reject_new(False)

    assert_first(first, key, "stored")
    assert_repeat(second, key, "stored")
    assert during["store_depth"] == 1
    [message] = await receive_exactly(queue, key, 1, timeout_s=30)
    assert path_of(message) == "replay"
    await wait_ready(gateway.base_url, drained, "store drained")
    # The key still answers with the first outcome, though the event has been replayed since.
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        assert_repeat(await post(client, key), key, "stored")
    assert await metric(gateway.base_url, REPEATS, channel=CHANNEL, ingress="http") == 2

    # The key was committed with the stored event: on disk, too.
    kill_9(gateway)
    restarted = start_gateway(store_path=store_path)
    async with httpx.AsyncClient(base_url=restarted.base_url) as client:
        assert_repeat(await post(client, key), key, "stored")
    await receive_exactly(queue, key, 0)


# -- 5: the window's end -----------------------------------------------------------------------


async def test_a_retry_after_the_window_is_published_again_with_the_same_message_id(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection
) -> None:
    gateway = start_gateway(idempotency_ttl_s="1")
    queue = await bind_queue(amqp, CHANNEL)
    key = new_key()

    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        first = await post(client, key)
        await asyncio.sleep(1.5)
        late = await post(client, key)
        repeat = await post(client, key)  # within the new use's window

    assert_first(first, key, "published")
    assert_first(late, key, "published")
    assert_repeat(repeat, key, "published")
    copies = await receive_exactly(queue, key, 2)
    assert [m.message_id for m in copies] == [key, key]
    assert await metric(gateway.base_url, REPEATS, channel=CHANNEL, ingress="http") == 1


# -- 6: restarts -------------------------------------------------------------------------------


async def test_keys_survive_a_restart_on_the_same_store(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection, tmp_path: Path
) -> None:
    store_path = str(tmp_path / "kept.db")
    first_gateway = start_gateway(store_path=store_path)
    queue = await bind_queue(amqp, CHANNEL)
    key = new_key()
    async with httpx.AsyncClient(base_url=first_gateway.base_url) as client:
        first = await post(client, key)
    assert_first(first, key, "published")
    first_gateway.signal(signal.SIGTERM)
    assert first_gateway.wait(30) == 0

    second_gateway = start_gateway(store_path=store_path)
    assert await metric(second_gateway.base_url, "breakwater_idempotency_keys") == 1
    async with httpx.AsyncClient(base_url=second_gateway.base_url) as client:
        repeat = await post(client, key)

    assert_repeat(repeat, key, "published")
    await receive_exactly(queue, key, 1)


async def test_a_key_on_disk_survives_kill_9(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection, tmp_path: Path
) -> None:
    """A published event's key reaches the store's file within KEY_WRITE_DELAY_S of the answer;
    from then on kill -9 cannot lose it."""
    store_path = tmp_path / "killed.db"
    gateway = start_gateway(store_path=str(store_path))
    queue = await bind_queue(amqp, CHANNEL)
    key = new_key()
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        first = await post(client, key)
    answered = time.monotonic()
    while key not in keys_on_disk(store_path):
        assert time.monotonic() - answered < 2, "the key was not written within 2 s"
        await asyncio.sleep(0.01)
    written_after_s = time.monotonic() - answered
    kill_9(gateway)

    assert_first(first, key, "published")
    assert written_after_s < KEY_WRITE_DELAY_S + 0.5
    restarted = start_gateway(store_path=str(store_path))
    async with httpx.AsyncClient(base_url=restarted.base_url) as client:
        repeat = await post(client, key)

    assert_repeat(repeat, key, "published")
    await receive_exactly(queue, key, 1)


# -- 7: a kill before the key of a published event is written ---------------------------------


@pytest.mark.timeout(60)
async def test_kill_9_before_the_key_is_written_publishes_the_retry_again(
    start_gateway: GatewayFactory,
    broker_url: str,
    amqp: AbstractRobustConnection,
    tmp_path: Path,
) -> None:
    """The documented degradation: the event is out and answered, its key never reached the
    disk (a crash within KEY_WRITE_DELAY_S of the answer); a retry after the restart is
    published again, with the same message_id (at-least-once)."""
    store_path = tmp_path / "unwritten.db"
    env = {"BREAKWATER_BROKER_URL": broker_url, "BREAKWATER_STORE_PATH": str(store_path)}
    marker = tmp_path / "handed-to-the-store"
    forgetful = CommandGateway.never_writing_keys(env, tmp_path / "forgetful.log", marker)
    queue = await bind_queue(amqp, CHANNEL)
    key = new_key()
    try:
        forgetful.start()
        async with httpx.AsyncClient(base_url=forgetful.base_url) as client:
            first = await post(client, key)
            repeat_in_process = await post(client, key)
            async with asyncio.timeout(5):
                while not marker.exists():
                    await asyncio.sleep(0.02)
        assert marker.read_text() == key  # handed over for writing, never written
        assert key not in keys_on_disk(store_path)
        kill_9(forgetful)
    finally:
        kill_9(forgetful)

    assert_first(first, key, "published")
    assert_repeat(repeat_in_process, key, "published")  # the process itself still knew it
    restarted = start_gateway(store_path=str(store_path))
    async with httpx.AsyncClient(base_url=restarted.base_url) as client:
        retry = await post(client, key)
        repeat = await post(client, key)

    assert_first(retry, key, "published")
    assert_repeat(repeat, key, "published")  # this time the key was written
    copies = await receive_exactly(queue, key, 2)
    assert [m.message_id for m in copies] == [key, key]
    assert {path_of(m) for m in copies} == {"direct"}


# -- 8: AMQP ingress ---------------------------------------------------------------------------

PAYMENTS_IN = "breakwater.in.payments.captured"


@pytest.mark.timeout(60)
async def test_amqp_repeats_are_acked_unpublished_and_a_conflicting_body_is_dead_lettered(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection
) -> None:
    gateway = start_gateway()
    events = await bind_queue(amqp, "payments.captured")
    key = new_key()
    body = json.dumps(PAYMENT).encode()

    await publish_inbound(amqp, "payments.captured", body, message_id=key)
    await publish_inbound(amqp, "payments.captured", body, message_id=key)

    [message] = await receive_exactly(events, key, 1)
    assert path_of(message) == "direct"
    base = gateway.base_url
    await wait_metric(base, 1, REPEATS, channel="payments.captured", ingress="amqp")
    assert await metric(base, REPEATS, channel="payments.captured", ingress="http") == 0
    assert await metric(base, ACCEPTED, channel="payments.captured", status="published") == 1

    other = json.dumps({**PAYMENT, "payment_id": "pay-78"}).encode()
    await publish_inbound(amqp, "payments.captured", other, message_id=key)

    channel = await amqp.channel()
    dead = await channel.get_queue(DEAD_LETTER_QUEUE)
    [dead_lettered] = await collect(dead, 1, keep=lambda m: m.message_id == key)
    error = dead_lettered.headers["x-breakwater-error"]
    error = error.decode() if isinstance(error, bytes) else str(error)
    assert error.startswith("idempotency conflict"), error
    assert key in error
    assert dead_lettered.body == other
    assert dead_lettered.headers["x-breakwater-queue"] == PAYMENTS_IN
    await wait_metric(base, 1, REJECTED, channel="payments.captured", reason="idempotency_conflict")
    await receive_exactly(events, key, 0, quiet_s=0.5)  # the conflicting body was not published

    # All three were acked: with the gateway gone, none is back in the inbound queue.
    gateway.stop()
    inbound = await channel.declare_queue(PAYMENTS_IN, passive=True)
    assert inbound.declaration_result.message_count == 0
    await channel.close()


# -- 9: a refused event leaves no key ----------------------------------------------------------

SMALL_STORE_BYTES = 5000  # about 20 orders.cancelled events


@pytest.mark.timeout(90)
async def test_a_retry_of_an_event_refused_by_a_full_store_is_published_as_new(
    start_gateway: GatewayFactory,
    fault_proxy: FaultProxy,
    proxy_url: str,
    broker_url: str,
    amqp: AbstractRobustConnection,
    tmp_path: Path,
) -> None:
    store_path = str(tmp_path / "full.db")
    gateway = start_gateway(
        broker_url=proxy_url,
        inbound_broker_url=broker_url,
        store_path=store_path,
        store_max_bytes=str(SMALL_STORE_BYTES),
        **FAST_BREAKER,
    )
    queue = await bind_queue(amqp, CHANNEL)
    key, key_after_restart = new_key(), new_key()
    fault_proxy.reject_new(True)
    fault_proxy.reset()
    try:
        await wait_ready(gateway.base_url, lambda body: not body["broker_connected"], "outage")
        async with httpx.AsyncClient(base_url=gateway.base_url) as client:
            for _ in range(200):
                filler = await post(client, new_key(), CANCELLATION, "orders.cancelled")
                if filler.status_code == 503:
                    break
                assert_first(filler, filler.json()["message_id"], "stored")
            else:
                raise AssertionError("the store never filled up")
            refused = [await post(client, key), await post(client, key)]
            refused.append(await post(client, key_after_restart, OTHER_ORDER))
    finally:
        fault_proxy.reject_new(False)

    for response in refused:  # not 409, not 422, not a replayed 202
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) > 0
    await wait_ready(gateway.base_url, drained, "store drained", timeout_s=40)
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        retry = await post(client, key)
    assert_first(retry, key, "published")
    [message] = await receive_exactly(queue, key, 1)
    assert path_of(message) == "direct"
    assert await metric(gateway.base_url, REPEATS, channel=CHANNEL, ingress="http") == 0

    # Nor is a refused event's key on disk: a gateway on the same store takes its retry as new.
    gateway.stop()
    restarted = start_gateway(store_path=store_path)
    async with httpx.AsyncClient(base_url=restarted.base_url) as client:
        retry_after_restart = await post(client, key_after_restart, OTHER_ORDER)
    assert_first(retry_after_restart, key_after_restart, "published")
    await receive_exactly(queue, key_after_restart, 1)
