"""The inbound side: the link AMQP ingress consumes on, and the FastStream broker the spec comes from.

`InboundLink` keeps one connection to the first inbound broker that answers (failing over at any
time, like the outbound link), declares the dead-letter topology and every inbound queue, and
consumes each queue on a channel of its own with the configured prefetch. Deliveries go to the
ingress as aiormq delivers them: one task per delivery, started in delivery order, with nothing in
between that could reorder them (FastStream's consume path resolves handler arguments through a
worker thread, which both reorders deliveries and costs more than the rest of the forwarding).

`SpecBroker` is the FastStream broker the ASGI app is built on: the inbound queues are declared as
its subscribers, which is what the AsyncAPI document is generated from. It never connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any, Literal

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aiormq.abc import DeliveredMessage
from faststream.rabbit import RabbitBroker
from pamqp.commands import Basic

from ..broker.link import SupervisedLink
from ..broker.topology import (
    DEAD_LETTER_EXCHANGE,
    Declarer,
    declare_dead_letter,
    declare_inbound_queue,
)
from ..catalog import Catalog, Channel
from . import amqp_decoding
from .acks import AckWindow

log = logging.getLogger("breakwater.inbound")

# standby: consuming a single-active-consumer queue, no delivery yet (standing by, or idle);
# active: it has had deliveries; shared: every replica consumes the queue (no single consumer);
# unknown: the queue exists with other arguments, which AMQP does not let us read.
ConsumerState = Literal["active", "standby", "shared", "unknown"]

# (channel, its queue's ack window, delivery tag, message)
Consumer = Callable[[Channel, AckWindow, int, DeliveredMessage], Awaitable[None]]


class SpecBroker(RabbitBroker):
    """Holds the inbound queues as FastStream subscribers for the AsyncAPI document; never connects.

    The ASGI app starts and stops its broker with the app: here that does nothing, because
    `InboundLink` does the consuming (see the module docstring).
    """

    async def start(self) -> None:
        self.running = True

    async def stop(self, *args: Any, **kwargs: Any) -> None:
        self.running = False


class InboundLink(SupervisedLink):
    role = "inbound"
    while_down = "AMQP ingress waits (HTTP ingress is serving) and retries"

    def __init__(
        self,
        urls: str | Sequence[str],
        consumer: Consumer,
        *,
        prefetch: int,
        catalog: Catalog,
        single_active_consumer: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(urls, **options)
        self.single_active_consumer = single_active_consumer
        amqp_decoding.install()  # a message pamqp cannot decode must not kill this connection
        self._consumer = consumer
        self._prefetch = prefetch
        self._catalog = catalog
        self._dead_letter: AbstractExchange | None = None
        self._consuming: list[tuple[AbstractChannel, str]] = []
        self._windows: list[AckWindow] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._accepting = True
        self._restarts: set[asyncio.Task[None]] = set()
        # Per inbound queue consumed now: has a delivery arrived since its consume began?
        self._delivered: dict[str, bool] = {}
        # Queues that exist with other arguments than declared: do they have a single consumer?
        self._single_consumer: dict[str, bool | None] = {}

    @property
    def is_consuming(self) -> bool:
        return self.connection_up and bool(self._consuming)

    def consumer_states(self) -> dict[str, ConsumerState]:
        """What this process is for each inbound queue it consumes now (none while down).

        RabbitMQ does not tell an AMQP 0-9-1 consumer whether it is the single active one: a
        consumer that has had a delivery is; one that has had none stands by, or its queue has
        been empty since it began."""
        if not self.is_consuming:
            return {}
        states: dict[str, ConsumerState] = {}
        for queue, delivered in self._delivered.items():
            single = self._single_consumer.get(queue, self.single_active_consumer)
            if single is None:
                states[queue] = "unknown"
            elif not single:
                states[queue] = "shared"
            else:
                states[queue] = "active" if delivered else "standby"
        return states

    @property
    def dead_letter_exchange(self) -> AbstractExchange | None:
        """The dead-letter exchange on a confirm channel, or None while disconnected."""
        return self._dead_letter if self.connection_up else None

    async def stop_consuming(self, grace_s: float) -> None:
        """Cancel every consumer, give the deliveries in hand up to `grace_s` to settle, send their
        acks. What is still unsettled then goes back to its queue when the connection closes."""
        self._accepting = False

        async def cancel(channel: AbstractChannel, tag: str) -> None:
            underlay = await channel.get_underlay_channel()
            await underlay.basic_cancel(tag)

        # All at once under one bound: on a partitioned connection every cancel waits out the
        # bound, and one after the other that would be the bound times the number of channels.
        await self._all_within(cancel(channel, tag) for channel, tag in self._consuming)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await self._idle.wait()
        if self._in_flight:
            log.warning(
                "%d AMQP deliveries not settled within %.0fs; they go back to their queues",
                self._in_flight,
                grace_s,
            )
        await self._all_within(window.drain() for window in self._windows)

    async def _all_within(self, steps: Iterable[Awaitable[None]]) -> None:
        """Run the steps side by side for at most `connect_timeout_s`; a step that fails or is
        still waiting then is given up (its consumer or acks go with the connection's close)."""
        tasks = [asyncio.ensure_future(step) for step in steps]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.connect_timeout_s)
        for task in pending:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.debug("shutdown step failed: %r", result)

    async def _opened(self, connection: AbstractConnection) -> Sequence[AbstractChannel]:
        declarer = Declarer(connection)
        await declare_dead_letter(declarer)
        for event_channel in self._catalog.values():
            await declare_inbound_queue(
                declarer,
                event_channel.inbound_queue,
                single_active_consumer=self.single_active_consumer,
            )
        await declarer.close()
        self._note_mismatches(declarer.mismatches)
        # The broker names the first argument that differs. Named x-single-active-consumer: the
        # queue has the opposite of what was declared. Another one named: nobody can tell.
        self._single_consumer = {
            m.name: (
                not self.single_active_consumer
                if "x-single-active-consumer" in m.broker_says
                else None
            )
            for m in declarer.mismatches
            if m.kind == "queue"
        }
        dead_letter_channel = await connection.channel(publisher_confirms=True)
        self._dead_letter = await dead_letter_channel.get_exchange(
            DEAD_LETTER_EXCHANGE, ensure=False
        )
        adopted = {m.name for m in declarer.mismatches if m.kind == "queue"}
        channels: list[AbstractChannel] = [dead_letter_channel]
        for event_channel in self._catalog.values():
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self._prefetch)
            underlay = await channel.get_underlay_channel()
            underlay.on_consumer_cancel_callbacks.add(self._cancelled_by_broker)
            window = AckWindow(underlay, crash_safe=event_channel.inbound_queue not in adopted)
            self._delivered[event_channel.inbound_queue] = False
            result = await underlay.basic_consume(
                event_channel.inbound_queue,
                partial(self._deliver, event_channel, window),
                no_ack=False,
            )
            assert result.consumer_tag is not None  # the broker names it when we do not
            self._consuming.append((channel, result.consumer_tag))
            self._windows.append(window)
            channels.append(channel)
        log.info(
            "AMQP ingress consuming %d queues (prefetch %d)", len(self._catalog), self._prefetch
        )
        return channels

    async def _cancelled_by_broker(self, frame: Basic.Cancel) -> None:
        # The queue was deleted (or its node went away) under the consumer: the queue would stay
        # unconsumed until the next reconnect. Start over now: the new connection declares the
        # queue again and consumes it. Not from here: this runs in the channel's reader.
        connection = self._connection
        if connection is None or not self._accepting:
            return
        log.warning(
            "the inbound broker cancelled consumer %s; reconnecting to consume again",
            frame.consumer_tag,
        )
        task = asyncio.create_task(connection.close(), name="inbound-restart")
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _lost(self) -> None:
        self._delivered = {}
        self._dead_letter = None
        self._consuming = []
        self._windows = []

    async def _deliver(
        self, channel: Channel, window: AckWindow, message: DeliveredMessage
    ) -> None:
        if not self._accepting:
            return  # arrived after the cancel: unacked, it goes back to its queue on close
        delivery = message.delivery
        # A consumer gets nothing else, and a delivery always carries its tag.
        assert isinstance(delivery, Basic.Deliver)
        assert delivery.delivery_tag is not None
        self._delivered[channel.inbound_queue] = True
        self._in_flight += 1
        self._idle.clear()
        try:
            await self._consumer(channel, window, delivery.delivery_tag, message)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()
