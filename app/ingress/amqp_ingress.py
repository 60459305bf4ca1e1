"""AMQP ingress: one quorum queue `breakwater.in.<channel>` per channel on the inbound broker.

A valid message is acked only once the outbound broker confirmed it or the store holds it. An invalid
one is copied to the dead-letter exchange with `x-breakwater-error` and then acked: it is never
requeued in a loop. When neither the broker nor the store can take a valid message it is nacked
with requeue and stays in its queue.

Order: deliveries reach `forward` in delivery order (see `inbound`), and `forward` hands the event to
the publisher before its first await, so acceptance order is delivery order per queue. Publishes are
pipelined (up to the prefetch); acks go out in batches once confirmed (see `acks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import struct
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import aio_pika
import pamqp.encode
from aiormq.abc import DeliveredMessage
from faststream import AckPolicy
from faststream.message import StreamMessage
from faststream.rabbit import (
    Channel,
    ExchangeType,
    QueueType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
)

from ..broker.link import redact
from ..broker.topology import DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, inbound_queue_arguments
from ..catalog import Catalog, InvalidPayload
from ..catalog import Channel as EventChannel
from ..cloudevents.attributes import InvalidCloudEvent
from ..cloudevents.stamping import NO_CLOUDEVENTS, Stamper, message_attributes
from ..events import CONTENT_TYPE, ERROR_HEADER, SOURCE_QUEUE_HEADER, Event, Headers
from ..outbound.connection import Unroutable
from ..outbound.publisher import Outcome
from ..store.fallback import StoreError
from ..tracing.context import producer_context
from .acks import AckWindow
from .amqp_decoding import undecodable
from .idempotency import IdempotentPublisher, KeyConflict
from .inbound import InboundLink, SpecBroker

if TYPE_CHECKING:
    from faststream.rabbit.schemas.queue import QuorumQueueArgs

log = logging.getLogger("breakwater.amqp")

# How the dead-letter reason of a message that reuses a message_id for another body begins.
IDEMPOTENCY_CONFLICT = "idempotency conflict:"
# Back-off before a nacked message comes round again, so a full store is not a hot loop.
REQUEUE_DELAY_S = 1.0

DEAD_LETTER = RabbitExchange(DEAD_LETTER_EXCHANGE, type=ExchangeType.FANOUT, durable=True)
DEAD_LETTER_Q = RabbitQueue(DEAD_LETTER_QUEUE, durable=True)


async def _raw_body(message: StreamMessage[Any]) -> bytes:
    # FastStream would json-decode before the handler runs; a malformed body must reach our code
    # so that it can be dead-lettered with a reason instead of sitting unacked. A coroutine, not a
    # plain function: FastStream runs a plain decoder in a worker thread, a hop per message.
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


def inbound_queue(channel: EventChannel, *, single_active_consumer: bool = True) -> RabbitQueue:
    """The inbound queue as FastStream describes it (for the AsyncAPI document); the same
    arguments as `topology.inbound_queue_arguments`, which the inbound link declares."""
    arguments = inbound_queue_arguments(single_active_consumer=single_active_consumer)
    arguments.pop("x-queue-type")  # FastStream adds it from queue_type
    return RabbitQueue(
        channel.inbound_queue,
        queue_type=QueueType.QUORUM,
        durable=True,
        arguments=cast("QuorumQueueArgs", arguments),
    )


class AmqpIngress:
    """Forwards each delivery of the inbound queues."""

    def __init__(
        self,
        publisher: IdempotentPublisher,
        *,
        deadline_s: float,
        stamper: Stamper = NO_CLOUDEVENTS,
    ) -> None:
        self._publisher = publisher
        self._stamper = stamper
        self._deadline_s = deadline_s
        self.link: InboundLink | None = None
        self.on_rejected: Callable[[str, str], None] = lambda channel, reason: None
        self.on_accepted: Callable[[str, str], None] = lambda channel, outcome: None
        self.on_deprecated: Callable[[str], None] = lambda channel: None
        self.on_repeat: Callable[[str, str], None] = lambda channel, ingress: None
        self.on_withdrawn: Callable[[str], None] = lambda channel: None
        self._withdrawing: set[asyncio.Task[None]] = set()
        # The trace context an event takes from its message's headers (app/tracing).
        self.trace_context: Callable[[Mapping[str, Any] | None], Headers] = producer_context

    async def forward(
        self, channel: EventChannel, window: AckWindow, tag: int, message: DeliveredMessage
    ) -> None:
        try:
            await self._forward(channel, window, message, tag)
        except Exception:
            # A bug must not leave the message unsettled (its acks and those after it would wait
            # for it) nor dead-letter a valid event: put it back and say so loudly.
            log.exception("forwarding a message from %s failed; requeued", channel.inbound_queue)
            await self._requeue_later(window, tag)

    async def _forward(
        self, channel: EventChannel, window: AckWindow, message: DeliveredMessage, tag: int
    ) -> None:
        marker = undecodable(message.header.properties.headers)
        if marker is not None:
            await self._dead_letter(
                channel, window, tag, message, marker.reason, "undecodable_properties"
            )
            return
        try:
            normalised = channel.payload.validate(message.body)
        except InvalidPayload as exc:
            await self._dead_letter(channel, window, tag, message, exc.reason, "invalid_payload")
            return
        properties = message.header.properties
        event = Event.accept(
            channel.name,
            normalised,
            message_id=properties.message_id,
            correlation_id=properties.correlation_id,
            headers=self.trace_context(properties.headers),
        )
        keyed = properties.message_id is not None
        if self._stamper.applies_to(channel.name):
            try:
                sent = message_attributes(properties.headers, properties.content_type, channel.name)
            except InvalidCloudEvent as exc:
                await self._dead_letter(
                    channel, window, tag, message, str(exc), "invalid_cloudevent"
                )
                return
            if sent is not None:
                event = dataclasses.replace(event, message_id=sent.id)
                keyed = True
            event = self._stamper.stamp(event, sent)
        # No await before this one: the publisher takes the events in delivery order. A message
        # whose message_id is being forwarded right now (a producer's retried publish) waits for
        # it, then is acked as a repeat. A CloudEvent's id is its message_id.
        try:
            accepted = await self._publisher.submit(event, keyed=keyed, in_flight="wait")
        except asyncio.CancelledError:
            # aiormq cancels a consumer's tasks when their channel closes (the broker went away,
            # say): this delivery can no longer be acked, and its event may be in the store.
            if window.crash_safe:
                self._withdraw_soon(channel, event)
            raise
        except KeyConflict as exc:
            reason = f"{IDEMPOTENCY_CONFLICT} {exc.reason('message_id')}"
            await self._dead_letter(channel, window, tag, message, reason, "idempotency_conflict")
            return
        except Unroutable as exc:
            reason = f"unroutable: {exc}"
            await self._dead_letter(channel, window, tag, message, reason, "unroutable")
            return
        except StoreError as exc:
            log.warning(
                "cannot take %s from %s now (%s); requeued",
                event.message_id,
                channel.inbound_queue,
                exc,
            )
            self.on_rejected(channel.name, "store_unavailable")
            await self._requeue_later(window, tag)
            return
        if (
            accepted.outcome is Outcome.stored
            and not accepted.repeat
            and window.crash_safe
            and window.is_void(tag)
        ):
            await self._withdraw(channel, event)
            return
        window.ack(tag)
        if accepted.repeat:
            self.on_repeat(channel.name, "amqp")
            return
        self.on_accepted(channel.name, accepted.outcome)
        if channel.deprecated:
            self.on_deprecated(channel.name)

    def _withdraw_soon(self, channel: EventChannel, event: Event) -> None:
        """`_withdraw` in a task of its own, for a delivery whose task is being cancelled: queued
        after the event's put, if it was queued (`withdrawals_settled` waits for it)."""
        task = asyncio.get_running_loop().create_task(self._withdraw(channel, event))
        self._withdrawing.add(task)
        task.add_done_callback(self._withdrawing.discard)

    async def withdrawals_settled(self) -> None:
        """Wait for the withdrawals still running: before the store closes."""
        if self._withdrawing:
            await asyncio.wait(self._withdrawing)

    async def _withdraw(self, channel: EventChannel, event: Event) -> None:
        """The delivery's channel went away while its event was being stored (the broker died,
        say, and took the outbound link with it): it was never acked, so the broker delivers the
        message again, perhaps to another replica that forwards it at once. The stored copy would
        only be a duplicate, which the replay could publish ahead of events forwarded meanwhile:
        it is taken back. Only from a queue that keeps its messages through a broker crash (the
        quorum queues the gateway declares), so the message is certain to come back."""
        try:
            withdrawn = await self._publisher.withdraw(event)
        except StoreError as exc:
            log.warning(
                "%s from %s will be delivered again, but its stored copy could not be withdrawn"
                " (%s): it will be published twice",
                event.message_id,
                channel.inbound_queue,
                exc,
            )
            return
        if withdrawn:
            self.on_withdrawn(channel.name)

    async def _requeue_later(self, window: AckWindow, tag: int) -> None:
        # The pause keeps a full store or a failing dead-letter path from becoming a hot loop.
        await asyncio.sleep(REQUEUE_DELAY_S)
        with contextlib.suppress(Exception):  # the channel is gone: requeued by the broker anyway
            await window.nack(tag)

    async def _dead_letter(
        self,
        channel: EventChannel,
        window: AckWindow,
        tag: int,
        message: DeliveredMessage,
        reason: str,
        category: str,
    ) -> None:
        """Copy the message to the dead-letter exchange with the reason, then ack the original.

        `reject()` cannot add headers, hence the copy. If the copy fails, the original is nacked
        back into its queue: a poison message is never lost on the way to the dead-letter queue.
        """
        properties = message.header.properties
        # Undecodable headers cannot be copied: the copy carries the reason instead.
        original = {} if undecodable(properties.headers) else properties.headers
        headers = rewritable(dict(original or {}))
        headers[ERROR_HEADER] = reason
        headers[SOURCE_QUEUE_HEADER] = channel.inbound_queue
        copy = aio_pika.Message(
            body=message.body,
            headers=headers,
            content_type=properties.content_type or CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=properties.message_id,
            correlation_id=properties.correlation_id,
            type=channel.name,
        )
        exchange = self.link.dead_letter_exchange if self.link is not None else None
        try:
            if exchange is None:
                raise ConnectionError("the inbound broker is not connected")
            async with asyncio.timeout(self._deadline_s):
                await exchange.publish(copy, routing_key=channel.inbound_queue)
        except Exception as exc:
            log.warning(
                "could not dead-letter a message from %s (%s); requeued", channel.inbound_queue, exc
            )
            await self._requeue_later(window, tag)
            return
        window.ack(tag)
        self.on_rejected(channel.name, category)


def documented_broker(
    url: str, catalog: Catalog, prefetch: int, *, single_active_consumer: bool = True
) -> SpecBroker:
    """The FastStream broker with the inbound queues declared as its subscribers, which is what
    the AsyncAPI document is generated from. FastStream never runs their handlers: the inbound
    link consumes (app/ingress/inbound.py says why)."""
    broker = SpecBroker(
        url,
        specification_url=redact(url),
        description="Inbound queues and the outbound exchange of Breakwater.",
    )
    for channel in catalog.values():
        _document_subscriber(broker, channel, prefetch, single_active_consumer)
    return broker


def _document_subscriber(
    broker: RabbitBroker, channel: EventChannel, prefetch: int, single_active_consumer: bool
) -> None:
    async def consumed_by_the_inbound_link(body: bytes) -> None:
        raise RuntimeError("AMQP ingress is consumed by InboundLink, not by FastStream")

    broker.subscriber(
        inbound_queue(channel, single_active_consumer=single_active_consumer),
        channel=Channel(prefetch_count=prefetch),
        ack_policy=AckPolicy.MANUAL,
        no_reply=True,
        decoder=_raw_body,
        title=f"{channel.inbound_queue}:consume",
        description=(
            f"{channel.summary} Producers publish `{channel.name}` payloads to this durable"
            " quorum queue on the inbound broker."
        ),
    )(consumed_by_the_inbound_link)
