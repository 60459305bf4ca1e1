"""Names and declarations of everything the gateway creates on a broker."""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange

EVENTS_EXCHANGE = "breakwater.events"
UNROUTED = "breakwater.unrouted"  # both the fanout alternate exchange and its queue
DEAD_LETTER_EXCHANGE = "breakwater.dlx"
DEAD_LETTER_QUEUE = "breakwater.dead-letter"

# An event nobody has bound for yet is parked in `breakwater.unrouted` instead of being returned:
# it is kept (not lost) and does not stall its channel behind a return.
EVENTS_EXCHANGE_ARGUMENTS: dict[str, Any] = {"alternate-exchange": UNROUTED}


# Inbound queues are quorum queues (they survive a broker node loss) that dead-letter to
# `breakwater.dlx`. They have no `x-delivery-limit`: in RabbitMQ 3.x a requeue counts as a delivery,
# so a limit would dead-letter *valid* messages that are requeued while neither the broker nor the
# store can take them. The gateway dead-letters invalid messages itself and never crashes on one.
INBOUND_QUEUE_ARGUMENTS: dict[str, Any] = {
    "x-queue-type": "quorum",
    "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
}


async def declare_outbound(channel: AbstractChannel) -> AbstractExchange:
    """Declare `breakwater.events` with its alternate exchange and queue; return the exchange."""
    unrouted = await channel.declare_exchange(UNROUTED, aio_pika.ExchangeType.FANOUT, durable=True)
    unrouted_queue = await channel.declare_queue(UNROUTED, durable=True)
    await unrouted_queue.bind(unrouted)
    return await channel.declare_exchange(
        EVENTS_EXCHANGE,
        aio_pika.ExchangeType.TOPIC,
        durable=True,
        arguments=EVENTS_EXCHANGE_ARGUMENTS,
    )


async def declare_inbound_queue(channel: AbstractChannel, name: str) -> None:
    await channel.declare_queue(name, durable=True, arguments=INBOUND_QUEUE_ARGUMENTS)


async def declare_dead_letter(channel: AbstractChannel) -> AbstractExchange:
    """Declare `breakwater.dlx` (fanout) and the queue `breakwater.dead-letter` bound to it."""
    exchange = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    queue = await channel.declare_queue(DEAD_LETTER_QUEUE, durable=True)
    await queue.bind(exchange)
    return exchange
