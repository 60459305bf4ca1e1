"""Small tools for the chaos scenarios: HTTP load, delivery waits, inbound preloading, a silent
broker, a tiny filesystem for the store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Self

import aio_pika
import httpx

from app.broker.topology import inbound_queue_arguments
from tests.integration.gateway_process import GatewayProcess
from tests.integration.outage_helpers import Recorder, Sender, payload

CHANNEL_NAMES = ("orders.created", "orders.cancelled", "payments.captured")
# Outages are noticed fast: a publish waits at most 1 s, two failures open the breaker.
FAST_BREAKER = {
    "publish_timeout_s": "1",
    "breaker_fail_max": "2",
    "breaker_reset_timeout_s": "1",
}


class Load:
    """One sequential HTTP sender per channel, in threads, until stopped."""

    def __init__(self, base_url: str, prefix: str, channels: Sequence[str] = CHANNEL_NAMES):
        self.senders = [Sender(base_url, channel, prefix) for channel in channels]

    def start(self) -> Self:
        for sender in self.senders:
            sender.start()
        return self

    def stop(self) -> None:
        for sender in self.senders:
            sender.stop()

    def sent(self) -> int:
        return sum(len(sender.answers) for sender in self.senders)

    def accepted_ids(self) -> list[str]:
        return [i for sender in self.senders for i in sender.accepted_ids()]

    def answers(self) -> list:
        return [a for sender in self.senders for a in sender.answers]

    def wait_sent(self, count: int, timeout: float = 30.0) -> None:
        wait(lambda: self.sent() >= count, timeout, f"{count} HTTP answers")


def wait(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


def deliveries(*recorders: Recorder) -> list[tuple[str, float]]:
    return [(d.message_id, d.received) for r in recorders for d in r.deliveries()]


def wait_delivered(ids: Sequence[str] | set[str], *recorders: Recorder, timeout: float) -> bool:
    """True once every id arrived at one of the recorders; False after `timeout`. Then waits for
    late duplicates to come in, so that the accounting counts them."""
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while True:
        seen = {m for r in recorders for m in r.seen_ids()}
        if wanted <= seen:
            for recorder in recorders:
                recorder.wait_quiet(0.5, timeout=5)
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def readyz(gateway: GatewayProcess) -> dict:
    return httpx.get(f"{gateway.base_url}/readyz", timeout=5).json()


def accepted_total(gateway: GatewayProcess) -> float:
    """breakwater_events_accepted_total summed over channels and outcomes."""
    return counter_total(gateway, "breakwater_events_accepted_total")


def counter_total(gateway: GatewayProcess, name: str) -> float:
    """A counter of the gateway's /metrics summed over its labels (0 when not exported yet)."""
    text = httpx.get(f"{gateway.base_url}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- AMQP ingress ----------------------------------------------------------------------------------

INBOUND_ARGUMENTS = inbound_queue_arguments(single_active_consumer=True)


def preload(url: str, channel: str, ids: Sequence[str]) -> None:
    """Publish one valid, persistent message per id to `breakwater.in.<channel>` (declared as the
    gateway declares it), pipelined, every one confirmed."""

    async def run() -> None:
        connection = await aio_pika.connect(url)
        async with connection:
            amqp = await connection.channel(publisher_confirms=True)
            await amqp.declare_queue(
                f"breakwater.in.{channel}", durable=True, arguments=INBOUND_ARGUMENTS
            )
            for start in range(0, len(ids), 250):
                await asyncio.gather(
                    *(
                        amqp.default_exchange.publish(
                            aio_pika.Message(
                                json.dumps(payload(channel, message_id)).encode(),
                                content_type="application/json",
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                message_id=message_id,
                            ),
                            routing_key=f"breakwater.in.{channel}",
                        )
                        for message_id in ids[start : start + 250]
                    )
                )

    asyncio.run(run())


def ready_count(url: str, queue: str) -> int:
    """Ready messages of a queue (passive declare); unacked ones count once their consumer is gone."""
    return _queue_counts(url, queue)[0]


def consumer_count(url: str, queue: str) -> int:
    """Consumers of a queue; 0 while the queue does not exist yet."""
    try:
        return _queue_counts(url, queue)[1]
    except aio_pika.exceptions.ChannelClosed:  # NOT_FOUND
        return 0


def _queue_counts(url: str, queue: str) -> tuple[int, int]:
    async def run() -> tuple[int, int]:
        connection = await aio_pika.connect(url)
        async with connection:
            amqp = await connection.channel()
            declared = await amqp.declare_queue(queue, passive=True)
            result = declared.declaration_result
            return int(result.message_count or 0), int(result.consumer_count or 0)

    return asyncio.run(run())


def delete_queue(url: str, queue: str) -> None:
    async def run() -> None:
        connection = await aio_pika.connect(url, timeout=10)
        async with connection:
            amqp = await connection.channel()
            await amqp.queue_delete(queue)

    asyncio.run(run())


# -- a broker that accepts TCP and never answers ------------------------------------------------------


class SilentBroker:
    """A TCP server in its own thread that accepts every connection, reads, and never writes."""

    def __init__(self) -> None:
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass  # swallow the AMQP header and everything after it; answer nothing

    def __enter__(self) -> Self:
        self._thread.start()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(self._serve, "127.0.0.1", 0)

        self._server = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            for writer in self._writers:
                writer.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


# -- a tiny filesystem for the store ---------------------------------------------------------------


def try_mount_tmpfs(directory: Path, size: str) -> str | None:
    """Mount a tmpfs of `size` on `directory`; None on success, else why not."""
    directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return f"mount -t tmpfs failed ({proc.returncode}): {proc.stderr.strip()}"
    return None


def remount_read_only(directory: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True, capture_output=True)


def umount(directory: Path) -> None:
    if os.path.ismount(directory):
        subprocess.run(["umount", "-l", str(directory)], check=False, capture_output=True)


@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[str | None]:
    """Yields None with the tmpfs mounted (unmounted afterwards), or the reason it could not be."""
    why = try_mount_tmpfs(directory, size)
    try:
        yield why
    finally:
        if why is None:
            umount(directory)
