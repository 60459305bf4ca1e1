"""`BREAKWATER_LOG_FORMAT=json`: every line the process writes is one JSON object (uvicorn's, the
AMQP libraries' and FastStream's included), no line per event, and no broker password anywhere."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from prometheus_client.parser import text_string_to_metric_families

from app.catalog.default import DEFAULT_CATALOG
from tests.support.fault_proxy import FaultProxy

from .gateway_process import ROOT, GatewayProcess, free_port

pytestmark = pytest.mark.integration

PASSWORD = "s3cr3t-Pa55"
EVENTS = 20


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line parsed; fails naming the first line that is not a JSON object."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line!r}\n--- whole output ---\n{text}")
        assert isinstance(entry, dict), f"line {number} is not an object: {line!r}"
        assert {"time", "level", "logger", "message"} <= entry.keys(), line
        entries.append(entry)
    return entries


def wait_for_line(gateway: GatewayProcess, fragment: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while fragment not in gateway.logs():
        assert time.monotonic() < deadline, f"no line with {fragment!r}:\n{gateway.logs()}"
        time.sleep(0.1)


def post_events(gateway: GatewayProcess, run: str, expected: str) -> list[str]:
    keys = [f"{run}-{n}" for n in range(EVENTS)]
    with httpx.Client(base_url=gateway.base_url) as client:
        for key in keys:
            response = client.post(
                "/v1/events/orders.cancelled",
                json=DEFAULT_CATALOG["orders.cancelled"].example,
                headers={"Idempotency-Key": key},
            )
            assert response.status_code == 202, response.text
            assert response.json()["status"] == expected
        assert client.post("/v1/events/orders.cancelled", json={}).status_code == 422
        assert client.post("/v1/events/no.such.channel", json={}).status_code == 404
        for path in ("/", "/metrics", "/readyz", "/healthz", "/docs/asyncapi"):
            assert client.get(path).status_code in (200, 503), path
    return keys


def wait_for_counts(gateway: GatewayProcess, accepted: int, rejected: int, timeout: float) -> None:
    """Until orders.cancelled has `accepted` events published and `rejected` refused."""
    deadline = time.monotonic() + timeout
    while True:
        counts = {"accepted": 0.0, "rejected": 0.0}
        text = httpx.get(f"{gateway.base_url}/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("channel") != "orders.cancelled":
                    continue
                if sample.name == "breakwater_events_accepted_total":
                    counts["accepted"] += sample.value
                elif sample.name == "breakwater_events_rejected_total":
                    counts["rejected"] += sample.value
        if counts == {"accepted": accepted, "rejected": rejected}:
            return
        assert time.monotonic() < deadline, f"counts stayed at {counts}:\n{gateway.logs()}"
        time.sleep(0.1)


def stop(gateway: GatewayProcess) -> None:
    gateway.signal(signal.SIGTERM)
    assert gateway.wait(timeout=30) == 0


@pytest.mark.timeout(60)
def test_json_logs_of_a_start_without_broker_are_json_lines_without_the_password(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gateway = start_gateway(
        wait_connected=False,
        broker_url=f"amqp://guest:{PASSWORD}@127.0.0.1:{free_port()}/",
        log_format="json",
        breaker_fail_max="2",
    )
    run = uuid.uuid4().hex[:12]

    keys = post_events(gateway, run, expected="stored")
    wait_for_line(gateway, "inbound broker", timeout=10)  # after the inbound grace period
    stop(gateway)

    output = gateway.logs()
    entries = json_lines(output)
    assert PASSWORD not in output
    loggers = {entry["logger"] for entry in entries}
    assert {"uvicorn.error", "breakwater", "breakwater.outbound", "breakwater.breaker"} <= loggers
    messages = [entry["message"] for entry in entries]
    # State changes are logged once each, with the numbers that matter; events are not logged.
    assert sum("outbound broker" in m and "unreachable" in m for m in messages) == 1
    assert sum("circuit breaker 'outbound' opened" in m for m in messages) == 1
    assert any("closed: 20 events waiting" in m for m in messages), messages
    assert not [m for m in messages if any(key in m for key in keys)]
    assert messages[-1].startswith("Finished server process")


@pytest.mark.timeout(60)
async def test_json_logs_through_connection_loss_and_amqp_ingress_have_no_line_per_event(
    start_gateway: Callable[..., GatewayProcess],
    fault_proxy: FaultProxy,
    vhost: str,
    amqp: AbstractRobustConnection,
) -> None:
    gateway = start_gateway(
        broker_url=f"amqp://guest:guest@127.0.0.1:{fault_proxy.port}/{vhost}", log_format="json"
    )
    run = uuid.uuid4().hex[:12]
    keys = post_events(gateway, run, expected="published")
    channel = await amqp.channel()
    inbound_ids = [f"{run}-amqp-{n}" for n in range(EVENTS)]
    for message_id in inbound_ids:
        await channel.default_exchange.publish(
            aio_pika.Message(
                json.dumps(DEFAULT_CATALOG["orders.cancelled"].example).encode(),
                message_id=message_id,
            ),
            routing_key="breakwater.in.orders.cancelled",
        )
    await channel.default_exchange.publish(
        aio_pika.Message(b"not json", message_id=f"{run}-poison"),
        routing_key="breakwater.in.orders.cancelled",
    )
    wait_for_counts(gateway, accepted=2 * EVENTS, rejected=2, timeout=15)

    fault_proxy.reset()  # both links drop: aio-pika, FastStream and the gateway all notice
    deadline = time.monotonic() + 20
    while not httpx.get(f"{gateway.base_url}/readyz").json()["broker_connected"]:
        assert time.monotonic() < deadline, gateway.logs()
        time.sleep(0.1)
    stop(gateway)

    output = gateway.logs()
    entries = json_lines(output)
    messages = [entry["message"] for entry in entries]
    assert not [m for m in messages if any(key in m for key in keys + inbound_ids)]
    assert sum(entry["level"] == "info" for entry in entries) < EVENTS


def test_warnings_and_uncaught_exceptions_are_json_lines_too(tmp_path: Path) -> None:
    script = (
        "import threading, warnings\n"
        "from app.operations.logs import configure_logging\n"
        "from app.settings import LogFormat\n"
        "configure_logging(LogFormat.json)\n"
        "warnings.warn('a library complains', DeprecationWarning, stacklevel=1)\n"
        "thread = threading.Thread(target=lambda: 1 / 0, name='worker')\n"
        "thread.start(); thread.join()\n"
        "raise RuntimeError('boom')\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 1
    assert result.stdout == ""
    entries = json_lines(result.stderr)
    assert [(e["level"], e["logger"]) for e in entries] == [
        ("warning", "py.warnings"),
        ("error", "breakwater"),
        ("critical", "breakwater"),
    ]
    assert "a library complains" in entries[0]["message"]
    assert "ZeroDivisionError" in entries[1]["exception"]
    assert "RuntimeError: boom" in entries[2]["exception"]
