"""Integration fixtures: a private vhost on the shared RabbitMQ per test session, the real gateway as
a child process, and consumers bound to `breakwater.events`."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aio_pika
import pytest

from .gateway_process import GatewayProcess

RABBITMQCTL = os.environ.get("RABBITMQCTL", "rabbitmqctl")


def _ctl(*args: str) -> None:
    subprocess.run([RABBITMQCTL, *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def vhost() -> Iterator[str]:
    """Everything the suite declares lives in a vhost of its own, deleted at the end."""
    name = f"breakwater-test-{uuid.uuid4().hex[:8]}"
    _ctl("add_vhost", name)
    _ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    _ctl("delete_vhost", name)


@pytest.fixture(scope="session")
def broker_url(vhost: str) -> str:
    return f"amqp://guest:guest@127.0.0.1:5672/{vhost}"


@pytest.fixture
def start_gateway(broker_url: str, tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(wait_connected: bool = True, **env: str) -> GatewayProcess:
        settings = {
            "BREAKWATER_BROKER_URL": broker_url,
            "BREAKWATER_STORE_PATH": str(tmp_path / f"store-{len(started)}.db"),
            **{f"BREAKWATER_{key.upper()}": value for key, value in env.items()},
        }
        process = GatewayProcess(settings, tmp_path / f"gateway-{len(started)}.log")
        started.append(process)
        return process.start(wait_connected=wait_connected)

    yield start
    for process in started:
        process.stop()


@pytest.fixture
async def amqp(broker_url: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(broker_url)
    yield connection
    await connection.close()
