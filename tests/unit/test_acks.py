"""AckWindow: acks go out late and few, never ahead of the ingress, never naming a nacked tag.

The channel here records the frames it is asked to send; what RabbitMQ does with them (a `multiple`
ack covers every outstanding tag at or below it, and its own tag must be outstanding) is modelled
by `Broker` below, so each test can state what ends up acked, requeued or left outstanding.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import aiormq.abc
import pytest

from app.ingress.acks import AckWindow


class Broker:
    """The outstanding deliveries of one channel, as RabbitMQ keeps them."""

    def __init__(self, delivered: int) -> None:
        self.outstanding = set(range(1, delivered + 1))
        self.acked: set[int] = set()
        self.requeued: set[int] = set()
        self.frames: list[tuple[str, int, bool]] = []
        self.closed = False

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self._check(delivery_tag)
        self.frames.append(("ack", delivery_tag, multiple))
        covered = {t for t in self.outstanding if t <= delivery_tag} if multiple else {delivery_tag}
        self.outstanding -= covered
        self.acked |= covered

    async def basic_nack(
        self, delivery_tag: int, multiple: bool = False, requeue: bool = True
    ) -> None:
        self._check(delivery_tag)
        self.frames.append(("nack", delivery_tag, multiple))
        self.outstanding.discard(delivery_tag)
        self.requeued.add(delivery_tag)

    @property
    def is_closed(self) -> bool:
        return self.closed

    def _check(self, tag: int) -> None:
        if self.closed:
            raise aiormq.exceptions.ChannelInvalidStateError("closed")
        if tag not in self.outstanding:
            # RabbitMQ closes the channel: PRECONDITION_FAILED - unknown delivery tag
            raise AssertionError(f"unknown delivery tag {tag}")


def window_on(broker: Broker) -> AckWindow:
    return AckWindow(cast(aiormq.abc.AbstractChannel, broker))


async def settle_turn() -> None:
    """Let the window's scheduled flush and its send run."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_acks_settled_in_one_turn_go_out_as_one_multiple_ack() -> None:
    broker = Broker(delivered=5)
    window = window_on(broker)
    for tag in (1, 2, 3, 4, 5):
        window.ack(tag)
    await settle_turn()
    assert broker.frames == [("ack", 5, True)]
    assert broker.acked == {1, 2, 3, 4, 5}


async def test_nothing_is_acked_past_a_delivery_still_in_hand() -> None:
    broker = Broker(delivered=4)
    window = window_on(broker)
    for tag in (1, 3, 4):  # 2 is still being published
        window.ack(tag)
    await settle_turn()
    assert broker.acked == {1}
    assert broker.outstanding == {2, 3, 4}

    window.ack(2)
    await settle_turn()
    assert broker.acked == {1, 2, 3, 4}
    assert broker.frames == [("ack", 1, True), ("ack", 4, True)]


async def test_a_nacked_delivery_is_requeued_not_acked_and_never_named_by_an_ack() -> None:
    broker = Broker(delivered=4)
    window = window_on(broker)
    window.ack(1)
    window.ack(2)
    await window.nack(3)
    await window.nack(4)  # the run ends on a nacked tag: the ack must name 2, not 4
    await settle_turn()
    assert broker.requeued == {3, 4}
    assert broker.acked == {1, 2}
    assert ("ack", 4, True) not in broker.frames


async def test_a_nack_goes_out_before_any_ack_that_would_cover_it() -> None:
    broker = Broker(delivered=3)
    window = window_on(broker)
    window.ack(1)
    window.ack(3)
    await window.nack(2)
    await settle_turn()
    assert broker.requeued == {2}
    assert broker.acked == {1, 3}
    assert broker.frames.index(("nack", 2, False)) < broker.frames.index(("ack", 3, True))


async def test_after_a_failed_nack_no_ack_goes_out_on_that_channel() -> None:
    broker = Broker(delivered=3)
    window = window_on(broker)
    broker.closed = True
    with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
        await window.nack(1)
    broker.closed = False  # even if the channel answered again, an ack would cover tag 1
    window.ack(2)
    window.ack(3)
    await settle_turn()
    assert broker.acked == set()
    assert broker.frames == []


async def test_an_ack_on_a_closed_channel_is_dropped_quietly_and_drain_returns() -> None:
    broker = Broker(delivered=2)
    window = window_on(broker)
    broker.closed = True
    window.ack(1)
    window.ack(2)
    await window.drain()
    assert broker.acked == set()


async def test_drain_sends_what_is_due_and_waits_for_it() -> None:
    broker = Broker(delivered=2)
    window = window_on(broker)
    window.ack(1)
    window.ack(2)
    await window.drain()
    assert broker.acked == {1, 2}


async def test_settling_a_tag_twice_changes_nothing() -> None:
    broker = Broker(delivered=2)
    window = window_on(broker)
    window.ack(1)
    await settle_turn()
    window.ack(1)
    window.ack(2)
    await settle_turn()
    assert broker.frames == [("ack", 1, True), ("ack", 2, True)]
    assert window.unsettled_before == 3


@pytest.mark.parametrize("seed", range(20))
async def test_in_any_settlement_order_exactly_the_acked_tags_are_acked(seed: int) -> None:
    import random

    rng = random.Random(seed)
    count = 60
    broker = Broker(delivered=count)
    window = window_on(broker)
    order = list(range(1, count + 1))
    rng.shuffle(order)
    to_nack = set(rng.sample(order, 8))
    pending: list[Any] = []
    for tag in order:
        if tag in to_nack:
            pending.append(window.nack(tag))
        else:
            window.ack(tag)
        if rng.random() < 0.3:
            await asyncio.gather(*pending)
            pending.clear()
            await settle_turn()
    await asyncio.gather(*pending)
    await window.drain()
    assert broker.requeued == to_nack
    assert broker.acked == set(range(1, count + 1)) - to_nack
    assert broker.outstanding == set()


async def test_a_delivery_is_void_once_its_channel_is_gone_unless_an_ack_covering_it_went_out() -> (
    None
):
    broker = Broker(delivered=4)
    window = window_on(broker)
    window.ack(1)
    window.ack(2)
    await settle_turn()
    assert not window.is_void(3)  # the channel is open: it can still be acked

    broker.closed = True
    window.ack(3)  # its ack cannot go out now
    await settle_turn()

    assert broker.acked == {1, 2}
    assert not window.is_void(1)
    assert not window.is_void(2)
    assert window.is_void(3)
    assert window.is_void(4)  # never settled: the broker delivers it again too
