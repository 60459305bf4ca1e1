"""Batch ingress on the real gateway and broker: `POST /v1/events/{channel}/batch`.

Each event is validated and answered on its own, in array order; valid ones are accepted beside
invalid ones unless `?atomic=true`; the batch's order is the order at the consumer, published
directly or stored and replayed; `Idempotency-Key: <base>` keys event i as `<base>:<i>`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractQueue, AbstractRobustConnection
from prometheus_client.parser import text_string_to_metric_families

from app.catalog.default import DEFAULT_CATALOG
from tests.support.fault_proxy import FaultProxy

from .consumers import bind_queue, collect
from .gateway_process import GatewayProcess

pytestmark = pytest.mark.integration

CHANNEL = "orders.created"
ORDER: dict[str, Any] = dict(DEFAULT_CATALOG[CHANNEL].example)


def order(number: int) -> dict[str, Any]:
    return {**ORDER, "order_id": f"batch-{number}"}


def invalid(number: int) -> dict[str, Any]:
    """An order whose first item has quantity 0 (the model wants at least 1)."""
    items = [{**ORDER["items"][0], "quantity": 0}, *ORDER["items"][1:]]
    return {**order(number), "items": items}


def counted(gateway: GatewayProcess, name: str, **labels: str) -> float:
    """The sum of a counter's samples whose labels include `labels`."""
    text = httpx.get(f"{gateway.base_url}/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def post_batch(
    gateway: GatewayProcess,
    body: bytes | list[Any],
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    channel: str = CHANNEL,
) -> httpx.Response:
    content = json.dumps(body).encode() if isinstance(body, list) else body
    return httpx.post(
        f"{gateway.base_url}/v1/events/{channel}/batch",
        content=content,
        params=params,
        headers={"content-type": "application/json", **(headers or {})},
        timeout=30,
    )


async def receive_until_marker(gateway: GatewayProcess, queue: AbstractQueue) -> list[str]:
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    answer = httpx.post(
        f"{gateway.base_url}/v1/events/{CHANNEL}", json={**ORDER, "order_id": marker}
    )
    assert answer.status_code == 202
    seen: list[str] = []

    def before_marker(message: aio_pika.abc.AbstractIncomingMessage) -> bool:
        seen.append(json.loads(message.body)["order_id"])
        return seen[-1] == marker

    await collect(queue, 1, keep=before_marker)
    return seen[:-1]


async def test_a_json_array_is_published_in_order_with_one_result_per_event(
    start_gateway: Callable[..., GatewayProcess], amqp: AbstractRobustConnection
) -> None:
    queue = await bind_queue(amqp, CHANNEL)
    gateway = start_gateway()
    answer = post_batch(gateway, [order(n) for n in range(300)])
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (300, 0)
    assert [r["index"] for r in body["results"]] == list(range(300))
    assert {r["status"] for r in body["results"]} == {"published"}
    messages = await collect(queue, 300)
    assert [json.loads(m.body)["order_id"] for m in messages] == [f"batch-{n}" for n in range(300)]
    assert [m.message_id for m in messages] == [r["message_id"] for r in body["results"]]
    # One request, one correlation id for all its events.
    assert len({m.correlation_id for m in messages}) == 1
    assert counted(gateway, "breakwater_events_accepted_total", channel=CHANNEL) == 300


async def test_ndjson_takes_the_valid_events_and_answers_each_invalid_one(
    start_gateway: Callable[..., GatewayProcess], amqp: AbstractRobustConnection
) -> None:
    queue = await bind_queue(amqp, CHANNEL)
    gateway = start_gateway()
    lines = [
        json.dumps(order(0)),
        "{not json",
        json.dumps(invalid(2)),
        "",  # blank lines are not events
        json.dumps(order(3)),
    ]
    answer = post_batch(
        gateway,
        ("\n".join(lines) + "\n").encode(),
        headers={"content-type": "application/x-ndjson", "x-correlation-id": "nightly-import"},
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    results = body["results"]
    assert [r["status"] for r in results] == ["published", "rejected", "rejected", "published"]
    assert results[1]["error"]["status"] == 422
    assert results[1]["error"]["detail"][0]["type"] == "json_invalid"
    [quantity] = results[2]["error"]["detail"]
    assert quantity["pointer"] == "/items/0/quantity"
    assert await receive_until_marker(gateway, queue) == ["batch-0", "batch-3"]
    rejected = counted(gateway, "breakwater_events_rejected_total", channel=CHANNEL)
    assert rejected == 2


async def test_atomic_refuses_the_whole_batch_for_one_invalid_event(
    start_gateway: Callable[..., GatewayProcess], amqp: AbstractRobustConnection
) -> None:
    queue = await bind_queue(amqp, CHANNEL)
    gateway = start_gateway()
    events = [order(0), invalid(1), order(2)]
    answer = post_batch(gateway, events, params={"atomic": "true"})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["accepted"] == 0
    [error] = body["detail"]
    assert error["pointer"] == "/1/items/0/quantity"  # where in the batch
    assert [r["status"] for r in body["results"]] == ["not_accepted", "rejected", "not_accepted"]
    assert await receive_until_marker(gateway, queue) == []

    # The same batch without atomic: the two valid events go out.
    answer = post_batch(gateway, events)
    assert answer.status_code == 202
    assert await receive_until_marker(gateway, queue) == ["batch-0", "batch-2"]


async def test_a_batch_retried_with_its_idempotency_key_is_not_published_again(
    start_gateway: Callable[..., GatewayProcess], amqp: AbstractRobustConnection
) -> None:
    queue = await bind_queue(amqp, CHANNEL)
    gateway = start_gateway()
    events = [order(n) for n in range(5)]
    first = post_batch(gateway, events, headers={"idempotency-key": "import-7"})
    assert first.status_code == 202
    assert [r["message_id"] for r in first.json()["results"]] == [f"import-7:{n}" for n in range(5)]
    assert await receive_until_marker(gateway, queue) == [f"batch-{n}" for n in range(5)]

    retry = post_batch(gateway, events, headers={"idempotency-key": "import-7"})
    assert retry.status_code == 202
    assert retry.headers["idempotent-replayed"] == "true"
    assert all(r["repeated"] for r in retry.json()["results"])
    assert await receive_until_marker(gateway, queue) == []

    # One event changed under the same key: that one is a conflict, the rest repeats.
    changed = [*events[:2], {**events[2], "customer_id": "cus-other"}, *events[3:]]
    conflict = post_batch(gateway, changed, headers={"idempotency-key": "import-7"})
    assert conflict.status_code == 202
    results = conflict.json()["results"]
    assert results[2]["error"]["status"] == 422
    assert "import-7:2" in results[2]["error"]["detail"]
    assert "idempotent-replayed" not in conflict.headers
    # Atomic: the conflict is found at the door and nothing is taken.
    atomic = post_batch(
        gateway, changed, headers={"idempotency-key": "import-7"}, params={"atomic": "true"}
    )
    assert atomic.status_code == 422
    assert "import-7:2" in atomic.json()["detail"]
    assert await receive_until_marker(gateway, queue) == []


def test_a_batch_that_is_not_one_is_refused_with_the_reason(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gateway = start_gateway(max_batch_events="3")
    cases: list[tuple[bytes | list[Any], str, dict[str, str]]] = [
        ([], "no events", {}),
        ([order(n) for n in range(4)], "at most 3", {}),
        (json.dumps(ORDER).encode(), "JSON array", {}),
        (b"[1, 2", "not JSON", {}),
        ([order(0)], "atomic must be true or false", {"atomic": "yes"}),
    ]
    for body, reason, params in cases:
        answer = post_batch(gateway, body, params=params)
        assert answer.status_code == 422, (body, answer.text)
        assert reason in answer.json()["detail"], answer.text
    long_key = post_batch(gateway, [order(0), order(1)], headers={"idempotency-key": "k" * 199})
    assert long_key.status_code == 422
    assert "at most 198 characters" in long_key.json()["detail"]
    unknown = post_batch(gateway, [order(0)], channel="no.such.channel")
    assert unknown.status_code == 404
    every_event_invalid = post_batch(gateway, [invalid(0), {}])
    assert every_event_invalid.status_code == 422
    pointers = {error["pointer"] for error in every_event_invalid.json()["detail"]}
    assert "/0/items/0/quantity" in pointers
    assert "/1/order_id" in pointers
    too_large = post_batch(gateway, b"[" + b" " * (2 * 1024 * 1024) + b"]")
    assert too_large.status_code == 413


async def test_a_batch_taken_during_a_partition_is_stored_and_replayed_in_order(
    start_gateway: Callable[..., GatewayProcess],
    fault_proxy: FaultProxy,
    vhost: str,
    amqp: AbstractRobustConnection,
) -> None:
    queue = await bind_queue(amqp, CHANNEL)
    url = f"amqp://guest:guest@127.0.0.1:{fault_proxy.port}/{vhost}"
    gateway = start_gateway(broker_url=url, publish_timeout_s="0.5")
    fault_proxy.partition()
    answer = post_batch(gateway, [order(n) for n in range(200)])
    assert answer.status_code == 202, answer.text
    assert {r["status"] for r in answer.json()["results"]} == {"stored"}
    assert httpx.get(f"{gateway.base_url}/readyz").json()["store_depth"] == 200
    fault_proxy.heal()
    # The publishes the partition held may still reach the broker when it heals (a timed-out
    # publish is not a withdrawn one): those direct copies are duplicates with the same
    # message_id. Every event is replayed from the store, in order, and first arrivals are in
    # order too.
    seen: list[tuple[str, str]] = []

    def replayed(message: aio_pika.abc.AbstractIncomingMessage) -> bool:
        seen.append((json.loads(message.body)["order_id"], message.headers["x-breakwater-path"]))
        return seen[-1][1] == "replay"

    await collect(queue, 200, timeout=60, keep=replayed)
    expected = [f"batch-{n}" for n in range(200)]
    assert [order_id for order_id, path in seen if path == "replay"] == expected
    assert list(dict.fromkeys(order_id for order_id, _ in seen)) == expected
