"""The link to the outbound broker: one robust connection and one confirm channel to publish on.

It knows whether the broker can take a publish *right now* (connected, channel open, not blocked by
a resource alarm) and publishes persistent, mandatory, confirmed messages. It never waits for a
reconnect: callers get `BrokerUnavailable` at once and decide what to do (the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from yarl import URL

from .events import CONTENT_TYPE, PATH_HEADER, DeliveryPath, Event
from .topology import declare_outbound

log = logging.getLogger("breakwater.outbound")

# A dead peer is noticed after (heartbeat + 1) * 3 s; 60 s (the default) would mean 3 minutes.
HEARTBEAT_S = 10
CLOSE_TIMEOUT_S = 1.0


class BrokerUnavailable(Exception):
    """The outbound broker cannot take a publish right now (a broker outage, not the event's fault)."""


class Unroutable(Exception):
    """The broker returned the event: nothing could route it (the event's fault, not an outage)."""


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parsed = URL(url)
    return str(parsed.with_password("***")) if parsed.password else str(parsed)


def _is_blocked(connection: AbstractConnection) -> bool:
    # aiormq tracks connection.blocked/unblocked only in a private event; a blocked connection keeps
    # `connected` set while every write stalls, so without this check a publish would just hang.
    transport = getattr(connection, "transport", None)
    amqp = getattr(transport, "connection", None)
    unblocked = getattr(amqp, "_Connection__connection_unblocked", None)
    return isinstance(unblocked, asyncio.Event) and not unblocked.is_set()


def build_message(event: Event, path: DeliveryPath) -> aio_pika.Message:
    return aio_pika.Message(
        body=event.body,
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=event.message_id,
        correlation_id=event.correlation_id,
        timestamp=event.timestamp,
        type=event.channel,
        headers={PATH_HEADER: path.value},
    )


class OutboundLink:
    """Keeps one connection to the first outbound broker that answers, and fails over.

    Not aio-pika's RobustConnection: that one reconnects to a single URL only, at a fixed interval.
    Here a supervisor task connects to the first URL of the list that answers, waits for the
    connection or its channel to close, and starts over from the first URL (so the preferred
    broker is used again as soon as it is back), with a short, growing pause between rounds.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        reconnect_interval_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._ssl_context = ssl_context
        url_list = [urls] if isinstance(urls, str) else list(urls)
        if not url_list:
            raise ValueError("at least one broker URL is needed")
        self._urls = [str(URL(url).update_query(heartbeat=HEARTBEAT_S)) for url in url_list]
        self._shown = {
            url: redact(original) for url, original in zip(self._urls, url_list, strict=True)
        }
        self.display_url = ", ".join(redact(url) for url in url_list)
        self._reconnect_interval_s = reconnect_interval_s
        self._connect_timeout_s = connect_timeout_s
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._connected_url: str | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.ever_connected = asyncio.Event()

    @property
    def connected_url(self) -> str | None:
        """The broker in use (password hidden), or None."""
        return (
            self._shown[self._connected_url] if self._connected_url and self.is_connected else None
        )

    def start(self) -> None:
        """Connect in the background: the gateway serves (and stores) while the broker is away."""
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name="outbound-link")
            self._supervisor.add_done_callback(_report_death)

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._drop()

    def unavailable_reason(self) -> str | None:
        """Why a publish would fail right now, or None when the broker can take it."""
        if self._connection is None or self._exchange is None or self._channel is None:
            return "not connected to the outbound broker"
        if self._connection.is_closed or not self._connection.connected.is_set():
            return "the connection to the outbound broker is down"
        if self._channel.is_closed:
            return "the publishing channel is not open"
        if _is_blocked(self._connection):
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
        assert self._exchange is not None  # unavailable_reason() checked it
        try:
            await self._exchange.publish(
                build_message(event, path), routing_key=event.channel, mandatory=True
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

    async def _supervise(self) -> None:
        while True:
            lost = await self._connect_first_answering()
            reason = await lost
            await self._drop()
            log.warning(
                "connection to outbound broker %s lost (%s); storing events and reconnecting",
                self._shown.get(self._connected_url or "", "?"),
                reason,
            )

    async def _connect_first_answering(self) -> asyncio.Future[str]:
        """Try every URL in order, round after round, until one answers."""
        pause = min(0.5, self._reconnect_interval_s)
        warned = False
        while True:
            failures = []
            for url in self._urls:
                try:
                    return await self._connect(url)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures.append(f"{self._shown[url]}: {_describe(exc)}")
            if not warned:
                log.warning(
                    "outbound broker unreachable (%s); accepting events into the fallback store"
                    " and retrying",
                    "; ".join(failures),
                )
                warned = True
            await asyncio.sleep(pause)
            pause = min(pause * 2, self._reconnect_interval_s)

    async def _connect(self, url: str) -> asyncio.Future[str]:
        connection = await aio_pika.connect(
            url,
            timeout=self._connect_timeout_s,
            ssl_context=self._ssl_context,
            client_properties={"connection_name": "breakwater-outbound"},
        )
        try:
            # A broker still booting (or going down) can take the connection and then never
            # answer Channel.Open or a declaration: without a bound the supervisor would wait
            # there forever and the link would never come back.
            async with asyncio.timeout(self._connect_timeout_s):
                channel: Any = await connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
                exchange = await declare_outbound(channel)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_close(_: object, exc: BaseException | None) -> None:
            if not lost.done():
                lost.set_result(_describe(exc) if exc else "closed")

        connection.close_callbacks.add(on_close)
        channel.close_callbacks.add(on_close)
        if connection.is_closed or channel.is_closed:
            # Closed in the same read as the last declare-ok: no callback will ever run.
            on_close(None, ConnectionError("closed while connecting"))
        self._connection, self._channel, self._exchange = connection, channel, exchange
        self._connected_url = url
        self.ever_connected.set()
        log.info("connected to outbound broker %s", self._shown[url])
        return lost

    async def _drop(self) -> None:
        connection = self._connection
        self._connection = self._channel = self._exchange = None
        if connection is not None and not connection.is_closed:
            # A partitioned peer never answers Connection.Close: do not wait for the heartbeat.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await connection.close()


def _report_death(task: asyncio.Task[None]) -> None:
    # The supervisor only ends by cancellation; anything else would leave the link down for good
    # and must be loud.
    if not task.cancelled() and task.exception() is not None:
        log.critical("outbound link supervisor died", exc_info=task.exception())


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "…"
