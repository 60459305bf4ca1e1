"""A gateway on a catalog its users declared, run for real (gateway process, RabbitMQ, SQLite).

- What the served document shows for a channel is what the gateway validates with: instances
  hypothesis-jsonschema generates from the document's schema are all accepted; instances an
  independent validator (python-jsonschema) rejects are all answered 422.
- A broken catalog stops the gateway before it serves anything.
- Stored events of a channel the new catalog no longer has are kept, not replayed, and reported.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from app.catalog.default import DEFAULT_CATALOG
from app.events import Event
from app.store.fallback import FallbackStore

from .consumers import bind_queue, collect
from .gateway_process import ROOT, GatewayProcess

pytestmark = pytest.mark.integration

BREAKWATER = Path(sys.executable).with_name("breakwater")

RETURNS = {
    "name": "returns.requested",
    "summary": "A customer asked to send items back.",
    "description": "Raised by the shop when a return is opened.",
    "payload": {
        "type": "object",
        "additionalProperties": False,
        "required": ["return_id", "order_id", "lines", "refund"],
        "properties": {
            "return_id": {"type": "string", "pattern": "^r-[0-9]{1,8}$"},
            "order_id": {"type": "string", "minLength": 1, "maxLength": 40},
            "reason": {"enum": ["damaged", "wrong_item", "changed_mind"]},
            "lines": {
                "type": "array",
                "minItems": 1,
                "maxItems": 5,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["sku", "quantity"],
                    "properties": {
                        "sku": {"type": "string", "minLength": 1, "maxLength": 20},
                        "quantity": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                },
            },
            "refund": {"type": "number", "minimum": 0, "maximum": 10000},
            "gift": {"type": "boolean"},
        },
    },
    "examples": [
        {
            "return_id": "r-1",
            "order_id": "ord-1001",
            "reason": "damaged",
            "lines": [{"sku": "SKU-RED-MUG", "quantity": 1}],
            "refund": 9.5,
        }
    ],
}
OLD_CHANNEL = {**RETURNS, "name": "returns.requested.v0", "deprecated": True}

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture
def declared(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"channels": [RETURNS, OLD_CHANNEL]}, sort_keys=False))
    return path


def document_schema(gateway: GatewayProcess, title: str) -> dict[str, Any]:
    document = httpx.get(f"{gateway.base_url}/docs/asyncapi.json", timeout=10).json()
    schema: dict[str, Any] = document["components"]["schemas"][title]
    return schema


def test_the_documented_schema_is_the_one_the_gateway_validates_with(
    start_gateway: Callable[..., GatewayProcess], declared: Path
) -> None:
    gateway = start_gateway(catalog=str(declared))
    schema = document_schema(gateway, "ReturnsRequested")
    judge = jsonschema.Draft202012Validator(schema)
    url = f"{gateway.base_url}/v1/events/returns.requested"
    client = httpx.Client(timeout=10)
    fuzz = settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )

    @fuzz
    @given(instance=from_schema(schema))
    def accepted(instance: Any) -> None:
        response = client.post(url, content=json.dumps(instance))
        assert response.status_code == 202, (instance, response.text)

    @fuzz
    @given(instance=JSON | from_schema(schema).map(_break_one_field))
    def rejected(instance: Any) -> None:
        if judge.is_valid(instance):
            return
        response = client.post(url, content=json.dumps(instance))
        assert response.status_code == 422, (instance, response.text)
        errors = response.json()["detail"]
        assert errors
        assert all("pointer" in error and error["msg"] for error in errors)

    accepted()
    rejected()
    assert httpx.get(f"{gateway.base_url}/v1/events/orders.created").status_code in (404, 405)


def _break_one_field(instance: dict[str, Any]) -> dict[str, Any]:
    """A valid instance with one field wrong in a way the schema forbids."""
    broken = dict(instance)
    broken["lines"] = [{**broken["lines"][0], "quantity": 0}]
    return broken


async def test_a_declared_channel_forwards_exact_numbers_and_marks_deprecation(
    start_gateway: Callable[..., GatewayProcess], declared: Path, amqp: Any
) -> None:
    queue = await bind_queue(amqp, "returns.#")
    gateway = start_gateway(catalog=str(declared))
    body = (
        b'{"return_id":"r-7","order_id":"o","lines":[{"sku":"A","quantity":2}],'
        b'"refund":1234.5600000000000000001}'
    )

    current = httpx.post(f"{gateway.base_url}/v1/events/returns.requested", content=body)
    old = httpx.post(f"{gateway.base_url}/v1/events/returns.requested.v0", content=body)

    assert current.status_code == 202, current.text
    assert "deprecation" not in current.headers
    assert old.status_code == 202, old.text
    assert old.headers["deprecation"] == "true"
    received = {message.type: message.body for message in await collect(queue, 2)}
    assert received == {"returns.requested": body, "returns.requested.v0": body}
    metrics = httpx.get(f"{gateway.base_url}/metrics").text
    assert 'breakwater_deprecated_events_total{channel="returns.requested.v0"} 1.0' in metrics


def test_a_broken_catalog_stops_the_gateway_before_it_serves(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    broken = {**RETURNS, "examples": [{"return_id": "x"}]}
    path.write_text(yaml.safe_dump({"channels": [broken, {**RETURNS, "nmae": "typo"}]}))
    env = {
        "PATH": "/usr/bin:/bin",
        "BREAKWATER_CATALOG": str(path),
        "BREAKWATER_STORE_PATH": str(tmp_path / "store.db"),
        "BREAKWATER_HTTP_PORT": "1",  # never reached: nothing may bind before the catalog loads
    }

    result = subprocess.run(
        [sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, timeout=60
    )

    assert result.returncode != 0
    output = result.stdout.decode() + result.stderr.decode()
    assert "cannot start" in output
    assert "returns.requested: #/channels/0/examples/0" in output
    assert "#/channels/1/nmae: unknown key" in output
    assert not (tmp_path / "store.db").exists()


async def test_stored_events_of_a_channel_the_catalog_dropped_are_kept_and_reported(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path, amqp: Any
) -> None:
    store_path = tmp_path / "carried-over.db"
    cancelled = json.dumps(DEFAULT_CATALOG["orders.cancelled"].example).encode()
    async with FallbackStore(store_path, max_bytes=10**8, synchronous="FULL") as store:
        for n in range(2):
            await store.put(Event.accept("legacy.events", b'{"n": %d}' % n))
        await store.put(Event.accept("orders.cancelled", cancelled, message_id="kept-channel"))
    queue = await bind_queue(amqp, "orders.cancelled")

    gateway = start_gateway(store_path=str(store_path))

    [replayed] = await collect(queue, 1)
    assert replayed.message_id == "kept-channel"
    ready = httpx.get(f"{gateway.base_url}/readyz").json()
    for _ in range(50):
        if ready["store_depth"] == 2:
            break
        await asyncio.sleep(0.1)
        ready = httpx.get(f"{gateway.base_url}/readyz").json()
    assert ready["ready"] is True
    assert ready["store_depth"] == 2
    assert ready["stranded_channels"] == {"legacy.events": 2}
    page = httpx.get(gateway.base_url + "/").text
    assert "not in the loaded catalog" in page
    assert "stay in the store, not replayed: legacy.events (2)" in gateway.logs()
    gateway.stop()

    env = {"BREAKWATER_STORE_PATH": str(store_path), "PATH": "/usr/bin:/bin"}
    stats = subprocess.run(
        [str(BREAKWATER), "store", "stats"], env=env, capture_output=True, timeout=60, check=True
    )
    assert json.loads(stats.stdout)["not_in_catalog"] == ["legacy.events"]
    exported = subprocess.run(
        [str(BREAKWATER), "store", "export", "--channel", "legacy.events"],
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert [json.loads(line)["payload"] for line in exported.stdout.splitlines()] == [
        {"n": 0},
        {"n": 1},
    ]


async def test_bodies_json_allows_but_no_payload_can_carry_are_refused_not_crashed_on(
    start_gateway: Callable[..., GatewayProcess], declared: Path, amqp: Any
) -> None:
    """A number beyond a decimal's range, a lone surrogate: a 422 over HTTP (never a 500) and a
    dead-letter over AMQP (never requeued forever)."""
    gateway = start_gateway(catalog=str(declared))
    channel = await amqp.channel()
    dead = await channel.declare_queue(exclusive=True)
    await dead.bind("breakwater.dlx")
    example = json.dumps(RETURNS["examples"][0])
    bodies = {
        "huge-exponent": example.replace("9.5", "1e99999999999999999999").encode(),
        "lone-surrogate": example.replace("ord-1001", "ord-\\ud800").encode(),
    }

    for body in bodies.values():
        response = httpx.post(f"{gateway.base_url}/v1/events/returns.requested", content=body)
        assert response.status_code == 422, response.text
    for message_id, body in bodies.items():
        await channel.default_exchange.publish(
            aio_pika.Message(body, message_id=message_id),
            routing_key="breakwater.in.returns.requested",
        )

    dead_lettered = {m.message_id: m for m in await collect(dead, 2)}
    assert set(dead_lettered) == set(bodies)
    assert "beyond the range" in str(dead_lettered["huge-exponent"].headers["x-breakwater-error"])
    assert "/order_id: a lone surrogate" in str(
        dead_lettered["lone-surrogate"].headers["x-breakwater-error"]
    )
