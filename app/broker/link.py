"""A connection to the first of several brokers that answers, kept up by a supervisor task.

Not aio-pika's RobustConnection: that one reconnects to a single URL only, at a fixed interval, and
restores channels behind the caller's back. Here a supervisor connects to the first URL of the list
that answers, lets the subclass open its channels, waits for the connection or any of those channels
to close, and starts over from the first URL (so the preferred broker is used again as soon as it is
back), with a short, growing pause between rounds. The outbound link publishes on it; AMQP ingress
consumes on another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Sequence

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from yarl import URL

from .topology import Mismatch

# A dead peer is noticed after (heartbeat + 1) * 3 s; 60 s (the default) would mean 3 minutes.
HEARTBEAT_S = 10
CLOSE_TIMEOUT_S = 1.0
FIRST_PAUSE_S = 0.5


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parsed = URL(url)
    return str(parsed.with_password("***")) if parsed.password else str(parsed)


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "…"


def _raise_if_cancelled(failure: Exception) -> None:
    """Raise CancelledError when the running task was asked to stop. aio-pika connects through
    `asyncio.wait_for`, which on Python 3.11 can turn a cancellation that arrives as the attempt
    fails (a refused connection) into that failure: the supervisor would go on connecting, and
    `close()`, waiting for it, would never return (the gateway could not stop)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from failure


class SupervisedLink:
    """Base of the outbound and inbound links. Subclasses implement `_opened` and `_lost`."""

    #: Who this link is, for the connection name the broker shows and for the logs.
    role = "link"
    #: What the gateway does while the link is down, for the log lines that say it is.
    while_down = "retrying"

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        reconnect_interval_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        url_list = [urls] if isinstance(urls, str) else list(urls)
        if not url_list:
            raise ValueError("at least one broker URL is needed")
        self._log = logging.getLogger(f"breakwater.{self.role}")
        self._ssl_context = ssl_context
        self._urls = [str(URL(url).update_query(heartbeat=HEARTBEAT_S)) for url in url_list]
        self._shown = {
            url: redact(original) for url, original in zip(self._urls, url_list, strict=True)
        }
        self.display_url = ", ".join(redact(url) for url in url_list)
        self._reconnect_interval_s = reconnect_interval_s
        self.connect_timeout_s = connect_timeout_s
        self._connection: AbstractConnection | None = None
        self._connected_url: str | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.ever_connected = asyncio.Event()
        #: Objects found on the broker with other arguments than the gateway declares, as of
        #: the last connect (see `topology.Declarer`).
        self.mismatches: tuple[Mismatch, ...] = ()
        self.on_mismatches: Callable[[Sequence[Mismatch]], None] = lambda found: None

    # -- for subclasses ----------------------------------------------------------------------

    async def _opened(self, connection: AbstractConnection) -> Sequence[AbstractChannel]:
        """Open channels and declare on a new connection; return the channels whose loss means
        the link is lost. Runs under the connect timeout; an exception drops the connection."""
        raise NotImplementedError

    async def _lost(self) -> None:
        """Forget the channels of the connection that is going (called before it is closed)."""
        raise NotImplementedError

    def _note_mismatches(self, found: Sequence[Mismatch]) -> None:
        """Say once (not on every reconnect) what the broker holds that differs from what the
        gateway declares."""
        found = tuple(found)
        if found != self.mismatches:
            for mismatch in found:
                self._log.warning("%s", mismatch)
            self.mismatches = found
            self.on_mismatches(found)

    # -- public -------------------------------------------------------------------------------

    @property
    def connection_up(self) -> bool:
        connection = self._connection
        return connection is not None and not connection.is_closed and connection.connected.is_set()

    @property
    def connected_url(self) -> str | None:
        """The broker in use (password hidden), or None."""
        if self._connected_url and self.connection_up:
            return self._shown[self._connected_url]
        return None

    def start(self) -> None:
        """Connect in the background: the gateway serves (and stores) while the broker is away."""
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name=f"{self.role}-link")
            self._supervisor.add_done_callback(self._report_death)

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._drop()

    # -- the supervisor -----------------------------------------------------------------------

    async def _supervise(self) -> None:
        while True:
            lost = await self._connect_first_answering()
            reason = await lost
            await self._drop()
            self._log.warning(
                "connection to %s broker %s lost (%s); %s",
                self.role,
                self._shown.get(self._connected_url or "", "?"),
                reason,
                self.while_down,
            )

    async def _connect_first_answering(self) -> asyncio.Future[str]:
        """Try every URL in order, round after round, until one answers."""
        pause = min(FIRST_PAUSE_S, self._reconnect_interval_s)
        warned = False
        while True:
            failures = []
            for url in self._urls:
                try:
                    return await self._connect(url)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    _raise_if_cancelled(exc)
                    failures.append(f"{self._shown[url]}: {describe(exc)}")
            if not warned:
                self._log.warning(
                    "%s broker unreachable (%s); %s",
                    self.role,
                    "; ".join(failures),
                    self.while_down,
                )
                warned = True
            await asyncio.sleep(pause)
            pause = min(pause * 2, self._reconnect_interval_s)

    async def _connect(self, url: str) -> asyncio.Future[str]:
        connection = await aio_pika.connect(
            url,
            timeout=self.connect_timeout_s,
            ssl_context=self._ssl_context,
            client_properties={"connection_name": f"breakwater-{self.role}"},
        )
        try:
            # A broker still booting (or going down) can take the connection and then never
            # answer Channel.Open or a declaration: without a bound the supervisor would wait
            # there forever and the link would never come back.
            async with asyncio.timeout(self.connect_timeout_s):
                channels = await self._opened(connection)
        except BaseException:
            await self._lost()
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_close(_: object, exc: BaseException | None) -> None:
            if not lost.done():
                lost.set_result(describe(exc) if exc else "closed")

        connection.close_callbacks.add(on_close)
        for channel in channels:
            channel.close_callbacks.add(on_close)
        if connection.is_closed or any(channel.is_closed for channel in channels):
            # Closed in the same read as the last reply: no callback will ever run.
            on_close(None, ConnectionError("closed while connecting"))
        self._connection = connection
        self._connected_url = url
        self.ever_connected.set()
        self._log.info("connected to %s broker %s", self.role, self._shown[url])
        return lost

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        await self._lost()
        if connection is not None and not connection.is_closed:
            # A partitioned peer never answers Connection.Close: do not wait for the heartbeat.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await connection.close()

    def _report_death(self, task: asyncio.Task[None]) -> None:
        # The supervisor only ends by cancellation; anything else would leave the link down for
        # good and must be loud.
        if not task.cancelled() and task.exception() is not None:
            self._log.critical("%s link supervisor died", self.role, exc_info=task.exception())
