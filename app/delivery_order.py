"""Puts the deliveries of an AMQP channel back in delivery order before they are accepted.

aiormq runs every delivery as a task of its own, and FastStream resolves the handler's arguments
through a thread-pool hop: handlers start in no fixed order. The order in which events enter the
publisher is their acceptance order, so each delivery waits here for its predecessor (delivery tags
count up by one per channel, from 1 on every new channel) before it is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator

log = logging.getLogger("breakwater.amqp")

# A predecessor that never reaches the handler (it cannot, short of a bug) must not stall the
# queue: after this long its successor goes ahead, out of order, and says so.
STRAGGLER_WAIT_S = 2.0


class _ChannelSequence:
    def __init__(self) -> None:
        self.next_tag = 1
        self.turns: dict[int, asyncio.Future[None]] = {}

    def advance_past(self, tag: int) -> None:
        self.next_tag = max(self.next_tag, tag + 1)
        waiter = self.turns.pop(self.next_tag, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class DeliveryOrder:
    def __init__(self) -> None:
        # Keyed by the channel object: a reconnect opens a new channel whose tags restart at 1.
        self._channels: weakref.WeakKeyDictionary[object, _ChannelSequence] = (
            weakref.WeakKeyDictionary()
        )

    @contextlib.asynccontextmanager
    async def turn(self, channel: object, delivery_tag: int) -> AsyncIterator[None]:
        """Entered in delivery-tag order per channel; the next delivery waits until this exits."""
        sequence = self._channels.setdefault(channel, _ChannelSequence())
        if delivery_tag > sequence.next_tag:
            waiter = asyncio.get_running_loop().create_future()
            sequence.turns[delivery_tag] = waiter
            try:
                await asyncio.wait_for(waiter, STRAGGLER_WAIT_S)
            except TimeoutError:
                log.warning(
                    "delivery %d waited %.0f s for an earlier one that never came; going ahead",
                    delivery_tag,
                    STRAGGLER_WAIT_S,
                )
            finally:
                sequence.turns.pop(delivery_tag, None)
        try:
            yield
        finally:
            sequence.advance_past(delivery_tag)
