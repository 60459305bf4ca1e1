"""The chart's channel catalog, served for real.

helm/breakwater/ci/catalog-values.yaml is rendered by Helm's own engine (the helpers of
tests/deploy/test_chart.py), and the catalog file is taken from the ConfigMap the chart produces,
as the pod would read it. The init container's own command checks it; then the real gateway is
started on it (BREAKWATER_CATALOG, as the StatefulSet sets it) against the real broker. Each of
the two channels takes its example over HTTP and over AMQP, and both events reach a queue bound to
`breakwater.events` with the channel's routing key, payload intact; the built-in catalog is gone.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection

from app.broker.topology import EVENTS_EXCHANGE
from tests.deploy.test_chart import (
    CATALOG_DIR,
    CATALOG_SETTING,
    CATALOG_VARIANT,
    catalog_configmaps,
    container_env,
    parse,
    pod_spec,
    render_raw,
    variant_values,
)

from .consumers import bind_queue, collect
from .gateway_process import ROOT, GatewayProcess

pytestmark = pytest.mark.integration

# The image's entrypoint, which the init container's args are given to.
BREAKWATER = Path(sys.executable).with_name("breakwater")

Obj = dict[str, Any]


@dataclass(frozen=True)
class Rendered:
    """What the chart puts in the pod for a catalog."""

    channels: list[Obj]  # catalog.channels of the values
    text: str  # the catalog file, from the chart's ConfigMap
    pod_file: str  # where the pod reads it: BREAKWATER_CATALOG
    check: list[str]  # the init container's args

    def write(self, directory: Path) -> Path:
        """The ConfigMap's file under the name the pod's has."""
        path = directory / PurePosixPath(self.pod_file).name
        path.write_text(self.text, encoding="utf-8")
        return path


def render(values: Obj) -> Rendered:
    objs = parse(render_raw(values))
    (configmap,) = catalog_configmaps(objs)
    (text,) = configmap["data"].values()
    pod_file = container_env(objs)[CATALOG_SETTING]
    assert PurePosixPath(pod_file).parent == PurePosixPath(CATALOG_DIR)
    (init,) = pod_spec(objs)["initContainers"]
    return Rendered(values["catalog"]["channels"], text, pod_file, init["args"])


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return render(variant_values(CATALOG_VARIANT))


def run_check(rendered: Rendered, catalog_file: Path) -> subprocess.CompletedProcess[str]:
    """The init container's command, on the file where this test wrote it."""
    *command, pod_file = rendered.check
    assert pod_file == rendered.pod_file
    return subprocess.run(
        [str(BREAKWATER), *command, str(catalog_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_init_containers_check_passes_on_the_rendered_catalog(
    rendered: Rendered, tmp_path: Path
) -> None:
    assert [c["name"] for c in rendered.channels] == [
        "shipments.dispatched",
        "customers.registered.v2",
    ]
    result = run_check(rendered, rendered.write(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_init_containers_check_stops_a_catalog_the_values_schema_cannot(
    tmp_path: Path,
) -> None:
    # The values schema takes any example; an example its payload schema refuses (weight_kg as a
    # JSON number, not a decimal string) renders, and the init container is what stops it.
    values = copy.deepcopy(variant_values(CATALOG_VARIANT))
    values["catalog"]["channels"][0]["examples"][0]["weight_kg"] = 2.35
    broken = render(values)
    result = run_check(broken, broken.write(tmp_path))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 1, output
    assert output
    assert "shipments.dispatched" in output, output


async def publish_inbound(
    connection: AbstractRobustConnection, channel_name: str, body: bytes, message_id: str
) -> None:
    channel = await connection.channel(publisher_confirms=True)
    await channel.default_exchange.publish(
        aio_pika.Message(
            body, content_type="application/json", delivery_mode=2, message_id=message_id
        ),
        routing_key=f"breakwater.in.{channel_name}",
    )
    await channel.close()


async def test_the_gateway_takes_every_channel_of_the_charts_catalog_over_http_and_amqp(
    rendered: Rendered,
    tmp_path: Path,
    start_gateway: Callable[..., GatewayProcess],
    amqp: AbstractRobustConnection,
) -> None:
    gateway = start_gateway(catalog=str(rendered.write(tmp_path)))
    run = uuid.uuid4().hex
    queues = {c["name"]: await bind_queue(amqp, c["name"]) for c in rendered.channels}

    for channel in rendered.channels:
        name = channel["name"]
        (example,) = channel["examples"]
        response = httpx.post(
            f"{gateway.base_url}/v1/events/{name}",
            json=example,
            headers={"Idempotency-Key": f"{run}-http-{name}"},
        )
        assert response.status_code == 202, response.text
        assert response.json() == {"message_id": f"{run}-http-{name}", "status": "published"}
        await publish_inbound(amqp, name, json.dumps(example).encode(), f"{run}-amqp-{name}")

    for channel in rendered.channels:
        name = channel["name"]
        (example,) = channel["examples"]
        messages = await collect(queues[name], 2)
        by_id = {m.message_id: m for m in messages}
        assert set(by_id) == {f"{run}-http-{name}", f"{run}-amqp-{name}"}, name
        for message in messages:
            where = f"{name} via {message.message_id}"
            # The payload as the example has it: weight_kg stays the string "2.350", the points
            # an integer, the opt-in a boolean.
            assert json.loads(message.body) == example, where
            assert message.type == name, where
            assert message.routing_key == name, where
            assert message.exchange == EVENTS_EXCHANGE, where
            assert message.content_type == "application/json", where
            assert message.delivery_mode == 2, where


def test_the_charts_catalog_replaces_the_built_in_one(
    rendered: Rendered, tmp_path: Path, start_gateway: Callable[..., GatewayProcess]
) -> None:
    gateway = start_gateway(catalog=str(rendered.write(tmp_path)))
    names = [c["name"] for c in rendered.channels]

    response = httpx.post(
        f"{gateway.base_url}/v1/events/orders.created",
        json={"order_id": "ord-1", "customer_id": "cus-1", "total": "25.00", "currency": "EUR"},
    )
    assert response.status_code == 404, response.text

    # The AsyncAPI document describes the catalog's channels, not the built-in ones.
    document = httpx.get(f"{gateway.base_url}/docs/asyncapi.json")
    assert document.status_code == 200
    addresses = {c.get("address") for c in document.json()["channels"].values()}
    assert set(names) <= addresses, addresses
    assert "orders.created" not in addresses, addresses
