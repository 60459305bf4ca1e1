"""Consumers and operators declare things: the gateway keeps working with what it finds.

RabbitMQ never changes an existing object's arguments; a consumer (or a generated client) that
declared `breakwater.events` plainly, or an inbound queue as a classic queue, used to keep the
gateway's links down forever with PRECONDITION_FAILED. Now the gateway adopts such an object as it
is, says what that costs once (log, /readyz, status page, metric), and goes on publishing and
consuming. Each test runs in a vhost of its own, deleted afterwards.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import httpx
import pytest

from app.broker.topology import EVENTS_EXCHANGE
from app.catalog.default import DEFAULT_CATALOG

from .conftest import RABBITMQCTL
from .consumers import collect
from .gateway_process import GatewayProcess

pytestmark = pytest.mark.integration

ORDER = DEFAULT_CATALOG["orders.created"].example
CANCELLED = DEFAULT_CATALOG["orders.cancelled"].example


def ctl(*args: str) -> None:
    subprocess.run([RABBITMQCTL, *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
async def foreign_vhost() -> AsyncIterator[str]:
    """A vhost where a consumer got there first: `breakwater.events` without its alternate
    exchange, and the inbound queue of `orders.cancelled` as a classic queue."""
    name = f"breakwater-foreign-{uuid.uuid4().hex[:8]}"
    ctl("add_vhost", name)
    ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    url = f"amqp://guest:guest@127.0.0.1:5672/{name}"
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    await channel.declare_queue("breakwater.in.orders.cancelled", durable=True)
    await connection.close()
    try:
        yield url
    finally:
        ctl("delete_vhost", name)


async def test_a_gateway_adopts_objects_declared_with_other_arguments(
    start_gateway: Callable[..., GatewayProcess], foreign_vhost: str
) -> None:
    connection = await aio_pika.connect(foreign_vhost)
    channel = await connection.channel()
    orders = await channel.declare_queue(exclusive=True)
    await orders.bind(EVENTS_EXCHANGE, "orders.*")

    gateway = start_gateway(broker_url=foreign_vhost)

    # /readyz turns ready once the outbound link is up; the inbound link declares its queues on
    # its own connection, so its mismatch may be reported a moment later.
    ready = _ready_when_reported(gateway, "breakwater.in.orders.cancelled")
    assert ready["ready"] is True
    assert ready["broker_connected"] is True
    mismatches: list[str] = ready["topology_mismatches"]
    [exchange] = [line for line in mismatches if line.startswith(f"exchange {EVENTS_EXCHANGE}")]
    assert "alternate-exchange" in exchange
    assert "refused (HTTP 502, AMQP dead-letter)" in exchange
    [queue] = [line for line in mismatches if "breakwater.in.orders.cancelled" in line]
    assert "inequivalent arg" in queue

    # Publishing goes on to the exchange as it is: bound events arrive ...
    published = httpx.post(f"{gateway.base_url}/v1/events/orders.created", json=ORDER)
    assert published.json()["status"] == "published"
    # ... and one nobody is bound for is refused with the reason, not parked and not lost.
    unrouted = httpx.post(f"{gateway.base_url}/v1/events/payments.captured", json=_payment())
    assert unrouted.status_code == 502, unrouted.text
    # AMQP ingress consumes the classic queue as it is.
    await channel.default_exchange.publish(
        aio_pika.Message(json.dumps(CANCELLED).encode(), message_id="via-classic-queue"),
        routing_key="breakwater.in.orders.cancelled",
    )
    received = {message.type: message for message in await collect(orders, 2)}
    assert set(received) == {"orders.created", "orders.cancelled"}
    assert received["orders.cancelled"].message_id == "via-classic-queue"

    metrics = httpx.get(f"{gateway.base_url}/metrics").text
    assert (
        'breakwater_topology_mismatch{kind="exchange",link="outbound",name="breakwater.events"} 1.0'
        in metrics
    )
    page = httpx.get(gateway.base_url + "/").text
    assert "Broker objects declared by someone else" in page
    assert gateway.logs().count(f"exchange {EVENTS_EXCHANGE} exists with other arguments") == 1
    await connection.close()


def _ready_when_reported(gateway: GatewayProcess, name: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        ready = httpx.get(f"{gateway.base_url}/readyz").json()
        if any(name in line for line in ready.get("topology_mismatches", [])):
            return ready
        if time.monotonic() > deadline:
            raise AssertionError(f"no mismatch for {name} on /readyz within {timeout}s: {ready}")
        time.sleep(0.05)


def _payment() -> dict[str, Any]:
    return dict(DEFAULT_CATALOG["payments.captured"].example)


async def test_a_gateway_on_its_own_topology_reports_no_mismatch(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gateway = start_gateway()

    ready = httpx.get(f"{gateway.base_url}/readyz").json()

    assert "topology_mismatches" not in ready
    assert "breakwater_topology_mismatch{" not in httpx.get(f"{gateway.base_url}/metrics").text


async def test_an_inbound_queue_from_before_single_active_consumer_is_shared_and_said_so(
    start_gateway: Callable[..., GatewayProcess], foreign_vhost: str
) -> None:
    """The queue as gateways before single active consumer declared it: every replica consumes
    it. The gateway consumes it as it is and says, once, that order across replicas is gone."""
    queue_name = "breakwater.in.orders.created"
    connection = await aio_pika.connect(foreign_vhost)
    channel = await connection.channel()
    arguments = {"x-queue-type": "quorum", "x-dead-letter-exchange": "breakwater.dlx"}
    await channel.declare_queue(queue_name, durable=True, arguments=arguments)
    events = await channel.declare_queue(exclusive=True)

    gateway = start_gateway(broker_url=foreign_vhost)
    await events.bind(EVENTS_EXCHANGE, "orders.created")

    mismatches = httpx.get(f"{gateway.base_url}/readyz").json()["topology_mismatches"]
    [mismatch] = [line for line in mismatches if line.startswith(f"queue {queue_name} ")]
    assert mismatch.startswith(f"queue {queue_name} exists with other arguments")
    assert "x-single-active-consumer" in mismatch
    assert "its events' order across replicas is not kept" in mismatch
    metrics = httpx.get(f"{gateway.base_url}/metrics").text
    assert f'breakwater_inbound_consumer{{queue="{queue_name}",state="shared"}} 1.0' in metrics
    # The fixture's classic queue differs first in another argument: nobody can tell.
    assert 'queue="breakwater.in.orders.cancelled",state="unknown"} 1.0' in metrics
    assert 'queue="breakwater.in.payments.captured",state="standby"} 1.0' in metrics
    page = httpx.get(gateway.base_url + "/").text
    assert "Shared" in page
    assert "Standing by" in page
    assert gateway.logs().count(f"queue {queue_name} exists with other arguments") == 1

    await channel.default_exchange.publish(
        aio_pika.Message(json.dumps(ORDER).encode(), message_id="before-sac"),
        routing_key=queue_name,
    )
    [forwarded] = await collect(events, 1)
    assert forwarded.message_id == "before-sac"
    metrics = httpx.get(f"{gateway.base_url}/metrics").text
    assert f'breakwater_inbound_consumer{{queue="{queue_name}",state="shared"}} 1.0' in metrics
    await connection.close()
