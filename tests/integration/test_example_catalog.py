"""The example catalog package (examples/my-events), installed the way its README says and served by
the real gateway (`python -m app`, RabbitMQ): found through its `breakwater.catalogs` entry point
with no setting, or named by `BREAKWATER_CATALOG=my_events.catalog:catalog`.

The package is installed with pip into a directory of its own (`--target`, offline: no
dependencies, no build isolation, no index) and put on the gateway's PYTHONPATH: its
`.dist-info` there is what `importlib.metadata.entry_points` reads, as from any site-packages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection

from .consumers import bind_queue, collect
from .gateway_process import ROOT, GatewayProcess

pytestmark = pytest.mark.integration

EXAMPLE = ROOT / "examples" / "my-events"
BREAKWATER = Path(sys.executable).with_name("breakwater")
CHANNELS = ["invoices.issued", "invoices.paid"]
MODELS = {"InvoiceIssued", "InvoiceLine", "InvoicePaid"}


@pytest.fixture(scope="module")
def example_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PYTHONPATH with the example package installed on it, and the project root.

    The root is there as for `python -m app` run from it: `breakwater` (the names the example
    imports) is then importable by the console script too, whatever the environment's install
    of the project maps (an editable install made before `breakwater/` existed maps only `app`).
    """
    work = tmp_path_factory.mktemp("my-events")
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds.
    source = work / "src"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    site = work / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",  # the project's own setuptools builds it
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert (site / "my_events-1.0.0.dist-info" / "entry_points.txt").is_file()
    return os.pathsep.join([str(site), str(ROOT)])


async def publish_inbound(
    connection: AbstractRobustConnection, channel_name: str, body: bytes, message_id: str
) -> None:
    """What a producer on the broker does: a persistent message to `breakwater.in.<channel>`."""
    channel = await connection.channel(publisher_confirms=True)
    message = aio_pika.Message(
        body, content_type="application/json", delivery_mode=2, message_id=message_id
    )
    await channel.default_exchange.publish(message, routing_key=f"breakwater.in.{channel_name}")
    await channel.close()


def run_python(pythonpath: str, code: str) -> Any:
    """The JSON `code` prints, run by the project's interpreter with `pythonpath`."""
    env = {**os.environ, "PYTHONPATH": pythonpath}
    env.pop("BREAKWATER_CATALOG", None)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def examples(example_path: str) -> dict[str, Any]:
    """Each channel's example, read from the installed package (written the way the gateway
    forwards them: amounts as decimal strings, dates ISO)."""
    code = (
        "import json; from my_events.catalog import catalog;"
        " print(json.dumps({name: channel.example for name, channel in catalog.items()}))"
    )
    found: dict[str, Any] = run_python(example_path, code)
    assert list(found) == CHANNELS
    return found


def test_the_installed_package_is_found_through_its_entry_point(example_path: str) -> None:
    code = (
        "import json; from importlib.metadata import entry_points;"
        " print(json.dumps([[p.name, p.value, str(p.dist.locate_file(''))]"
        " for p in entry_points(group='breakwater.catalogs') if p.name != 'default']))"
    )
    [[name, value, location]] = run_python(example_path, code)
    assert (name, value) == ("my-events", "my_events.catalog:catalog")
    assert location == example_path.split(os.pathsep)[0]  # the --target directory, not the venv


@pytest.mark.parametrize("named", [[], ["my-events"]], ids=["installed", "by-name"])
def test_breakwater_catalog_validate_accepts_it(example_path: str, named: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": example_path}
    env.pop("BREAKWATER_CATALOG", None)
    result = subprocess.run(
        [str(BREAKWATER), "catalog", "validate", *named],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == (
        "entry point 'my-events': 2 channels, no problems (invoices.issued, invoices.paid)"
    )


@pytest.mark.parametrize(
    "catalog",
    [None, "my_events.catalog:catalog"],
    ids=["no-setting", "module-attribute"],
)
async def test_the_gateway_serves_the_example_catalog(
    start_gateway: Callable[..., GatewayProcess],
    amqp: AbstractRobustConnection,
    monkeypatch: pytest.MonkeyPatch,
    example_path: str,
    examples: dict[str, Any],
    catalog: str | None,
) -> None:
    monkeypatch.setenv("PYTHONPATH", example_path)
    monkeypatch.delenv("BREAKWATER_CATALOG", raising=False)
    queue = await bind_queue(amqp, "invoices.#")
    gateway = start_gateway(**({"catalog": catalog} if catalog else {}))
    source = "entry point 'my-events'" if catalog is None else catalog
    assert f"catalog {source}: 2 channels (invoices.issued, invoices.paid)" in gateway.logs()
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        # Each example over HTTP: published to breakwater.events, its channel the routing key.
        for name in CHANNELS:
            response = await client.post(f"/v1/events/{name}", json=examples[name])
            assert response.status_code == 202, response.text
            assert response.json()["status"] == "published"
        received = await collect(queue, len(CHANNELS))
        assert {message.routing_key: json.loads(message.body) for message in received} == examples
        assert sorted(message.type or "" for message in received) == CHANNELS

        # The model's own validator: a due date before the issue date, a total that is not the sum.
        early = {**examples["invoices.issued"], "due_date": "2026-02-01"}
        response = await client.post("/v1/events/invoices.issued", json=early)
        assert response.status_code == 422, response.text
        [error] = response.json()["detail"]
        assert "due_date 2026-02-01 is before issued_on 2026-03-01" in error["msg"]
        wrong_total = {**examples["invoices.issued"], "total": "1286.41"}
        response = await client.post("/v1/events/invoices.issued", json=wrong_total)
        assert response.status_code == 422, response.text
        assert (
            "does not equal the sum of the lines (1286.40)" in response.json()["detail"][0]["msg"]
        )

        # An inbound message on the example's own queue is forwarded, keeping its id.
        message_id = uuid.uuid4().hex
        await publish_inbound(
            amqp,
            "invoices.paid",
            json.dumps(examples["invoices.paid"]).encode(),
            message_id=message_id,
        )
        [forwarded] = await collect(queue, 1)
        assert (forwarded.routing_key, forwarded.message_id) == ("invoices.paid", message_id)
        assert json.loads(forwarded.body) == examples["invoices.paid"]

        # The default catalog's channels are not served; the documents are the example's.
        default = await client.post("/v1/events/orders.created", json={"order_id": "ord-1"})
        assert default.status_code == 404, default.text
        document = (await client.get("/docs/asyncapi.json")).json()
        schemas = set(document["components"]["schemas"])
        assert schemas >= MODELS
        assert not any(title.startswith(("Order", "Payment")) for title in schemas), schemas
        addresses = {channel["address"] for channel in document["channels"].values()}
        assert addresses >= {*CHANNELS, *(f"breakwater.in.{name}" for name in CHANNELS)}
