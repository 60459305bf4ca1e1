"""The README's consumer how-to, run as written: `faststream run billing:app` beside a real gateway."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection

from app.broker.topology import EVENTS_EXCHANGE
from app.catalog.default import DEFAULT_CATALOG

from .gateway_process import GatewayProcess

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/consumer"
QUEUE = "billing.orders"


def _invoices(db: Path) -> list[tuple[str, str, str]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT * FROM invoices ORDER BY rowid").fetchall()


@pytest.fixture
def start_billing(
    broker_url: str, tmp_path: Path
) -> Iterator[Callable[[], tuple[subprocess.Popen[bytes], Path]]]:
    """Starts the example; it binds to the exchange the gateway declared, so start it after."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> tuple[subprocess.Popen[bytes], Path]:
        db, log = tmp_path / "billing.db", tmp_path / "billing.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "faststream", "run", "billing:app"],
                cwd=EXAMPLE,
                env={**os.environ, "BROKER_URL": broker_url, "BILLING_DB": str(db)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        return process, log

    yield start
    for process in started:
        process.terminate()
        process.wait(20)


async def _wait_for_consumer(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until the example consumes its queue. Each look on a connection of its own, not robust:
    a robust channel closed by a passive declare of a missing queue would try to restore it."""
    deadline = time.monotonic() + 30
    seen = "the queue was never declared"
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(QUEUE, passive=True)
            if queue.declaration_result.consumer_count:
                return
            seen = "the queue has no consumer"
        except aio_pika.exceptions.ChannelClosed as exc:  # not declared yet
            seen = f"the queue is not there ({exc})"
        finally:
            await connection.close()
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the example consumer did not start: {seen}\n{log.read_text()}")


async def test_the_readme_consumer_invoices_each_order_once(
    start_gateway: Callable[..., GatewayProcess],
    amqp: AbstractRobustConnection,
    start_billing: Callable[[], tuple[subprocess.Popen[bytes], Path]],
    broker_url: str,
    tmp_path: Path,
) -> None:
    gateway = start_gateway()
    process, log = start_billing()
    await _wait_for_consumer(broker_url, process, log)
    orders = [
        {**DEFAULT_CATALOG["orders.created"].example, "order_id": f"ord-{n}"} for n in range(3)
    ]
    ids = []
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        for order in orders:
            response = await client.post("/v1/events/orders.created", json=order)
            assert response.status_code == 202, response.text
            ids.append(response.json()["message_id"])
        # Events of another channel are not routed to billing's queue.
        cancelled = DEFAULT_CATALOG["orders.cancelled"].example
        assert (await client.post("/v1/events/orders.cancelled", json=cancelled)).is_success

    # At-least-once: the copy a replay after a lost confirm would send, same message_id.
    channel = await amqp.channel()
    exchange = await channel.get_exchange(EVENTS_EXCHANGE)
    body = json.dumps({**orders[1], "total": "25.00"}).encode()
    duplicate = aio_pika.Message(body, message_id=ids[1], content_type="application/json")
    await exchange.publish(duplicate, routing_key="orders.created")

    db = tmp_path / "billing.db"
    deadline = time.monotonic() + 15
    # The duplicate may be handled before a later order commits (see below): wait for both.
    while time.monotonic() < deadline and (
        "duplicate" not in log.read_text() or len(_invoices(db)) < len(orders)
    ):
        await asyncio.sleep(0.1)
    try:
        assert process.poll() is None, log.read_text()
        assert f"duplicate {ids[1]}: order ord-1 already invoiced" in log.read_text()
        invoices = _invoices(db)
        expected = [(i, o["order_id"]) for i, o in zip(ids, orders, strict=True)]
        # Each order once; not in any order: FastStream runs a subscriber's messages as tasks of
        # their own, so on a busy machine a later order's transaction may commit first.
        assert sorted((i, o) for i, o, _ in invoices) == sorted(expected)
        assert {total for _, _, total in invoices} == {"25.00"}
    finally:
        await channel.queue_delete(QUEUE)
