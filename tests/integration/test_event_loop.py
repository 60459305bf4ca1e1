"""Every way the gateway starts runs on uvloop with uvicorn's httptools parser, unless
BREAKWATER_EVENT_LOOP=asyncio says otherwise: seen in the start-up log and in the shared objects
the running process has loaded (/proc/<pid>/maps), with an event published through it."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from app.catalog.default import DEFAULT_CATALOG

from .gateway_process import GatewayProcess

pytestmark = pytest.mark.integration

ORDER = DEFAULT_CATALOG["orders.created"].example
BREAKWATER = str(Path(sys.executable).with_name("breakwater"))


@pytest.fixture
def gateway(broker_url: str, tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(command: list[str], **env: str) -> GatewayProcess:
        settings = {
            "BREAKWATER_BROKER_URL": broker_url,
            "BREAKWATER_STORE_PATH": str(tmp_path / f"store-{len(started)}.db"),
            **env,
        }
        process = GatewayProcess(settings, tmp_path / f"gateway-{len(started)}.log")
        process.command = [part.replace("{port}", str(process.port)) for part in command]
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


def loaded(process: GatewayProcess) -> str:
    assert process.proc is not None
    return Path(f"/proc/{process.proc.pid}/maps").read_text()


def publishes(process: GatewayProcess) -> None:
    answer = httpx.post(f"{process.base_url}/v1/events/orders.created", json=ORDER)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "published"


FASTSTREAM_RUN = [
    sys.executable,
    "-m",
    "faststream",
    "run",
    "app.main:app",
    "--host",
    "127.0.0.1",
    "--port",
    "{port}",
]
STARTS = {
    "python -m app": [sys.executable, "-m", "app"],
    "breakwater run": [BREAKWATER, "run"],
    "faststream run": FASTSTREAM_RUN,
}


@pytest.mark.parametrize("how", sorted(STARTS))
def test_every_way_of_starting_runs_on_uvloop_and_httptools(
    gateway: Callable[..., GatewayProcess], how: str
) -> None:
    assert shutil.which(BREAKWATER), "the breakwater console script is installed with the package"
    process = gateway(STARTS[how])
    publishes(process)
    maps = loaded(process)
    assert "/uvloop/" in maps
    assert "/httptools/" in maps
    assert "breakwater ready on the uvloop event loop" in process.logs()


def test_the_asyncio_setting_runs_on_the_standard_loop(
    gateway: Callable[..., GatewayProcess],
) -> None:
    process = gateway(STARTS["python -m app"], BREAKWATER_EVENT_LOOP="asyncio")
    publishes(process)
    assert "/uvloop/" not in loaded(process)
    assert "breakwater ready on the asyncio event loop" in process.logs()
    assert "chose" not in process.logs()


def test_faststream_run_says_how_to_get_the_loop_the_setting_asks_for(
    gateway: Callable[..., GatewayProcess],
) -> None:
    # `faststream run` creates its loop before the gateway reads a setting.
    process = gateway(FASTSTREAM_RUN, BREAKWATER_EVENT_LOOP="asyncio")
    publishes(process)
    assert "add `--loop asyncio:new_event_loop`" in process.logs()

    followed = gateway(
        [*FASTSTREAM_RUN, "--loop", "asyncio:new_event_loop"], BREAKWATER_EVENT_LOOP="asyncio"
    )
    publishes(followed)
    assert "breakwater ready on the asyncio event loop" in followed.logs()
    assert "/uvloop/" not in loaded(followed)
