"""Acks of one consuming AMQP channel, sent as few `multiple` acks as the order of settlement allows.

A message may be acked only once its event is confirmed by the outbound broker or held by the store,
and confirms arrive in batches: acking each message would cost a frame (and, for a quorum queue, a
log entry on the broker) per message. Here every delivery is *settled* by the ingress (ack, or
nack with requeue), and one `basic.ack(multiple=True)` goes out per event-loop turn for the longest
run of settled deliveries that starts at the oldest unsettled one.

Never ahead of the ingress: a `multiple` ack covers every outstanding tag at or below it, so it is
only sent for a tag whose predecessors are all settled. Its tag must itself be outstanding (RabbitMQ
closes the channel with "unknown delivery tag" otherwise), so it names the highest *acked* tag of
the run, never a nacked one. Nacks go out at once, one by one.

Once the channel is gone, a delivery no ack was sent for is void: the broker puts it back in its
queue and delivers it again, to this consumer's next channel or to another replica.
"""

from __future__ import annotations

import asyncio
import logging

import aiormq.abc

log = logging.getLogger("breakwater.amqp")


class AckWindow:
    def __init__(self, channel: aiormq.abc.AbstractChannel, *, crash_safe: bool = True) -> None:
        self._channel = channel
        # The queue keeps its messages through a broker crash (a quorum queue as the gateway
        # declares it): a void delivery is certain to be delivered again. A queue adopted as it
        # was (a classic one, transient messages) may lose it with the broker.
        self.crash_safe = crash_safe
        self._next = 1  # the oldest delivery not settled yet (tags count from 1 per channel)
        self._settled: dict[int, bool] = {}  # settled above `_next`: tag -> acked (not nacked)
        self._ack_through = 0  # the highest acked tag of the settled run, not sent yet
        self._sent_through = 0  # the highest tag a sent `multiple` ack covers
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()
        self._broken = False

    @property
    def unsettled_before(self) -> int:
        """The oldest delivery tag not settled yet."""
        return self._next

    def is_void(self, tag: int) -> bool:
        """True when delivery `tag` can no longer be acked: its channel is gone and no ack that
        covers it was sent. The broker will deliver the message again."""
        return tag > self._sent_through and (self._broken or self._channel.is_closed)

    def ack(self, tag: int) -> None:
        """The event of delivery `tag` is safe: ack it with the run it completes (soon)."""
        self._settle(tag, acked=True)

    async def nack(self, tag: int) -> None:
        """Put delivery `tag` back in its queue, now. Raises if the channel is gone."""
        try:
            await self._channel.basic_nack(tag, multiple=False, requeue=True)
        except BaseException:
            # Not sent: a later `multiple` ack would cover (and lose) this delivery, so no ack
            # goes out on this channel any more. A failed nack means the channel is gone anyway,
            # and the broker requeues everything unacked on it.
            self._broken = True
            raise
        self._settle(tag, acked=False)

    async def drain(self) -> None:
        """Send what is due now and wait until every ack sent has been written."""
        self._flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _settle(self, tag: int, *, acked: bool) -> None:
        if tag < self._next:
            return  # a tag of an earlier channel generation cannot happen here; never twice
        self._settled[tag] = acked
        while self._next in self._settled:
            if self._settled.pop(self._next):
                self._ack_through = self._next
            self._next += 1
        if self._ack_through and not self._flush_scheduled:
            # Confirms come in batches and settle many deliveries in one turn: one ack for all.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        tag, self._ack_through = self._ack_through, 0
        if not tag or self._broken:
            return
        task = asyncio.get_running_loop().create_task(self._send_ack(tag))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_ack(self, tag: int) -> None:
        try:
            await self._channel.basic_ack(tag, multiple=True)
            self._sent_through = max(self._sent_through, tag)
        except Exception as exc:
            # The channel is gone: the broker requeues everything unacked on it, and the events
            # are already safe, so they are published again (same message_id): at least once.
            log.debug("ack through delivery %d not sent: %s", tag, exc)
