"""A consumer's view: a private queue bound to `breakwater.events`, read until what we expect is there."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from app.broker.topology import EVENTS_EXCHANGE, EVENTS_EXCHANGE_ARGUMENTS, UNROUTED


async def bind_queue(connection: AbstractRobustConnection, routing_key: str = "#") -> AbstractQueue:
    channel = await connection.channel()
    await channel.declare_exchange(UNROUTED, aio_pika.ExchangeType.FANOUT, durable=True)
    exchange = await channel.declare_exchange(
        EVENTS_EXCHANGE,
        aio_pika.ExchangeType.TOPIC,
        durable=True,
        arguments=EVENTS_EXCHANGE_ARGUMENTS,
    )
    # Exclusive: gone with the test's connection; not auto-delete, which would drop it (and what it
    # holds) as soon as one `collect` stops consuming.
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key)
    return queue


async def collect(
    queue: AbstractQueue,
    count: int,
    *,
    timeout: float = 15.0,  # noqa: ASYNC109 - a test helper's own bound
    keep: Callable[[AbstractIncomingMessage], bool] = lambda message: True,
) -> list[AbstractIncomingMessage]:
    """Read until `count` kept messages arrived (acking all), or fail after `timeout`."""
    got: list[AbstractIncomingMessage] = []
    async with asyncio.timeout(timeout):
        async with queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                if keep(message):
                    got.append(message)
                if len(got) >= count:
                    break
    return got


async def drain_now(queue: AbstractQueue) -> list[AbstractIncomingMessage]:
    """Everything currently in the queue, without waiting for more."""
    got = []
    while (message := await queue.get(fail=False, no_ack=True)) is not None:
        got.append(message)
    return got


async def drain_by_consuming(
    queue: AbstractQueue, quiet_s: float = 1.0
) -> list[AbstractIncomingMessage]:
    """Everything in a queue that takes no `basic.get` (a quorum queue with single active
    consumer): consumed and acked until nothing has come for `quiet_s`."""
    got: list[AbstractIncomingMessage] = []
    async with queue.iterator() as messages:
        while True:
            try:
                async with asyncio.timeout(quiet_s):
                    message = await anext(messages)
            except TimeoutError:
                return got
            await message.ack()
            got.append(message)
