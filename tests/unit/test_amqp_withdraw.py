"""AMQP ingress takes back a stored copy of a delivery that can no longer be acked.

When the inbound channel goes away (the broker died, say) while a delivery's event is being
stored, the broker delivers the message again, to this replica or another. The stored copy would
only be a duplicate, and its replay could arrive ahead of events another replica forwards meanwhile:
it is withdrawn, with its idempotency key, so that the next delivery is taken as a new event. A
delivery an ack covering it was sent for is never withdrawn: the message may be gone from the
queue, and the stored copy is then the only one.

The real store, publisher and idempotency window (test_idempotency's `Gateway`, the scripted
outbound link of test_publisher); the inbound channel is test_acks' `Broker`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import cast

import aiormq.abc
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from app.catalog.default import DEFAULT_CATALOG
from app.ingress.acks import AckWindow
from app.ingress.amqp_ingress import AmqpIngress

from .test_acks import Broker, settle_turn
from .test_idempotency import Gateway, _key_rows

CHANNEL = DEFAULT_CATALOG["orders.created"]
BODY = json.dumps(CHANNEL.example).encode()


def delivery(tag: int, message_id: str) -> aiormq.abc.DeliveredMessage:
    properties = Basic.Properties(message_id=message_id, content_type="application/json")
    return aiormq.abc.DeliveredMessage(
        delivery=Basic.Deliver(delivery_tag=tag, routing_key=CHANNEL.inbound_queue),
        header=ContentHeader(body_size=len(BODY), properties=properties),
        body=BODY,
        channel=cast(aiormq.abc.AbstractChannel, None),
    )


def window_on(channel: Broker, *, crash_safe: bool = True) -> AckWindow:
    return AckWindow(cast(aiormq.abc.AbstractChannel, channel), crash_safe=crash_safe)


class Ingress:
    """AMQP ingress on `gateway`, counting what it withdraws."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.ingress = AmqpIngress(gateway.keys, deadline_s=1.0)
        self.withdrawn: list[str] = []
        self.ingress.on_withdrawn = self.withdrawn.append

    async def deliver_again(self, message_id: str) -> Broker:
        """The broker's next delivery of the message, on a new channel, the outbound broker back:
        published as a new event (not answered as a repeat of a copy that is gone) and acked."""
        channel = Broker(delivered=1)
        await self.ingress.forward(CHANNEL, window_on(channel), 1, delivery(1, message_id))
        await settle_turn()
        return channel


async def test_a_delivery_whose_channel_closed_while_it_was_stored_is_withdrawn_not_acked(
    tmp_path: Path,
) -> None:
    async with Gateway(tmp_path / "fallback.db") as gateway:
        ingress = Ingress(gateway)
        gateway.link.refuse("m-1")  # the outbound broker is gone: the event goes to the store
        channel = Broker(delivered=1)
        channel.closed = True  # and so is the delivery's channel, before it could be acked

        await ingress.ingress.forward(CHANNEL, window_on(channel), 1, delivery(1, "m-1"))
        await settle_turn()

        assert gateway.store.depth() == 0
        assert "m-1" not in _key_rows(gateway.path)
        assert channel.frames == []
        assert ingress.withdrawn == [CHANNEL.name]
        again = await ingress.deliver_again("m-1")
        assert gateway.link.confirmed == ["m-1"]
        assert again.acked == {1}


async def test_a_delivery_cancelled_with_its_channel_after_its_event_was_queued_is_withdrawn(
    tmp_path: Path,
) -> None:
    async with Gateway(tmp_path / "fallback.db") as gateway:
        ingress = Ingress(gateway)
        gateway.link.refuse("m-2")
        channel = Broker(delivered=1)
        forwarding = asyncio.ensure_future(
            ingress.ingress.forward(CHANNEL, window_on(channel), 1, delivery(1, "m-2"))
        )
        # Its first pause is the store's commit: the put is queued by then.
        while "m-2" not in gateway.link.attempted:
            await asyncio.sleep(0)
        # aiormq cancels a consumer's tasks when their channel closes.
        channel.closed = True
        forwarding.cancel()
        await asyncio.gather(forwarding, return_exceptions=True)
        await ingress.ingress.withdrawals_settled()

        assert gateway.store.depth() == 0
        assert "m-2" not in _key_rows(gateway.path)
        assert channel.frames == []
        assert ingress.withdrawn == [CHANNEL.name]
        again = await ingress.deliver_again("m-2")
        assert gateway.link.confirmed == ["m-2"]
        assert again.acked == {1}


async def test_a_stored_delivery_whose_ack_went_out_is_kept_when_the_channel_closes_later(
    tmp_path: Path,
) -> None:
    async with Gateway(tmp_path / "fallback.db") as gateway:
        ingress = Ingress(gateway)
        gateway.link.refuse("m-3")
        channel = Broker(delivered=1)

        await ingress.ingress.forward(CHANNEL, window_on(channel), 1, delivery(1, "m-3"))
        await settle_turn()
        channel.closed = True

        assert channel.acked == {1}
        assert gateway.store.depth() == 1  # the broker may have taken the ack: the only copy
        assert ingress.withdrawn == []


async def test_a_delivery_from_a_queue_that_may_lose_it_in_a_crash_is_kept(tmp_path: Path) -> None:
    """A queue adopted as it was (a classic queue: its transient messages die with the broker):
    the stored copy may be the only one left, so it stays."""
    async with Gateway(tmp_path / "fallback.db") as gateway:
        ingress = Ingress(gateway)
        gateway.link.refuse("m-4")
        channel = Broker(delivered=1)
        channel.closed = True
        window = window_on(channel, crash_safe=False)

        await ingress.ingress.forward(CHANNEL, window, 1, delivery(1, "m-4"))
        await settle_turn()

        assert gateway.store.depth() == 1
        assert ingress.withdrawn == []
