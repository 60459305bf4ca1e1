"""HTTP ingress against the real gateway process and the real broker."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection

from app.catalog.default import DEFAULT_CATALOG

from .consumers import bind_queue, collect, drain_now
from .gateway_process import GatewayProcess

ORDER = DEFAULT_CATALOG["orders.created"].example


async def test_http_event_reaches_a_bound_queue_with_the_contract_properties(
    start_gateway: Callable[..., GatewayProcess], amqp: AbstractRobustConnection
) -> None:
    gateway = start_gateway()
    queue = await bind_queue(amqp, "orders.created")
    key, correlation = f"idem-{uuid.uuid4().hex}", f"corr-{uuid.uuid4().hex}"

    response = httpx.post(
        f"{gateway.base_url}/v1/events/orders.created",
        json=ORDER,
        headers={"Idempotency-Key": key, "X-Correlation-Id": correlation},
    )

    assert response.status_code == 202, response.text
    assert response.json() == {"message_id": key, "status": "published"}
    [message] = await collect(queue, 1)
    assert message.routing_key == "orders.created"
    assert message.delivery_mode == 2
    assert message.message_id == key
    assert message.correlation_id == correlation
    assert message.content_type == "application/json"
    assert message.type == "orders.created"
    assert message.timestamp is not None
    assert message.headers["x-breakwater-path"] == "direct"
    assert message.exchange == "breakwater.events"
    body: dict[str, Any] = json.loads(message.body)
    assert body["total"] == "25.00"
    assert body["order_id"] == ORDER["order_id"]


async def test_ids_are_generated_when_the_client_sends_none(
    start_gateway: Callable[..., GatewayProcess], amqp: AbstractRobustConnection
) -> None:
    gateway = start_gateway()
    queue = await bind_queue(amqp, "orders.cancelled")

    response = httpx.post(
        f"{gateway.base_url}/v1/events/orders.cancelled",
        json=DEFAULT_CATALOG["orders.cancelled"].example,
    )

    assert response.status_code == 202
    [message] = await collect(queue, 1)
    assert message.message_id == response.json()["message_id"]
    assert message.correlation_id
    assert message.correlation_id != message.message_id


async def test_an_event_no_consumer_binds_for_is_kept_in_breakwater_unrouted(
    start_gateway: Callable[..., GatewayProcess], amqp: AbstractRobustConnection
) -> None:
    gateway = start_gateway()
    channel = await amqp.channel()
    unrouted = await channel.get_queue("breakwater.unrouted")
    await unrouted.purge()

    response = httpx.post(
        f"{gateway.base_url}/v1/events/payments.captured",
        json=DEFAULT_CATALOG["payments.captured"].example,
    )

    assert response.json()["status"] == "published"
    [message] = await collect(unrouted, 1)
    assert message.message_id == response.json()["message_id"]


def test_unknown_channel_is_404_with_the_known_channels(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gateway = start_gateway()
    response = httpx.post(f"{gateway.base_url}/v1/events/orders.exploded", json={})
    assert response.status_code == 404
    assert "orders.created" in response.json()["detail"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**ORDER, "total": "25.01"}, "does not equal the sum"),
        ({**ORDER, "currency": "eur"}, "currency"),
        ({**ORDER, "items": []}, "items"),
        ({**ORDER, "surprise": 1}, "surprise"),
        ({**ORDER, "total": "NaN"}, "total"),
    ],
)
async def test_invalid_payload_is_422_with_the_reason_and_nothing_is_published(
    start_gateway: Callable[..., GatewayProcess],
    amqp: AbstractRobustConnection,
    payload: dict[str, Any],
    field: str,
) -> None:
    gateway = start_gateway()
    queue = await bind_queue(amqp, "orders.created")

    response = httpx.post(f"{gateway.base_url}/v1/events/orders.created", json=payload)

    assert response.status_code == 422
    assert field in response.text
    assert await drain_now(queue) == []


def test_malformed_json_is_422(start_gateway: Callable[..., GatewayProcess]) -> None:
    gateway = start_gateway()
    response = httpx.post(
        f"{gateway.base_url}/v1/events/orders.created",
        content=b'{"order_id": "x",\xff',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_oversized_body_is_413_and_the_client_can_read_it(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gateway = start_gateway(max_body_bytes="1024")
    response = httpx.post(f"{gateway.base_url}/v1/events/orders.created", content=b"x" * 200_000)
    assert response.status_code == 413
    assert "1024" in response.json()["detail"]


def test_oversized_chunked_body_is_413_without_a_reset(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    """No Content-Length: the limit is found while reading; the answer still arrives intact."""
    gateway = start_gateway(max_body_bytes="1024")

    def chunks() -> Any:
        yield b'{"order_id": "'
        yield b"y" * 4096
        yield b'"}'

    response = httpx.post(f"{gateway.base_url}/v1/events/orders.created", content=chunks())
    assert response.status_code == 413


def test_oversized_upload_gets_413_before_it_is_sent(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    """A raw client announcing a large body reads a complete 413 instead of a connection reset."""
    gateway = start_gateway(max_body_bytes="1024")
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/events/orders.created HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n" + b"z" * 65536
        )
        reply = read_response(sock)
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"1024" in reply


def read_response(sock: socket.socket) -> bytes:
    """One HTTP response, read up to the end of its Content-Length body (not to the close)."""
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += sock.recv(65536)
    head, _, body = reply.partition(b"\r\n\r\n")
    length = int(
        next(
            v
            for k, _, v in (h.partition(b": ") for h in head.split(b"\r\n"))
            if k.lower() == b"content-length"
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


EIGHT_MIB = b'{"order_id": "' + b"x" * (8 * 1024 * 1024) + b'"}'


def test_a_client_that_writes_its_whole_body_before_reading_gets_the_413(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    """Python's urllib sends all 8 MiB, then reads: it must read the 413, not a reset."""
    gateway = start_gateway()  # the default 1 MiB limit
    request = urllib.request.Request(
        f"{gateway.base_url}/v1/events/orders.created",
        data=EIGHT_MIB,
        headers={"Content-Type": "application/json"},
        method="POST",
    )

    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)

    assert raised.value.code == 413
    assert "1048576" in json.loads(raised.value.read())["detail"]


def test_a_raw_client_that_sends_everything_first_reads_the_413_and_a_clean_close(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gateway = start_gateway()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/events/orders.created HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(EIGHT_MIB)}\r\n\r\n".encode()
            + EIGHT_MIB
        )
        reply = read_response(sock)
        rest = sock.recv(65536)  # the server closes once it has drained the upload: no reset

    assert reply.startswith(b"HTTP/1.1 413")
    assert rest == b""


def test_a_client_that_expects_100_continue_gets_the_413_without_uploading(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gateway = start_gateway(max_body_bytes="1024")
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/events/orders.created HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n"
        )
        reply = read_response(sock)

    assert reply.startswith(b"HTTP/1.1 413")


def test_health_endpoints_describe_the_gateway(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gateway = start_gateway()
    assert httpx.get(f"{gateway.base_url}/healthz").status_code == 200
    ready = httpx.get(f"{gateway.base_url}/readyz")
    assert ready.status_code == 200
    assert ready.json() | {"store_bytes": 0} == {
        "ready": True,
        "breaker": "closed",
        "broker_connected": True,
        "store_depth": 0,
        "store_bytes": 0,
    }
