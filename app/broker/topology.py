"""Names and declarations of everything the gateway creates on a broker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection

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


def inbound_queue_arguments(*, single_active_consumer: bool) -> dict[str, Any]:
    """With single active consumer, one gateway replica consumes a queue and the others stand by
    (the broker hands the queue over when the active one goes): a channel's AMQP events then keep
    their order across replicas. Without it every replica takes a share of every queue."""
    if not single_active_consumer:
        return dict(INBOUND_QUEUE_ARGUMENTS)
    return {**INBOUND_QUEUE_ARGUMENTS, "x-single-active-consumer": True}


@dataclass(frozen=True)
class Mismatch:
    """An object the gateway declares that already exists with other arguments (a consumer or an
    operator declared it first; RabbitMQ never changes an existing object's arguments)."""

    kind: str  # "exchange" or "queue"
    name: str
    broker_says: str  # the broker's PRECONDITION_FAILED text: which argument differs
    consequence: str  # what working with the existing object costs

    def __str__(self) -> str:
        return (
            f"{self.kind} {self.name} exists with other arguments than the gateway declares"
            f" ({self.broker_says}); the gateway uses it as it is: {self.consequence}"
        )


class Declarer:
    """Declares objects on a connection, on a channel of its own; an object that exists with
    other arguments is adopted as it is (a passive declare) and noted in `mismatches`, instead of
    failing every connect forever. What publishes and consumes uses channels of its own."""

    def __init__(self, connection: AbstractConnection) -> None:
        self._connection = connection
        self._channel: AbstractChannel | None = None
        self.mismatches: list[Mismatch] = []

    async def _open(self) -> AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel()
        return self._channel

    async def exchange(
        self,
        name: str,
        kind: aio_pika.ExchangeType,
        *,
        arguments: dict[str, Any] | None = None,
        consequence: str,
    ) -> None:
        channel = await self._open()
        try:
            await channel.declare_exchange(name, kind, durable=True, arguments=arguments)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            # The broker closed the channel: look the existing exchange up on a fresh one.
            await (await self._open()).declare_exchange(name, passive=True)
            self.mismatches.append(Mismatch("exchange", name, _reply_text(exc), consequence))

    async def queue(
        self, name: str, *, arguments: dict[str, Any] | None = None, consequence: str
    ) -> None:
        channel = await self._open()
        try:
            await channel.declare_queue(name, durable=True, arguments=arguments)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            await (await self._open()).declare_queue(name, passive=True)
            self.mismatches.append(Mismatch("queue", name, _reply_text(exc), consequence))

    async def bind(self, queue: str, exchange: str) -> None:
        channel = await self._open()
        await (await channel.get_queue(queue, ensure=False)).bind(exchange)

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()


def _reply_text(exc: aiormq.exceptions.ChannelPreconditionFailed) -> str:
    # aiormq carries the broker's Channel.Close: "PRECONDITION_FAILED - inequivalent arg ..."
    frame = exc.args[0] if exc.args else None
    text = getattr(frame, "reply_text", None) or str(exc)
    return str(text).removeprefix("PRECONDITION_FAILED - ")


async def declare_outbound(declarer: Declarer) -> None:
    """Declare `breakwater.events` with its alternate exchange and queue."""
    await declarer.exchange(
        UNROUTED,
        aio_pika.ExchangeType.FANOUT,
        consequence=f"events nobody binds for go wherever {UNROUTED} routes them",
    )
    await declarer.queue(
        UNROUTED, consequence="events nobody binds for are kept as that queue keeps them"
    )
    await declarer.bind(UNROUTED, UNROUTED)
    await declarer.exchange(
        EVENTS_EXCHANGE,
        aio_pika.ExchangeType.TOPIC,
        arguments=EVENTS_EXCHANGE_ARGUMENTS,
        consequence=(
            f"an event no queue is bound for is refused (HTTP 502, AMQP dead-letter) instead of"
            f" being parked in {UNROUTED}; delete the exchange to let the gateway declare it, or"
            f" declare it with alternate-exchange={UNROUTED}"
        ),
    )


async def declare_inbound_queue(
    declarer: Declarer, name: str, *, single_active_consumer: bool
) -> None:
    order = (
        "without x-single-active-consumer, every replica consumes it and its events' order"
        " across replicas is not kept; "
        if single_active_consumer
        else ""
    )
    await declarer.queue(
        name,
        arguments=inbound_queue_arguments(single_active_consumer=single_active_consumer),
        consequence=(
            f"it is consumed as it is; {order}unless it is a quorum queue dead-lettering to"
            f" {DEAD_LETTER_EXCHANGE}, it may not survive a node loss. To migrate: stop its"
            " producers, let the gateway drain it, delete it, restart the gateway"
        ),
    )


async def declare_dead_letter(declarer: Declarer) -> None:
    """Declare `breakwater.dlx` (fanout) and the queue `breakwater.dead-letter` bound to it."""
    await declarer.exchange(
        DEAD_LETTER_EXCHANGE,
        aio_pika.ExchangeType.FANOUT,
        consequence="rejected inbound messages are routed as that exchange routes them",
    )
    await declarer.queue(
        DEAD_LETTER_QUEUE, consequence="rejected inbound messages are kept as that queue keeps them"
    )
    await declarer.bind(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE)
