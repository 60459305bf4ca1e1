"""Proof that the fault tools really produce the faults the gateway tests rely on."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue

from tests.support.fault_proxy import FaultProxy
from tests.support.fixtures import (  # noqa: F401  (fixtures are used by name)
    SHARED_HOST,
    SHARED_PORT,
    fixture_fault_proxy,
    fixture_private_rabbit,
)
from tests.support.rabbit_node import RabbitNode

pytestmark = pytest.mark.integration

SHARED_URL = f"amqp://guest:guest@{SHARED_HOST}:{SHARED_PORT}/"
HELD = 1.0  # a held publish must not be confirmed within this many seconds
RELEASE = 10.0  # ... and must be confirmed within this many once the fault is undone
# What connecting to a refusing/reset/stopped endpoint raises (aiormq wraps some, not all).
CONNECT_ERRORS = (ConnectionError, OSError, aiormq.exceptions.AMQPConnectionError)


def _queue_name() -> str:
    return f"bw-selfcheck-{uuid.uuid4().hex[:12]}"


async def _declare(channel: AbstractChannel, name: str) -> AbstractQueue:
    # x-expires: a safety net should the explicit delete below never run.
    return await channel.declare_queue(name, durable=True, arguments={"x-expires": 60_000})


async def _publish(channel: AbstractChannel, name: str, body: bytes) -> None:
    await channel.default_exchange.publish(
        aio_pika.Message(body, message_id=uuid.uuid4().hex), routing_key=name
    )


async def _receive(queue: AbstractQueue, count: int = 1, wait: float = 5.0) -> list[bytes]:
    """Consume (basic.consume, not basic.get) ``count`` messages, acking each."""
    bodies: list[bytes] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            bodies.append(message.body)
        if len(bodies) >= count and not done.done():
            done.set_result(None)

    tag = await queue.consume(on_message)
    try:
        await asyncio.wait_for(done, wait)
    finally:
        await queue.cancel(tag)
    return bodies


def _watch_close(connection: AbstractConnection) -> asyncio.Future[BaseException | None]:
    """A future resolved with the close reason when the connection closes for any reason."""
    closed: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def on_close(_sender: object, exc: BaseException | None = None) -> None:
        if not closed.done():
            closed.set_result(exc)

    connection.close_callbacks.add(on_close)
    return closed


async def _delete_queue(url: str, name: str) -> None:
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)


@pytest.fixture
async def shared_queue() -> AsyncIterator[str]:
    """A queue on the shared broker, declared directly (not through a proxy), always deleted."""
    name = _queue_name()
    connection = await aio_pika.connect(SHARED_URL, timeout=10)
    async with connection:
        await _declare(await connection.channel(), name)
    try:
        yield name
    finally:
        await _delete_queue(SHARED_URL, name)


# -- fault proxy in front of the shared broker --------------------------------------------------


async def test_proxy_forwards_publish_and_consume(
    fault_proxy: FaultProxy, shared_queue: str
) -> None:
    assert fault_proxy.url == f"amqp://guest:guest@127.0.0.1:{fault_proxy.port}/"
    connection = await aio_pika.connect(fault_proxy.url, timeout=10)
    async with connection:
        assert fault_proxy.connection_count == 1
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.get_queue(shared_queue, ensure=True)
        await asyncio.wait_for(_publish(channel, shared_queue, b"through the proxy"), 5)
        assert await _receive(queue) == [b"through the proxy"]
    for _ in range(100):  # the proxy sees the close a moment later, in its own thread
        if fault_proxy.connection_count == 0:
            break
        await asyncio.sleep(0.02)
    assert fault_proxy.connection_count == 0


async def test_partition_holds_bytes_and_heal_releases_them(
    fault_proxy: FaultProxy, shared_queue: str
) -> None:
    connection = await aio_pika.connect(fault_proxy.url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.get_queue(shared_queue, ensure=True)
        await asyncio.wait_for(_publish(channel, shared_queue, b"before"), 5)

        fault_proxy.partition()
        held = asyncio.create_task(_publish(channel, shared_queue, b"held"))
        late = asyncio.create_task(aio_pika.connect(fault_proxy.url))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(held), HELD)
        assert not late.done(), "a new connection must not get through a partition"
        assert fault_proxy.connection_count == 2  # accepted, held, not forwarded

        fault_proxy.heal()
        started = time.monotonic()
        await asyncio.wait_for(held, RELEASE)  # the held publish is confirmed after all
        late_connection = await asyncio.wait_for(late, RELEASE)
        released_after = time.monotonic() - started
        await late_connection.close()

        await asyncio.wait_for(_publish(channel, shared_queue, b"after"), 5)
        bodies = await _receive(queue, 3)
        assert bodies == [b"before", b"held", b"after"]
        assert released_after < 2


class _SinkServer:
    """A plain TCP server (no asyncio) that counts the bytes it receives."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.received = 0
        self.error: OSError | None = None
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return  # closed before anyone connected
        with conn:
            try:
                while chunk := conn.recv(1 << 16):
                    self.received += len(chunk)
            except OSError as exc:
                self.error = exc
            finally:
                self.ended.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes a pending accept()
        self.listener.close()
        self._thread.join(timeout=5)


@pytest.fixture
def sink() -> Iterator[_SinkServer]:
    server = _SinkServer()
    try:
        yield server
    finally:
        server.close()


def test_partition_applies_tcp_backpressure(sink: _SinkServer) -> None:
    """While partitioned the proxy reads nothing: the sender blocks once kernel buffers fill."""
    with FaultProxy("127.0.0.1", sink.port) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port))
        with client:
            client.sendall(b"x" * 1000)
            deadline = time.monotonic() + 5
            while sink.received < 1000 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert sink.received == 1000

            proxy.partition()
            client.setblocking(False)
            sent, chunk, limit = 0, b"y" * (1 << 16), 256 << 20
            with pytest.raises(BlockingIOError):  # noqa: PT012
                while sent < limit:
                    sent += client.send(chunk)
            time.sleep(0.2)
            assert sink.received == 1000, "nothing may reach the upstream while partitioned"
            assert sent < 64 << 20, f"{sent} bytes accepted: the proxy is buffering, not holding"

            proxy.heal()
            deadline = time.monotonic() + 10
            while sink.received < 1000 + sent and time.monotonic() < deadline:
                time.sleep(0.01)
            assert sink.received == 1000 + sent


def test_reset_sends_rst_both_ways(sink: _SinkServer) -> None:
    with FaultProxy("127.0.0.1", sink.port) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port))
        with client:
            client.sendall(b"ping")
            deadline = time.monotonic() + 5
            while sink.received < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            proxy.reset()
            client.settimeout(5)
            with pytest.raises(ConnectionResetError):
                client.recv(1)
            assert sink.ended.wait(5)
            assert isinstance(sink.error, ConnectionResetError)
            assert proxy.connection_count == 0


async def test_reset_is_noticed_quickly(fault_proxy: FaultProxy, shared_queue: str) -> None:
    connection = await aio_pika.connect(fault_proxy.url, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await asyncio.wait_for(_publish(channel, shared_queue, b"x"), 5)
        closed = _watch_close(connection)
        started = time.monotonic()
        fault_proxy.reset()
        reason = await asyncio.wait_for(closed, 3)
        noticed_after = time.monotonic() - started
        print(f"aio-pika noticed the reset after {noticed_after * 1000:.1f} ms: {reason!r}")
        assert noticed_after < 3
        assert fault_proxy.connection_count == 0
        with pytest.raises(Exception):  # noqa: B017, PT011  (any error, as long as it is fast)
            await asyncio.wait_for(_publish(channel, shared_queue, b"y"), 3)
    finally:
        await connection.close()
    # The proxy itself still works.
    again = await aio_pika.connect(fault_proxy.url, timeout=10)
    await again.close()


async def test_reject_new_refuses_connections(fault_proxy: FaultProxy) -> None:
    existing = await aio_pika.connect(fault_proxy.url, timeout=10)
    try:
        fault_proxy.reject_new(True)
        started = time.monotonic()
        with pytest.raises(CONNECT_ERRORS):
            await aio_pika.connect(fault_proxy.url, timeout=5)
        assert time.monotonic() - started < 2, "refusal must be immediate, not a timeout"
        assert fault_proxy.connection_count == 1
        # Existing connections are not affected.
        channel = await asyncio.wait_for(existing.channel(), 5)
        await channel.close()

        fault_proxy.reject_new(False)
        allowed = await aio_pika.connect(fault_proxy.url, timeout=10)
        await allowed.close()
    finally:
        await existing.close()


def test_proxy_stop_is_idempotent_and_closes_clients() -> None:
    proxy = FaultProxy()
    proxy.start()
    client = socket.create_connection(("127.0.0.1", proxy.port))
    with client:
        client.settimeout(5)
        deadline = time.monotonic() + 5
        while proxy.connection_count == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        proxy.stop()
        proxy.stop()
        try:
            data = client.recv(1)
        except ConnectionError:
            data = b""  # RST: fine
        assert data == b"", "the client must see EOF or a reset once the proxy stops"
    with pytest.raises(OSError):  # noqa: PT011
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()


# -- the private node ------------------------------------------------------------------------------


@pytest.fixture
async def private_queue(private_rabbit: RabbitNode) -> AsyncIterator[str]:
    name = _queue_name()
    connection = await aio_pika.connect(private_rabbit.url, timeout=10)
    async with connection:
        await _declare(await connection.channel(), name)
    try:
        yield name
    finally:
        try:
            await _delete_queue(private_rabbit.url, name)
        except Exception:
            # A test left a fault behind: undo it, then the delete works.
            await asyncio.to_thread(private_rabbit.reset_faults)
            await _delete_queue(private_rabbit.url, name)


async def test_private_node_is_private_and_works(
    private_rabbit: RabbitNode, private_queue: str
) -> None:
    print(f"private node {private_rabbit.name} started in {private_rabbit.last_start_seconds}s")
    assert private_rabbit.amqp_port != SHARED_PORT
    assert private_rabbit.is_running()
    # Nothing but our two ports on loopback: no management plugin, nothing on 5672/25672.
    listeners = {
        (item["protocol"], item["interface"], item["port"])
        for item in private_rabbit.status()["listeners"]
    }
    assert listeners == {
        ("amqp", "127.0.0.1", private_rabbit.amqp_port),
        ("clustering", "127.0.0.1", private_rabbit.dist_port),
    }
    connection = await aio_pika.connect(private_rabbit.url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.get_queue(private_queue, ensure=True)
        await asyncio.wait_for(_publish(channel, private_queue, b"private"), 5)
        assert await _receive(queue) == [b"private"]


async def test_memory_alarm_blocks_publishers(
    private_rabbit: RabbitNode, private_queue: str
) -> None:
    connection = await aio_pika.connect(private_rabbit.url, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await asyncio.to_thread(private_rabbit.set_memory_alarm, True)
        blocked = asyncio.create_task(_publish(channel, private_queue, b"blocked"))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(blocked), HELD)
        assert connection.connected.is_set(), "a blocked connection still looks connected"

        await asyncio.to_thread(private_rabbit.set_memory_alarm, False)
        await asyncio.wait_for(blocked, RELEASE)
        queue = await channel.get_queue(private_queue, ensure=True)
        assert await _receive(queue) == [b"blocked"]
    finally:
        await asyncio.to_thread(private_rabbit.set_memory_alarm, False)
        await connection.close()


async def test_close_all_connections_closes_clients(private_rabbit: RabbitNode) -> None:
    connection = await aio_pika.connect(private_rabbit.url, timeout=10)
    try:
        closed = _watch_close(connection)
        await asyncio.to_thread(private_rabbit.close_all_connections, "selfcheck-close")
        reason = await asyncio.wait_for(closed, 5)
        assert "selfcheck-close" in str(reason)
    finally:
        await connection.close()


async def test_stop_app_and_start_app(private_rabbit: RabbitNode, private_queue: str) -> None:
    connection = await aio_pika.connect(private_rabbit.url, timeout=10)
    try:
        closed = _watch_close(connection)
        await asyncio.to_thread(private_rabbit.stop_app)
        await asyncio.wait_for(closed, 5)
        with pytest.raises(CONNECT_ERRORS):
            await aio_pika.connect(private_rabbit.url, timeout=5)
    finally:
        await connection.close()
        await asyncio.to_thread(private_rabbit.start_app)

    connection = await aio_pika.connect(private_rabbit.url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.get_queue(private_queue, ensure=True)  # survived the restart
        await asyncio.wait_for(_publish(channel, private_queue, b"back"), 5)
        assert await _receive(queue) == [b"back"]


async def test_pause_freezes_the_node(private_rabbit: RabbitNode, private_queue: str) -> None:
    connection = await aio_pika.connect(private_rabbit.url, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True)
        private_rabbit.pause()
        try:
            frozen = asyncio.create_task(_publish(channel, private_queue, b"frozen"))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(frozen), HELD)
        finally:
            private_rabbit.resume()
        await asyncio.wait_for(frozen, RELEASE)
    finally:
        await connection.close()


async def test_kill9_then_restart(private_rabbit: RabbitNode) -> None:
    """Runs last: kills the session node and leaves it restarted for later test files."""
    connection = await aio_pika.connect(private_rabbit.url, timeout=10)
    try:
        closed = _watch_close(connection)
        old_pid = private_rabbit.os_pid()
        await asyncio.to_thread(private_rabbit.kill9)
        await asyncio.wait_for(closed, 5)
        assert not private_rabbit.is_running()
        with pytest.raises(CONNECT_ERRORS):
            await aio_pika.connect(private_rabbit.url, timeout=5)
    finally:
        await connection.close()
        if not private_rabbit.is_running():
            await asyncio.to_thread(private_rabbit.start)
    print(f"private node restarted after kill -9 in {private_rabbit.last_start_seconds}s")
    assert private_rabbit.os_pid() != old_pid
    connection = await aio_pika.connect(private_rabbit.url, timeout=10)
    await connection.close()
