"""Start without a broker, and SIGTERM with work in flight."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import aio_pika
import httpx
from aio_pika.abc import AbstractRobustConnection

from app.catalog.default import DEFAULT_CATALOG
from tests.chaos.helpers import delete_queue
from tests.support.fault_proxy import FaultProxy

from .consumers import bind_queue, collect, drain_by_consuming, drain_now
from .gateway_process import GatewayProcess, free_port

CANCEL = DEFAULT_CATALOG["orders.cancelled"].example


def test_gateway_serves_and_stores_when_no_broker_answers(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    gateway = start_gateway(wait_connected=False, broker_url=nowhere)

    started = time.monotonic()
    response = httpx.post(f"{gateway.base_url}/v1/events/orders.cancelled", json=CANCEL)
    elapsed = time.monotonic() - started

    assert response.status_code == 202
    assert response.json()["status"] == "stored"
    assert elapsed < 2.0 + 0.5  # the publish deadline plus a margin, never a hang
    ready = httpx.get(f"{gateway.base_url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["broker_connected"] is False
    assert ready.json()["store_depth"] == 1
    time.sleep(3.5)  # past the inbound watcher's grace period
    logs = gateway.logs()
    assert logs.count("outbound broker") >= 1
    assert logs.count("accepting events into the fallback store") == 1
    assert logs.count("inbound broker") >= 1
    assert "Traceback" not in logs
    assert "guest:guest" not in logs


async def test_sigterm_with_http_requests_in_flight_loses_no_accepted_event(
    start_gateway: Callable[..., GatewayProcess], amqp: AbstractRobustConnection
) -> None:
    gateway = start_gateway()
    queue = await bind_queue(amqp, "orders.cancelled")
    run = uuid.uuid4().hex
    accepted: list[str] = []

    async def send(client: httpx.AsyncClient, i: int) -> None:
        try:
            response = await client.post(
                "/v1/events/orders.cancelled",
                json={"order_id": f"{run}-{i}", "reason": "sigterm test"},
                headers={"Idempotency-Key": f"{run}-{i}"},
            )
        except httpx.HTTPError:
            return  # refused after the listener closed: never accepted, nothing to deliver
        if response.status_code == 202:
            accepted.append(response.json()["message_id"])

    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=gateway.base_url, limits=limits, timeout=30) as client:
        sends = [asyncio.create_task(send(client, i)) for i in range(600)]
        while len(accepted) < 50:
            await asyncio.sleep(0.01)
        gateway.signal(signal.SIGTERM)
        await asyncio.gather(*sends)

    assert gateway.wait(timeout=30) == 0
    assert len(accepted) >= 50
    delivered = await collect(
        queue, len(accepted), keep=lambda m: (m.message_id or "").startswith(run)
    )
    assert {m.message_id for m in delivered} == set(accepted)
    assert "Traceback" not in gateway.logs()


async def test_sigterm_with_amqp_messages_in_flight_loses_none(
    start_gateway: Callable[..., GatewayProcess], amqp: AbstractRobustConnection
) -> None:
    gateway = start_gateway()
    events = await bind_queue(amqp, "orders.cancelled")
    channel = await amqp.channel(publisher_confirms=True)
    inbound = await channel.get_queue("breakwater.in.orders.cancelled")
    run = uuid.uuid4().hex
    ids = {f"{run}-{i}" for i in range(2000)}
    await asyncio.gather(
        *(
            channel.default_exchange.publish(
                aio_pika.Message(
                    json.dumps(CANCEL).encode(), message_id=message_id, delivery_mode=2
                ),
                routing_key="breakwater.in.orders.cancelled",
            )
            for message_id in sorted(ids)
        )
    )
    early = await collect(events, 100, keep=lambda m: (m.message_id or "").startswith(run))

    gateway.signal(signal.SIGTERM)
    assert gateway.wait(timeout=30) == 0

    forwarded = {m.message_id for m in await drain_now(events)}
    left_inbound = {m.message_id for m in await drain_by_consuming(inbound)}
    seen = {m.message_id for m in early} | forwarded | left_inbound
    assert ids - seen == set()  # each one forwarded, or still in its inbound queue
    assert forwarded  # the shutdown did let in-flight forwarding finish
    assert "Traceback" not in gateway.logs()


def test_sigterm_during_a_partition_is_not_slower_with_more_channels(
    start_gateway: Callable[..., GatewayProcess],
    fault_proxy: FaultProxy,
    vhost: str,
    broker_url: str,
    tmp_path: Path,
) -> None:
    """Both links cut (a partition, not a closed connection): every broker call at shutdown waits
    out its bound. Cancelling twelve consumers one after the other took twelve bounds (5 s each);
    side by side it takes one."""
    catalog = tmp_path / "catalog.yaml"
    summary, payload = "A channel among many.", {"type": "object"}
    channels = [
        {"name": f"partition.test{n}", "summary": summary, "payload": payload, "examples": [{}]}
        for n in range(12)
    ]
    catalog.write_text(json.dumps({"channels": channels}))
    url = f"amqp://guest:guest@127.0.0.1:{fault_proxy.port}/{vhost}"
    gateway = start_gateway(broker_url=url, inbound_broker_url=url, catalog=str(catalog))
    assert httpx.get(f"{gateway.base_url}/readyz").json()["broker_connected"] is True
    deadline = time.monotonic() + 20
    while httpx.get(f"{gateway.base_url}/metrics").text.count('state="standby"} 1.0') < 12:
        assert time.monotonic() < deadline, "AMQP ingress is not consuming the twelve queues"
        time.sleep(0.1)

    fault_proxy.partition()
    started = time.monotonic()
    gateway.signal(signal.SIGTERM)
    assert gateway.wait(60) == 0, gateway.logs()[-2000:]
    took = time.monotonic() - started
    fault_proxy.heal()
    # Two bounds (the cancels, the ack drains) and the outbound close; 12 x 5 s before (35 s).
    for channel in channels:
        delete_queue(broker_url, f"breakwater.in.{channel['name']}")
    assert took < 20, f"SIGTERM took {took:.1f}s with the broker partitioned"
    assert "breakwater stopped" in gateway.logs()
