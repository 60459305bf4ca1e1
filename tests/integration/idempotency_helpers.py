"""Helpers for the idempotency tests: a gateway started by another command line (to stop it at an
exact point), `/metrics` samples, and "exactly this many copies arrived"."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from prometheus_client.parser import text_string_to_metric_families

from .consumers import collect, drain_now
from .gateway_process import GatewayProcess

# Run as `python -c NEVER_WRITE_KEYS <marker>`: the gateway exactly as `python -m app` runs it
# (app/__main__.py), except that the keys of published events, when handed to the store for
# writing (after the broker's confirm and the answer), are written to `<marker>` instead and
# never to the store: the process then stands for one killed before that write.
NEVER_WRITE_KEYS = """
import asyncio
import sys
from pathlib import Path

from app.store import fallback as store

marker = Path(sys.argv[1])


def never_written(self, keys):
    marker.write_text(",".join(key.key for key in keys))
    return asyncio.get_running_loop().create_future()  # never answered: never written


store.FallbackStore.remember_nowait = never_written

from app.operations.server import serve

serve()
"""


def keys_on_disk(store_path: Path) -> set[str]:
    """The idempotency keys committed to a store file, read beside the gateway that owns it."""
    with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True) as conn:
        return {key for (key,) in conn.execute("SELECT key FROM idempotency_keys")}


class CommandGateway(GatewayProcess):
    """A `GatewayProcess` whose child runs `argv` instead of `python -m app` (same environment,
    working directory, log file and readiness wait)."""

    def __init__(self, env: Mapping[str, str], log_path: Path, argv: Sequence[str]) -> None:
        super().__init__(env, log_path)
        self.command = list(argv)

    @classmethod
    def never_writing_keys(
        cls, env: Mapping[str, str], log_path: Path, marker: Path
    ) -> CommandGateway:
        """The gateway with NEVER_WRITE_KEYS: published events' keys never reach the store."""
        return cls(env, log_path, [sys.executable, "-c", NEVER_WRITE_KEYS, str(marker)])


async def metric(base_url: str, name: str, **labels: str) -> float:
    """One sample of the gateway's `/metrics`; 0 when it is not exported (a counter not hit)."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{base_url}/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


async def wait_metric(
    base_url: str,
    expected: float,
    name: str,
    *,
    timeout_s: float = 10.0,
    **labels: str,
) -> None:
    """Wait until the sample has the `expected` value; fail with the last value seen."""
    deadline = time.monotonic() + timeout_s
    while (value := await metric(base_url, name, **labels)) != expected:
        assert time.monotonic() < deadline, f"{name}{labels} is {value}, not {expected}"
        await asyncio.sleep(0.1)


async def receive_exactly(
    queue: AbstractQueue,
    message_id: str,
    count: int,
    *,
    quiet_s: float = 1.0,
    timeout_s: float = 20.0,
) -> list[AbstractIncomingMessage]:
    """The `count` copies of `message_id` that reach `queue`, then nothing more of it for
    `quiet_s` (a late duplicate would show up by then)."""
    got = []
    if count:
        got = await collect(
            queue, count, timeout=timeout_s, keep=lambda message: message.message_id == message_id
        )
    await asyncio.sleep(quiet_s)
    extra = [message for message in await drain_now(queue) if message.message_id == message_id]
    assert not extra, f"{len(extra)} more copies of {message_id} than the {count} expected"
    return got


def kill_9(gateway: GatewayProcess) -> None:
    """SIGKILL, and wait until the process is gone."""
    assert gateway.proc is not None
    if gateway.proc.poll() is None:
        gateway.proc.kill()
    gateway.wait(10)


def path_of(message: AbstractIncomingMessage) -> str:
    """The `x-breakwater-path` header: `direct` or `replay`."""
    value = (message.headers or {}).get("x-breakwater-path")
    return value.decode() if isinstance(value, bytes) else str(value)
