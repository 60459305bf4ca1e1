"""AMQP ingress: one quorum queue `breakwater.in.<channel>` per channel on the inbound broker.

A valid message is acked only once the outbound broker confirmed it or the store holds it. An invalid
one is copied to the dead-letter exchange with `x-breakwater-error` and then acked: it is never
requeued in a loop. When neither the broker nor the store can take a valid message it is nacked
with requeue and stays in its queue.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any

import aio_pika
import pamqp.encode
from faststream import AckPolicy
from faststream.message import StreamMessage
from faststream.rabbit import (
    Channel,
    ExchangeType,
    QueueType,
    RabbitBroker,
    RabbitExchange,
    RabbitMessage,
    RabbitQueue,
)
from pydantic import ValidationError

from .channels import CATALOG, parse_payload
from .channels import Channel as EventChannel
from .delivery_order import DeliveryOrder
from .events import CONTENT_TYPE, ERROR_HEADER, Event
from .outbound import Unroutable
from .publisher import ResilientPublisher
from .store import StoreError
from .topology import DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE

log = logging.getLogger("breakwater.amqp")

# Back-off before a nacked message comes round again, so a full store is not a hot loop.
REQUEUE_DELAY_S = 1.0
MAX_ERROR_TEXT = 2000

DEAD_LETTER = RabbitExchange(DEAD_LETTER_EXCHANGE, type=ExchangeType.FANOUT, durable=True)
DEAD_LETTER_Q = RabbitQueue(DEAD_LETTER_QUEUE, durable=True)


def _raw_body(message: StreamMessage[Any]) -> bytes:
    # FastStream would json-decode before the handler runs; a malformed body must reach our code
    # so that it can be dead-lettered with a reason instead of sitting unacked.
    return message.body


def rewritable(value: Any) -> Any:
    """A header value as the AMQP client can write it again, for the dead-letter copy.

    pamqp reads some values that other clients write but cannot write them back: a long string that
    is not UTF-8 (read as bytes), a double beyond a 32-bit float's range (it writes floats as 32-bit),
    a decimal whose mantissa does not fit its signed range. Such a value is kept as a byte array or
    as its text; left as it was, the copy would fail and the message be requeued every second forever.
    """
    if isinstance(value, dict):
        return {key: rewritable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rewritable(item) for item in value]
    if isinstance(value, bytes):
        return bytearray(value)
    try:
        pamqp.encode.encode_table_value(value)
    except (TypeError, ValueError, OverflowError, struct.error):
        return repr(value)
    return value


def inbound_queue(channel: EventChannel) -> RabbitQueue:
    return RabbitQueue(
        channel.inbound_queue,
        queue_type=QueueType.QUORUM,
        durable=True,
        arguments={"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE},
    )


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)[:MAX_ERROR_TEXT]


class AmqpIngress:
    def __init__(
        self,
        broker: RabbitBroker,
        publisher: ResilientPublisher,
        *,
        deadline_s: float,
        prefetch: int,
    ) -> None:
        self._broker = broker
        self._publisher = publisher
        self._deadline_s = deadline_s
        self._dead_letter_ready = False
        self._order = DeliveryOrder()
        self.on_rejected: Callable[[str, str], None] = lambda channel, reason: None
        self.on_accepted: Callable[[str, str], None] = lambda channel, outcome: None
        for channel in CATALOG:
            self._subscribe(channel, prefetch)

    def _subscribe(self, channel: EventChannel, prefetch: int) -> None:
        async def handle(message: RabbitMessage) -> None:
            try:
                await self.forward(channel, message)
            except Exception:
                # A bug must not leave the message unacked (stuck until the connection drops) nor
                # dead-letter a valid event: put it back and say so loudly.
                log.exception(
                    "forwarding a message from %s failed; requeued", channel.inbound_queue
                )
                await self._requeue_later(message)

        self._broker.subscriber(
            inbound_queue(channel),
            channel=Channel(prefetch_count=prefetch),
            ack_policy=AckPolicy.MANUAL,
            # FastStream would otherwise publish the handler's result (an empty message) to the
            # queue named by `reply_to`: any queue of the inbound broker, chosen by the producer.
            no_reply=True,
            decoder=_raw_body,
            title=f"{channel.inbound_queue}:consume",
            description=(
                f"{channel.summary} Producers publish `{channel.name}` payloads to this durable"
                " quorum queue on the inbound broker."
            ),
        )(handle)

    async def ensure_dead_letter_topology(self) -> None:
        if self._dead_letter_ready:
            return
        exchange = await self._broker.declare_exchange(DEAD_LETTER)
        queue = await self._broker.declare_queue(DEAD_LETTER_Q)
        await queue.bind(exchange)
        self._dead_letter_ready = True

    async def forward(self, channel: EventChannel, message: RabbitMessage) -> None:
        raw: aio_pika.IncomingMessage = message.raw_message
        rejection: str | None = None
        async with self._order.turn(raw.channel, raw.delivery_tag or 0):
            try:
                payload = parse_payload(channel.model, raw.body)
            except ValidationError as exc:
                rejection = describe_validation_error(exc)
            else:
                event = Event.accept(
                    channel.name,
                    payload.model_dump_json().encode(),
                    message_id=raw.message_id,
                    correlation_id=raw.correlation_id,
                )
                # Started inside the turn: tasks run in creation order, so the publisher takes
                # the events in delivery order; the turn is not held while the publish runs.
                submitted = asyncio.create_task(self._publisher.submit(event))
        if rejection is not None:
            await self._dead_letter(channel, message, rejection, category="invalid_payload")
            return
        try:
            outcome = await submitted
        except Unroutable as exc:
            await self._dead_letter(channel, message, f"unroutable: {exc}", category="unroutable")
            return
        except StoreError as exc:
            log.warning(
                "cannot take %s from %s now (%s); requeued",
                event.message_id,
                channel.inbound_queue,
                exc,
            )
            self.on_rejected(channel.name, "store_unavailable")
            await self._requeue_later(message)
            return
        await message.ack()
        self.on_accepted(channel.name, outcome)

    async def _requeue_later(self, message: RabbitMessage) -> None:
        # The pause keeps a full store or a failing dead-letter path from becoming a hot loop.
        await asyncio.sleep(REQUEUE_DELAY_S)
        await message.nack(requeue=True)

    async def _dead_letter(
        self, channel: EventChannel, message: RabbitMessage, reason: str, *, category: str
    ) -> None:
        """Copy the message to the dead-letter exchange with the reason, then ack the original.

        `reject()` cannot add headers, hence the copy. If the copy fails, the original is nacked
        back into its queue: a poison message is never lost on the way to the dead-letter queue.
        """
        raw: aio_pika.IncomingMessage = message.raw_message
        headers = rewritable(dict(raw.headers or {}))
        headers[ERROR_HEADER] = reason
        headers["x-breakwater-queue"] = channel.inbound_queue
        try:
            await self.ensure_dead_letter_topology()
            async with asyncio.timeout(self._deadline_s):
                await self._broker.publish(
                    raw.body,
                    exchange=DEAD_LETTER,
                    routing_key=channel.inbound_queue,
                    headers=headers,
                    persist=True,
                    message_id=raw.message_id,
                    correlation_id=raw.correlation_id,
                    content_type=raw.content_type or CONTENT_TYPE,
                    message_type=channel.name,
                )
        except Exception as exc:
            log.warning(
                "could not dead-letter a message from %s (%s); requeued", channel.inbound_queue, exc
            )
            await self._requeue_later(message)
            return
        await message.ack()
        self.on_rejected(channel.name, category)
