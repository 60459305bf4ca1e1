"""A TCP fault proxy for tests: put it between a client and RabbitMQ, then break the link.

The proxy runs its own asyncio event loop in its own thread, so every control call is a plain,
blocking, thread-safe method that returns once the fault is in effect, and a test whose own event
loop is stuck (or a gateway running in a subprocess) cannot stall the forwarding.

Faults:

* ``partition()`` holds bytes: both transports of every connection stop reading (and the proxy
  stops writing), so nothing moves in either direction while the sockets stay open. The kernel
  buffers fill and TCP back-pressure builds, exactly like a silent, hung network. New connections
  are accepted but not forwarded (no upstream connection is opened until ``heal()``).
* ``heal()`` resumes forwarding; whatever the peers wrote meanwhile then flows.
* ``reset()`` aborts every current connection with an RST on both sides (``SO_LINGER`` 0).
* ``reject_new(True)`` accepts and immediately resets every new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self, TypeVar

__all__ = ["FaultProxy"]

_T = TypeVar("_T")

_CONTROL_TIMEOUT = 10.0


def _abort_with_rst(transport: asyncio.Transport | None) -> None:
    """Close a transport so that the peer sees a TCP RST rather than a FIN."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Side(asyncio.Protocol):
    """One socket of a proxied connection (the client's or the upstream's)."""

    def __init__(self, link: _Link, name: str) -> None:
        self.link = link
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        # Set while the peer's write buffer is above its high-water mark.
        self.backpressured = False
        # Bytes read while they could not be forwarded (only in the window between a
        # pause decision and the transport honouring it).
        self.held: list[bytes] = []
        self.closed = False

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.link.side_connected(self)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if self.link.proxy_partitioned() or peer is None or peer.transport is None:
            self.held.append(data)
            self.update_reading()
            return
        if peer.transport.is_closing():
            return
        peer.transport.write(data)

    def eof_received(self) -> bool | None:
        return None  # close our transport; connection_lost then closes the peer

    def pause_writing(self) -> None:
        # Our outgoing buffer is full: stop reading from the side that feeds it.
        if self.peer is not None:
            self.peer.backpressured = True
            self.peer.update_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.backpressured = False
            self.peer.update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.link.side_lost(self, exc)

    # -- helpers ----------------------------------------------------------------------------------

    def should_read(self) -> bool:
        peer = self.peer
        return (
            not self.link.proxy_partitioned()
            and not self.backpressured
            and peer is not None
            and peer.transport is not None
            and not peer.transport.is_closing()
        )

    def update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.should_read():
            if not transport.is_reading():
                transport.resume_reading()
        elif transport.is_reading():
            transport.pause_reading()

    def flush_held(self) -> None:
        peer = self.peer
        if not self.held or peer is None or peer.transport is None:
            return
        chunks, self.held = self.held, []
        if not peer.transport.is_closing():
            for chunk in chunks:
                peer.transport.write(chunk)


class _Link:
    """A client connection and (once opened) its upstream connection."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.client = _Side(self, "client")
        self.upstream: _Side | None = None
        self.connect_task: asyncio.Task[None] | None = None
        self.finished = False

    def proxy_partitioned(self) -> bool:
        return self.proxy._partitioned

    def side_connected(self, side: _Side) -> None:
        if side is self.client:
            self.proxy._client_connected(self)
        side.update_reading()

    def start_upstream(self) -> None:
        if self.connect_task is None and not self.finished:
            self.connect_task = asyncio.get_running_loop().create_task(self._connect_upstream())

    async def _connect_upstream(self) -> None:
        loop = asyncio.get_running_loop()
        upstream = _Side(self, "upstream")
        upstream.peer = self.client
        try:
            await loop.create_connection(
                lambda: upstream, self.proxy._upstream_host, self.proxy._upstream_port
            )
        except (OSError, asyncio.CancelledError):
            # The upstream is unreachable: the client sees the connection reset, as it would
            # when connecting to a port nobody listens on.
            self.abort()
            return
        if self.finished:
            _abort_with_rst(upstream.transport)
            return
        self.upstream = upstream
        self.client.peer = upstream
        self.refresh()

    def refresh(self) -> None:
        """Re-apply the forwarding state after partition/heal or a new upstream."""
        for side in (self.client, self.upstream):
            if side is None:
                continue
            if not self.proxy._partitioned:
                side.flush_held()
            side.update_reading()

    def side_lost(self, side: _Side, exc: Exception | None) -> None:
        other = side.peer if side is self.client else self.client
        if other is not None and other.transport is not None and not other.transport.is_closing():
            if exc is None:
                other.transport.close()  # flushes what is buffered, then FIN
            else:
                _abort_with_rst(other.transport)
        if self.connect_task is not None and not self.connect_task.done():
            self.connect_task.cancel()
        if side is self.client:
            self.finished = True
            self.proxy._links.discard(self)

    def abort(self) -> None:
        self.finished = True
        if self.connect_task is not None and not self.connect_task.done():
            self.connect_task.cancel()
        _abort_with_rst(self.client.transport)
        if self.upstream is not None:
            _abort_with_rst(self.upstream.transport)
        self.proxy._links.discard(self)


class FaultProxy:
    """A TCP proxy in its own thread whose link can be partitioned, reset or refused."""

    def __init__(
        self,
        upstream_host: str = "127.0.0.1",
        upstream_port: int = 5672,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self._upstream_host = upstream_host
        self._upstream_port = upstream_port
        self._listen_host = listen_host
        self._listen_port = listen_port
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._links: set[_Link] = set()
        self._partitioned = False
        self._rejecting = False
        self._lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the proxy thread and its loop; returns once the listening socket is bound."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("FaultProxy already started")
            ready = threading.Event()
            errors: list[BaseException] = []
            thread = threading.Thread(
                target=self._run, args=(ready, errors), name="FaultProxy", daemon=True
            )
            thread.start()
            ready.wait()
            if errors:
                thread.join()
                raise errors[0]
            self._thread = thread

    def _run(self, ready: threading.Event, errors: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        try:
            try:
                server = loop.run_until_complete(
                    loop.create_server(
                        lambda: _Link(self).client,
                        self._listen_host,
                        self._listen_port,
                        reuse_address=True,
                    )
                )
            except BaseException as exc:
                errors.append(exc)
                return
            self._server = server
            self._port = server.sockets[0].getsockname()[1]
            self._loop = loop
            ready.set()
            loop.run_forever()
            # stop() has aborted every link already; close the listener and drain callbacks.
            server.close()
            loop.run_until_complete(server.wait_closed())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(asyncio.sleep(0))
        finally:
            ready.set()
            loop.close()

    def stop(self) -> None:
        """Abort every connection, close the listener and join the thread. Idempotent."""
        with self._lock:
            thread, loop = self._thread, self._loop
            if thread is None or loop is None:
                return
            if loop.is_running():
                with contextlib.suppress(RuntimeError, TimeoutError):
                    self._call(self._abort_all)
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=_CONTROL_TIMEOUT)
            self._thread = None
            self._loop = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- properties -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FaultProxy not started")
        return self._port

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self._listen_host}:{self.port}/"

    @property
    def connection_count(self) -> int:
        """Client connections currently open (forwarded, held or waiting for the upstream)."""
        return len(self._links)

    @property
    def partitioned(self) -> bool:
        return self._partitioned

    # -- faults -----------------------------------------------------------------------------------

    def partition(self) -> None:
        """Hold all bytes in both directions on existing and new connections."""
        self._call(self._set_partitioned, True)

    def heal(self) -> None:
        """Resume forwarding; held bytes flow and held new connections reach the upstream."""
        self._call(self._set_partitioned, False)

    def reset(self) -> None:
        """Abort every current connection with an RST on both sides; new connections work."""
        self._call(self._abort_all)

    def reject_new(self, on: bool) -> None:
        """While on, accept and immediately reset every new client connection."""
        self._call(self._set_rejecting, on)

    # -- loop-thread side -------------------------------------------------------------------------

    def _call(self, fn: Callable[..., _T], *args: object) -> _T:
        loop = self._loop
        if loop is None or not loop.is_running():
            raise RuntimeError("FaultProxy not running")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # called from a callback in the proxy's own loop
            return fn(*args)

        async def invoke() -> _T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(invoke(), loop).result(_CONTROL_TIMEOUT)

    def _client_connected(self, link: _Link) -> None:
        if self._rejecting:
            link.abort()
            return
        self._links.add(link)
        if not self._partitioned:
            link.start_upstream()

    def _set_partitioned(self, on: bool) -> None:
        self._partitioned = on
        for link in list(self._links):
            link.refresh()
            if not on:
                link.start_upstream()

    def _set_rejecting(self, on: bool) -> None:
        self._rejecting = on

    def _abort_all(self) -> None:
        for link in list(self._links):
            link.abort()
        self._links.clear()
