"""The link to the outbound broker: one connection and one confirm channel to publish on.

It knows whether the broker can take a publish *right now* (connected, channel open, not blocked by
a resource alarm) and publishes persistent, mandatory, confirmed messages. It never waits for a
reconnect: callers get `BrokerUnavailable` at once and decide what to do (the store).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from pamqp.commands import Basic
from pamqp.common import FieldTable

from ..broker.link import SupervisedLink
from ..broker.topology import EVENTS_EXCHANGE, Declarer, declare_outbound
from ..events import CONTENT_TYPE, PATH_HEADER, DeliveryPath, Event


class BrokerUnavailable(Exception):
    """The outbound broker cannot take a publish right now (a broker outage, not the event's fault)."""


class Unroutable(Exception):
    """The broker returned the event: nothing could route it (the event's fault, not an outage)."""


def _is_blocked(connection: AbstractConnection) -> bool:
    # aiormq tracks connection.blocked/unblocked only in a private event; a blocked connection keeps
    # `connected` set while every write stalls, so without this check a publish would just hang.
    transport = getattr(connection, "transport", None)
    amqp = getattr(transport, "connection", None)
    unblocked = getattr(amqp, "_Connection__connection_unblocked", None)
    return isinstance(unblocked, asyncio.Event) and not unblocked.is_set()


_PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)
_PATH_HEADERS: dict[DeliveryPath, FieldTable] = {
    path: {PATH_HEADER: path.value} for path in DeliveryPath
}


def event_properties(event: Event, path: DeliveryPath) -> Basic.Properties:
    """The event's AMQP properties, built straight for aiormq (aio-pika's Message would build the
    same from a copy of every field: a tenth of the forwarding cost)."""
    headers = _PATH_HEADERS[path]
    if event.headers:  # most events have none: they share the prebuilt table
        headers = {**dict(event.headers), **headers}
    return Basic.Properties(
        content_type=CONTENT_TYPE,
        delivery_mode=_PERSISTENT,
        message_id=event.message_id,
        correlation_id=event.correlation_id,
        timestamp=event.timestamp,
        message_type=event.channel,
        headers=headers,
    )


class OutboundLink(SupervisedLink):
    """The publishing side: one confirm channel on the first outbound broker that answers."""

    role = "outbound"
    while_down = "accepting events into the fallback store and retrying"

    # The channel of the current connection (None while there is none), and aiormq's under it.
    _channel: AbstractChannel | None = None
    _amqp_channel: aiormq.abc.AbstractChannel | None = None

    def unavailable_reason(self) -> str | None:
        """Why a publish would fail right now, or None when the broker can take it."""
        connection = self._connection
        if connection is None or self._amqp_channel is None or self._channel is None:
            return "not connected to the outbound broker"
        if connection.is_closed or not connection.connected.is_set():
            return "the connection to the outbound broker is down"
        if self._channel.is_closed:
            return "the publishing channel is not open"
        if _is_blocked(connection):
            return "the outbound broker blocks publishers (memory or disk alarm)"
        return None

    @property
    def is_connected(self) -> bool:
        return self.unavailable_reason() is None

    async def publish(self, event: Event, path: DeliveryPath) -> None:
        """Publish and wait for the broker's confirm. Raises `BrokerUnavailable` or `Unroutable`.

        No deadline here: the caller bounds the whole call, connect-check included.
        """
        reason = self.unavailable_reason()
        if reason is not None:
            raise BrokerUnavailable(reason)
        assert self._amqp_channel is not None  # unavailable_reason() checked it
        try:
            confirmation = await self._amqp_channel.basic_publish(
                event.body,
                exchange=EVENTS_EXCHANGE,
                routing_key=event.channel,
                properties=event_properties(event, path),
                mandatory=True,
            )
        except aio_pika.exceptions.PublishError as exc:
            raise Unroutable(f"no queue or alternate exchange took {event.channel!r}") from exc
        except aio_pika.exceptions.DeliveryError as exc:
            raise BrokerUnavailable("the broker refused the event (nack)") from exc
        except (aio_pika.exceptions.AMQPError, aiormq.exceptions.AMQPError, ConnectionError) as exc:
            raise BrokerUnavailable(f"publish failed: {type(exc).__name__}: {exc}") from exc
        except RuntimeError as exc:
            # aiormq raises RuntimeError when its writer is gone with the connection.
            raise BrokerUnavailable(f"publish failed: {exc}") from exc
        if not isinstance(confirmation, Basic.Ack):
            # aiormq raises on a nack or a return (the channel confirms and raises on returns);
            # anything but an ack here would be a confirm we do not understand: not confirmed.
            raise BrokerUnavailable(f"publish not confirmed: {confirmation!r}")

    async def _opened(self, connection: AbstractConnection) -> Sequence[AbstractChannel]:
        declarer = Declarer(connection)
        await declare_outbound(declarer)
        await declarer.close()
        self._note_mismatches(declarer.mismatches)
        channel: Any = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self._amqp_channel = await channel.get_underlay_channel()
        self._channel = channel
        return [channel]

    async def _lost(self) -> None:
        self._channel = self._amqp_channel = None
