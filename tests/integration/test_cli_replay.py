"""`breakwater store replay`: drain a store file (say, a volume recovered from a dead pod) to the real
broker without the HTTP server, in order, with the original envelopes, at the rate asked for."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from app.catalog.default import DEFAULT_CATALOG
from app.events import Event
from app.store.fallback import FallbackStore, StoreReader

from .consumers import bind_queue

pytestmark = pytest.mark.integration

BREAKWATER = Path(sys.executable).with_name("breakwater")
COUNT = 24
RATE = 20


async def fill_store(path: Path, run: str) -> list[Event]:
    channels = ("orders.created", "orders.cancelled")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    events = [
        Event(
            channel=channels[n % 2],
            body=json.dumps(
                {**DEFAULT_CATALOG[channels[n % 2]].example, "order_id": f"{run}-{n}"}
            ).encode(),
            message_id=f"{run}-{n:03d}",
            correlation_id=f"corr-{run}-{n}",
            timestamp=start + timedelta(seconds=n),
        )
        for n in range(COUNT)
    ]
    async with FallbackStore(path, max_bytes=10**6) as store:
        for event in events:
            await store.put(event)
    return events


@pytest.mark.parametrize("configured_by", ["options", "settings"])
async def test_store_replay_drains_a_store_file_in_order_with_original_ids_at_the_given_rate(
    configured_by: str, amqp: AbstractRobustConnection, broker_url: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:10]
    path = tmp_path / "recovered" / "fallback.db"
    events = await fill_store(path, run)
    queue = await bind_queue(amqp)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKWATER_")}
    args = ["store", "replay"]
    if configured_by == "options":
        args += ["--path", str(path), "--broker-url", broker_url, "--rate", str(RATE)]
    else:
        env |= {
            "BREAKWATER_STORE_PATH": str(path),
            "BREAKWATER_BROKER_URL": broker_url,
            "BREAKWATER_REPLAY_RATE": str(RATE),
        }

    proc = await asyncio.create_subprocess_exec(
        str(BREAKWATER),
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    arrivals: list[tuple[float, AbstractIncomingMessage]] = []
    async with asyncio.timeout(30), queue.iterator() as messages:
        async for message in messages:
            await message.ack()
            if (message.message_id or "").startswith(run):
                arrivals.append((time.monotonic(), message))
            if len(arrivals) == COUNT:
                break
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)

    assert proc.returncode == 0, stderr.decode()
    assert json.loads(stdout) == {"replayed": COUNT}
    received = [message for _, message in arrivals]
    for channel in ("orders.created", "orders.cancelled"):
        sent = [e.message_id for e in events if e.channel == channel]
        assert [m.message_id for m in received if m.routing_key == channel] == sent
    originals = {event.message_id: event for event in events}
    for message in received:
        event = originals[str(message.message_id)]
        assert message.headers["x-breakwater-path"] == "replay"
        assert message.correlation_id == event.correlation_id
        assert message.body == event.body
        assert message.type == event.channel
        assert message.delivery_mode == 2
        assert message.timestamp is not None
        assert message.timestamp.replace(tzinfo=UTC) == event.timestamp
    # At most RATE per second (burst 1): COUNT events take at least (COUNT - 1) / RATE seconds.
    span = arrivals[-1][0] - arrivals[0][0]
    assert span >= (COUNT - 1) / RATE * 0.9, f"{COUNT} events arrived within {span:.2f}s"
    with StoreReader(path) as reader:
        assert reader.stats()["depth"] == 0
