"""AMQP ingress starts queue by queue after the gateway reported startup; a broker error half-way
must cost a retry, not end the gateway (it did: a node stopped during the start killed the whole
process, HTTP ingress and the replay of stored events with it)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import pytest
from faststream.rabbit import QueueType, RabbitQueue

from app.inbound import InboundBroker

pytestmark = pytest.mark.integration


@pytest.fixture
async def queue_names(broker_url: str) -> AsyncIterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    names = (f"start-test-a-{suffix}", f"start-test-b-{suffix}")
    yield names
    connection = await aio_pika.connect(broker_url)
    async with connection:
        for name in names:
            channel = await connection.channel()
            await channel.queue_delete(name)


async def test_a_start_cut_short_by_the_broker_is_retried_until_it_consumes(
    broker_url: str, queue_names: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    second = queue_names[1]
    # The second queue exists with other arguments, so the broker refuses its declaration after
    # the first subscriber has started: the state of a start interrupted half-way.
    connection = await aio_pika.connect(broker_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(second, durable=True)

    received: dict[str, asyncio.Future[bytes]] = {
        name: asyncio.get_running_loop().create_future() for name in queue_names
    }
    broker = InboundBroker([broker_url], fail_fast=False)
    for name in queue_names:
        queue = RabbitQueue(name, queue_type=QueueType.QUORUM, durable=True)

        def handler_for(name: str) -> Callable[[bytes], Awaitable[None]]:
            async def handle(body: bytes) -> None:
                if not received[name].done():
                    received[name].set_result(body)

            return handle

        broker.subscriber(queue)(handler_for(name))

    caplog.set_level(logging.WARNING, logger="breakwater.inbound")
    starting = asyncio.create_task(broker.start())
    try:
        async with asyncio.timeout(15):
            while "AMQP ingress start interrupted" not in caplog.text:
                await asyncio.sleep(0.05)
        assert not starting.done(), "the start gave up instead of retrying"

        connection = await aio_pika.connect(broker_url)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(second)  # the broker takes the declaration again

        async with asyncio.timeout(15):
            await starting  # raises if the start failed for good

        connection = await aio_pika.connect(broker_url)
        async with connection:
            channel = await connection.channel()
            for name in queue_names:
                await channel.default_exchange.publish(
                    aio_pika.Message(name.encode()), routing_key=name
                )
        async with asyncio.timeout(15):
            bodies = [await received[name] for name in queue_names]
        assert bodies == [name.encode() for name in queue_names]
    finally:
        starting.cancel()
        await broker.stop()
