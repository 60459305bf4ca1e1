"""AMQP ingress: inbound quorum queues, forwarding, and dead-lettering of poison messages."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from app.catalog.default import DEFAULT_CATALOG

from .consumers import bind_queue, collect
from .gateway_process import GatewayProcess

ORDER = DEFAULT_CATALOG["orders.created"].example


async def publish_inbound(
    connection: AbstractRobustConnection, channel_name: str, body: bytes, **properties: object
) -> None:
    channel = await connection.channel(publisher_confirms=True)
    await channel.default_exchange.publish(
        aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=2,
            **properties,  # type: ignore[arg-type]
        ),
        routing_key=f"breakwater.in.{channel_name}",
    )
    await channel.close()


async def test_inbound_queues_are_quorum_queues_with_dead_lettering_and_one_active_consumer(
    start_gateway: Callable[..., GatewayProcess], amqp: AbstractRobustConnection
) -> None:
    start_gateway()
    channel = await amqp.channel()
    for name in DEFAULT_CATALOG:
        # A passive-incompatible redeclare would close the channel: the arguments must match.
        queue = await channel.declare_queue(
            f"breakwater.in.{name}",
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": "breakwater.dlx",
                "x-single-active-consumer": True,
            },
        )
        assert queue.name == f"breakwater.in.{name}"


async def test_inbound_event_is_forwarded_keeping_its_ids(
    start_gateway: Callable[..., GatewayProcess], amqp: AbstractRobustConnection
) -> None:
    start_gateway()
    queue = await bind_queue(amqp, "payments.captured")
    message_id, correlation_id = uuid.uuid4().hex, uuid.uuid4().hex

    await publish_inbound(
        amqp,
        "payments.captured",
        json.dumps(DEFAULT_CATALOG["payments.captured"].example).encode(),
        message_id=message_id,
        correlation_id=correlation_id,
    )

    [message] = await collect(queue, 1)
    assert (message.message_id, message.correlation_id) == (message_id, correlation_id)
    assert message.delivery_mode == 2
    assert message.headers["x-breakwater-path"] == "direct"
    assert message.type == "payments.captured"


async def test_inbound_event_without_ids_gets_generated_ones(
    start_gateway: Callable[..., GatewayProcess], amqp: AbstractRobustConnection
) -> None:
    start_gateway()
    queue = await bind_queue(amqp, "orders.cancelled")
    reason = f"no ids {uuid.uuid4().hex}"

    await publish_inbound(
        amqp, "orders.cancelled", json.dumps({"order_id": "o-1", "reason": reason}).encode()
    )

    [message] = await collect(queue, 1, keep=lambda m: reason.encode() in m.body)
    assert message.message_id
    assert message.correlation_id


async def test_poison_messages_are_dead_lettered_once_with_a_reason_and_the_queue_keeps_flowing(
    start_gateway: Callable[..., GatewayProcess], amqp: AbstractRobustConnection
) -> None:
    start_gateway()
    events = await bind_queue(amqp, "orders.created")
    channel = await amqp.channel()
    dead = await channel.get_queue("breakwater.dead-letter")
    await dead.purge()
    run = uuid.uuid4().hex
    poison = {
        f"{run}-json": b'{"order_id": ',
        f"{run}-model": json.dumps({**ORDER, "total": "1.00"}).encode(),
        f"{run}-utf8": b'{"order_id": "\xff\xfe"}',
    }
    for message_id, body in poison.items():
        await publish_inbound(amqp, "orders.created", body, message_id=message_id)
    good_id = f"{run}-good"
    await publish_inbound(amqp, "orders.created", json.dumps(ORDER).encode(), message_id=good_id)

    [forwarded] = await collect(events, 1)
    assert forwarded.message_id == good_id
    dead_lettered = await collect(dead, 3, keep=lambda m: (m.message_id or "").startswith(run))
    reasons = {m.message_id: str(m.headers["x-breakwater-error"]) for m in dead_lettered}
    assert set(reasons) == set(poison)
    assert "json" in reasons[f"{run}-json"].lower()
    assert "does not equal the sum" in reasons[f"{run}-model"]
    for message in dead_lettered:
        assert message.body == poison[message.message_id or ""]
        assert message.headers["x-breakwater-queue"] == "breakwater.in.orders.created"
    inbound = await channel.declare_queue("breakwater.in.orders.created", passive=True)
    assert inbound.declaration_result.message_count == 0


async def consumers_of(connection: AbstractRobustConnection, queue: str) -> int:
    """Consumers of `queue`; 0 while it does not exist (a passive declare closes its channel)."""
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
    except aio_pika.exceptions.ChannelClosed:
        return 0
    consumers = int(declared.declaration_result.consumer_count or 0)
    await channel.close()
    return consumers


async def until_consumed(connection: AbstractRobustConnection, queue: str) -> None:
    async with asyncio.timeout(20):
        while not await consumers_of(connection, queue):
            await asyncio.sleep(0.1)


async def test_an_inbound_queue_deleted_under_the_gateway_is_declared_and_consumed_again(
    start_gateway: Callable[..., GatewayProcess], amqp: AbstractRobustConnection
) -> None:
    gateway = start_gateway()
    name = "orders.cancelled"
    inbound = f"breakwater.in.{name}"
    await until_consumed(amqp, inbound)
    channel = await amqp.channel()
    await channel.queue_delete(inbound)  # the broker cancels the gateway's consumer
    await channel.close()

    await until_consumed(amqp, inbound)
    queue = await bind_queue(amqp, name)
    message_id = uuid.uuid4().hex
    await publish_inbound(
        amqp, name, json.dumps(DEFAULT_CATALOG[name].example).encode(), message_id=message_id
    )
    [message] = await collect(queue, 1)
    assert message.message_id == message_id
    assert "cancelled consumer" in gateway.logs()
