"""CloudEvents (app/cloudevents/) on the real gateway process, the real broker and a real SQLite
store. The requests are built, and the outbound events read back, with the CloudEvents SDK
(`cloudevents` 2.x from PyPI): its HTTP binding (structured and binary mode) and its AMQP binding,
which reads the `cloudEvents_*` headers of the binary content mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from cloudevents.core.bindings import amqp as ce_amqp
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from app.broker.topology import DEAD_LETTER_QUEUE
from app.catalog.default import DEFAULT_CATALOG
from tests.support.fault_proxy import FaultProxy
from tests.unit.test_store import SCHEMA_WITHOUT_HEADERS

from .consumers import bind_queue, collect, drain_now
from .gateway_process import GatewayProcess
from .idempotency_helpers import wait_metric
from .test_amqp_ingress import publish_inbound

pytestmark = pytest.mark.integration

GatewayFactory = Callable[..., GatewayProcess]

CHANNEL = "orders.created"
ORDER: dict[str, Any] = dict(DEFAULT_CATALOG[CHANNEL].example)
CANCELLATION: dict[str, Any] = dict(DEFAULT_CATALOG["orders.cancelled"].example)
PUBLIC_URL = "https://events.example.com"
SCHEMA = f"{PUBLIC_URL}/docs/asyncapi.json#/components/schemas/OrderCreated"
JSON = JSONFormat()
REPEATS = "breakwater_idempotent_repeats_total"


def new_id() -> str:
    return f"ce-{uuid.uuid4().hex}"


def cloudevent(**attributes: Any) -> CloudEvent:
    """An `orders.created` CloudEvent as a producer's SDK builds it (`time` set to now by the
    SDK unless given), with the producer's own source, subject and an extension."""
    data = attributes.pop("data", ORDER)
    given = {
        "id": new_id(),
        "type": CHANNEL,
        "source": "/shop/checkout",
        "subject": "ord-1001",
        "tenant": "acme",
        "datacontenttype": "application/json",
        **attributes,
    }
    return CloudEvent(given, data=data)


Request = tuple[dict[str, str], bytes]  # headers and body


def structured(event: CloudEvent) -> Request:
    message = ce_http.to_structured(event, JSON)
    return message.headers, message.body


def binary(event: CloudEvent) -> Request:
    message = ce_http.to_binary(event, JSON)
    return message.headers, message.body


Mode = Callable[[CloudEvent], Request]
BOTH_MODES = pytest.mark.parametrize("mode", [structured, binary], ids=["structured", "binary"])


def post(
    gateway: GatewayProcess,
    request: Request,
    channel: str = CHANNEL,
    **headers: str,
) -> httpx.Response:
    sent_headers, body = request
    return httpx.post(
        f"{gateway.base_url}/v1/events/{channel}",
        content=body,
        headers={**sent_headers, **headers},
        timeout=15,
    )


def read_back(message: AbstractIncomingMessage) -> CloudEvent:
    """An outbound event as a consumer's CloudEvents SDK reads it (AMQP binding, binary mode)."""
    amqp_message = ce_amqp.AMQPMessage(
        properties={"content-type": message.content_type},
        application_properties=dict(message.headers),
        application_data=message.body,
    )
    event = ce_amqp.from_binary(amqp_message, JSON, CloudEvent)
    assert isinstance(event, CloudEvent)
    return event


def cloudevents_headers(message: AbstractIncomingMessage) -> dict[str, Any]:
    return {name: value for name, value in message.headers.items() if "loudEvents" in name}


def start_with_cloudevents(start_gateway: GatewayFactory, **env: str) -> GatewayProcess:
    return start_gateway(cloudevents="binary", public_url=PUBLIC_URL, **env)


# -- off: nothing changes ----------------------------------------------------------------------


async def test_with_cloudevents_off_events_carry_no_attributes_and_ce_headers_are_ignored(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection
) -> None:
    gateway = start_gateway()
    queue = await bind_queue(amqp, CHANNEL)
    event = cloudevent()

    as_binary = post(gateway, binary(event))
    as_structured = post(gateway, structured(event))

    # As before CloudEvents: the ce-* headers are not read (a new message_id), and a structured
    # body is not the channel's payload.
    assert as_binary.status_code == 202, as_binary.text
    assert as_binary.json()["message_id"] != event.get_id()
    assert as_structured.status_code == 422
    assert isinstance(as_structured.json()["detail"], list)
    [message] = await collect(queue, 1)
    assert message.headers == {"x-breakwater-path": "direct"}
    assert message.content_type == "application/json"


# -- out: binary content mode ------------------------------------------------------------------


async def test_with_cloudevents_on_every_event_reads_back_as_a_cloudevent(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection
) -> None:
    gateway = start_with_cloudevents(start_gateway)
    queue = await bind_queue(amqp, CHANNEL)

    answer = httpx.post(f"{gateway.base_url}/v1/events/{CHANNEL}", json=ORDER)

    assert answer.status_code == 202, answer.text
    [message] = await collect(queue, 1)
    event = read_back(message)
    assert event.get_specversion() == "1.0"
    assert event.get_id() == message.message_id == answer.json()["message_id"]
    assert event.get_type() == CHANNEL == message.type
    assert event.get_source() == PUBLIC_URL  # the gateway's, the producer sent none
    assert event.get_dataschema() == SCHEMA
    assert event.get_datacontenttype() == "application/json"
    assert event.get_data() == json.loads(message.body)
    time = event.get_time()
    assert time is not None
    assert message.timestamp is not None
    assert time.replace(microsecond=0) == message.timestamp.replace(tzinfo=UTC)
    assert message.headers["x-breakwater-path"] == "direct"
    # The headers as the binding names them, with the `_` separator, canonical strings only.
    assert set(cloudevents_headers(message)) == {
        f"cloudEvents_{name}"
        for name in ("specversion", "id", "source", "type", "time", "dataschema")
    }
    assert all(isinstance(value, str) for value in cloudevents_headers(message).values())


async def test_a_producers_trace_context_travels_beside_the_cloudevents_attributes(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection
) -> None:
    """Both kinds of extra header on one event: a CloudEvent's attributes do not replace the
    trace context (tracing off: the producer's `traceparent`/`tracestate`, passed on as sent)."""
    gateway = start_with_cloudevents(start_gateway)
    queue = await bind_queue(amqp, CHANNEL)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    event = cloudevent()

    answer = post(gateway, binary(event), traceparent=traceparent, tracestate="shop=1")

    assert answer.status_code == 202, answer.text
    [message] = await collect(queue, 1)
    assert read_back(message).get_id() == event.get_id()
    assert message.headers["traceparent"] == traceparent
    assert message.headers["tracestate"] == "shop=1"


async def test_dataschema_points_at_the_payload_schema_in_the_served_asyncapi_document(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection
) -> None:
    gateway = start_gateway(cloudevents="binary", public_url="http://127.0.0.1:1")
    queue = await bind_queue(amqp, CHANNEL)
    httpx.post(f"{gateway.base_url}/v1/events/{CHANNEL}", json=ORDER)
    [message] = await collect(queue, 1)

    document_url, _, pointer = read_back(message).get_dataschema().partition("#")
    assert document_url == "http://127.0.0.1:1/docs/asyncapi.json"
    node: Any = httpx.get(f"{gateway.base_url}/docs/asyncapi.json").json()
    for part in pointer.strip("/").split("/"):
        node = node[part]
    assert node["title"] == "OrderCreated"
    assert set(node["required"]) >= set(ORDER)


@pytest.mark.parametrize("globally", ["off", "binary"])
async def test_a_catalog_file_opts_channels_in_and_out(
    start_gateway: GatewayFactory,
    amqp: AbstractRobustConnection,
    tmp_path: Path,
    globally: str,
) -> None:
    channels = []
    for name, mode in (("parcels.opted-in", "binary"), ("parcels.opted-out", "off")):
        channels.append(
            {
                "name": name,
                "summary": "A parcel.",
                "payload": {"type": "object", "required": ["parcel_id"]},
                "examples": [{"parcel_id": "p-1"}],
                "cloudevents": mode,
            }
        )
    channels.append({**channels[0], "name": "parcels.as-configured"})
    del channels[2]["cloudevents"]
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"channels": channels}))
    gateway = start_gateway(catalog=str(catalog), cloudevents=globally)
    queue = await bind_queue(amqp, "parcels.*")

    for channel in channels:
        answer = httpx.post(
            f"{gateway.base_url}/v1/events/{channel['name']}", json={"parcel_id": "p"}
        )
        assert answer.status_code == 202, answer.text
    messages = {message.routing_key: message for message in await collect(queue, 3)}

    assert cloudevents_headers(messages["parcels.opted-in"])
    assert read_back(messages["parcels.opted-in"]).get_type() == "parcels.opted-in"
    assert not cloudevents_headers(messages["parcels.opted-out"])
    assert bool(cloudevents_headers(messages["parcels.as-configured"])) is (globally == "binary")


# -- in: HTTP structured and binary mode -------------------------------------------------------


@BOTH_MODES
async def test_a_cloudevent_is_published_with_its_id_and_the_producers_own_attributes(
    start_gateway: GatewayFactory,
    amqp: AbstractRobustConnection,
    mode: Mode,
) -> None:
    gateway = start_with_cloudevents(start_gateway)
    queue = await bind_queue(amqp, CHANNEL)
    sent = cloudevent(time=datetime(2026, 12, 4, 10, 11, 12, 345000, tzinfo=UTC))

    answer = post(gateway, mode(sent), **{"X-Correlation-Id": "corr-ce-1"})

    assert answer.status_code == 202, answer.text
    assert answer.json() == {"message_id": sent.get_id(), "status": "published"}
    [message] = await collect(queue, 1)
    received = read_back(message)
    assert message.message_id == received.get_id() == sent.get_id()
    assert message.correlation_id == "corr-ce-1"
    assert received.get_source() == "/shop/checkout"
    assert received.get_time() == sent.get_time()
    assert received.get_subject() == "ord-1001"
    assert received.get_extension("tenant") == "acme"
    assert received.get_type() == CHANNEL
    assert received.get_dataschema() == SCHEMA
    # The data as the channel normalises it (money as decimal strings).
    assert received.get_data() == json.loads(message.body)
    assert json.loads(message.body)["total"] == "25.00"


@BOTH_MODES
async def test_a_cloudevents_id_is_its_idempotency_key(
    start_gateway: GatewayFactory,
    amqp: AbstractRobustConnection,
    mode: Mode,
) -> None:
    gateway = start_with_cloudevents(start_gateway)
    queue = await bind_queue(amqp, CHANNEL)
    sent = cloudevent()
    # A retry as an SDK builds it anew: the same id and data, a later `time`.
    retry = cloudevent(id=sent.get_id())
    other = cloudevent(id=sent.get_id(), data={**ORDER, "order_id": "ord-2002"})

    first = post(gateway, mode(sent))
    repeat = post(gateway, mode(retry))
    same_key = post(gateway, mode(retry), **{"Idempotency-Key": sent.get_id()})
    conflict = post(gateway, mode(other))
    other_key = post(gateway, mode(cloudevent()), **{"Idempotency-Key": new_id()})

    assert first.status_code == 202, first.text
    assert "Idempotent-Replayed" not in first.headers
    for answer in (repeat, same_key):
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"message_id": sent.get_id(), "status": "published"}
        assert answer.headers["Idempotent-Replayed"] == "true"
    assert conflict.status_code == 422
    assert sent.get_id() in conflict.json()["detail"]
    assert other_key.status_code == 422
    assert "differ" in other_key.json()["detail"]
    [message] = await collect(queue, 1)
    await asyncio.sleep(0.5)
    assert await drain_now(queue) == []
    assert message.message_id == sent.get_id()


async def test_a_cloudevent_whose_type_names_another_channel_is_a_422(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection
) -> None:
    gateway = start_with_cloudevents(start_gateway)
    queue = await bind_queue(amqp, "#")

    for mode in (structured, binary):
        answer = post(gateway, mode(cloudevent(type="orders.cancelled")))
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"] == (
            "invalid CloudEvent: type 'orders.cancelled' names another channel than the path's"
            " ('orders.created')"
        )
    await asyncio.sleep(0.5)
    assert await drain_now(queue) == []


def without(header: str) -> Callable[[Request], Request]:
    def change(request: Request) -> Request:
        headers, body = request
        return {name: value for name, value in headers.items() if name != header}, body

    return change


def with_header(header: str, value: str) -> Callable[[Request], Request]:
    def change(request: Request) -> Request:
        headers, body = request
        return {**headers, header: value}, body

    return change


def with_attribute(name: str, value: Any) -> Callable[[Request], Request]:
    def change(request: Request) -> Request:
        headers, body = request
        event = json.loads(body)
        if value is None:
            del event[name]
        else:
            event[name] = value
        return headers, json.dumps(event).encode()

    return change


@pytest.mark.parametrize(
    ("mode", "spoil", "reason"),
    [
        (binary, without("ce-id"), "id is missing"),
        (structured, with_attribute("id", None), "id is missing"),
        (binary, without("ce-source"), "source is missing"),
        (binary, with_header("ce-specversion", "0.3"), "specversion must be 1.0, not '0.3'"),
        (structured, with_attribute("specversion", "2.0"), "specversion must be 1.0, not '2.0'"),
        (binary, with_header("ce-time", "yesterday"), "time must be an RFC 3339 timestamp"),
        (structured, with_attribute("time", "2026-13-45T99:00:00Z"), "time must be an RFC 3339"),
        (binary, with_header("content-type", "text/plain"), "datacontenttype must be JSON"),
        (structured, with_attribute("datacontenttype", "text/csv"), "datacontenttype must be JSON"),
        (binary, with_header("ce-id", "has spaces"), "id must be 1-200 printable ASCII"),
        (structured, with_attribute("Tenant", "x"), "'Tenant' is not an attribute name"),
        (structured, with_attribute("tenant", {"a": 1}), "extension tenant must be a string"),
        (structured, with_attribute("data", None), "data is missing"),
        (binary, with_header("content-type", "application/cloudevents+xml"), "not taken"),
        (
            binary,
            with_header("content-type", "application/cloudevents-batch+json"),
            "the CloudEvents batch mode) is not taken",
        ),
    ],
)
async def test_malformed_attributes_are_a_422_with_the_reason_and_nothing_is_published(
    start_gateway: GatewayFactory,
    amqp: AbstractRobustConnection,
    mode: Mode,
    spoil: Callable[[Request], Request],
    reason: str,
) -> None:
    gateway = start_with_cloudevents(start_gateway)
    queue = await bind_queue(amqp, "#")

    answer = post(gateway, spoil(mode(cloudevent())))

    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith("invalid CloudEvent: ")
    assert reason in detail
    await asyncio.sleep(0.3)
    assert await drain_now(queue) == []


@BOTH_MODES
async def test_invalid_data_is_a_422_located_in_the_body(
    start_gateway: GatewayFactory,
    mode: Mode,
) -> None:
    gateway = start_with_cloudevents(start_gateway)

    answer = post(gateway, mode(cloudevent(data={**ORDER, "currency": "eur"})))

    assert answer.status_code == 422, answer.text
    [error] = answer.json()["detail"]
    assert error["pointer"] == ("/data/currency" if mode is structured else "/currency")


# -- replay: the attributes are the event's, kept in the store ---------------------------------


def attributes_of(event: CloudEvent) -> dict[str, Any]:
    return {**event.get_attributes(), "data": event.get_data()}


@pytest.mark.timeout(90)
async def test_replayed_events_carry_the_attributes_a_direct_publish_would_have(
    start_gateway: GatewayFactory,
    fault_proxy: FaultProxy,
    vhost: str,
    broker_url: str,
    amqp: AbstractRobustConnection,
    tmp_path: Path,
) -> None:
    store = str(tmp_path / "replayed.db")
    queue = await bind_queue(amqp, CHANNEL)
    sent = cloudevent(time=datetime(2026, 12, 4, 10, 11, 12, 345000, tzinfo=UTC))
    # The outbound broker refuses every connection: both events are stored.
    fault_proxy.reject_new(True)
    fault_proxy.reset()
    away = start_with_cloudevents(
        start_gateway,
        wait_connected=False,
        broker_url=f"amqp://guest:guest@127.0.0.1:{fault_proxy.port}/{vhost}",
        inbound_broker_url=broker_url,
        store_path=store,
    )
    stored = post(away, structured(sent))
    plain = httpx.post(f"{away.base_url}/v1/events/{CHANNEL}", json=ORDER, timeout=15)
    assert stored.json()["status"] == plain.json()["status"] == "stored", plain.text
    away.stop()
    fault_proxy.reject_new(False)

    # Replayed by a gateway started later on the same store (the attributes were not
    # recomputed: this one has another public URL and source).
    back = start_gateway(
        cloudevents="binary", public_url="https://other.example.com", store_path=store
    )
    replayed = {message.message_id: message for message in await collect(queue, 2, timeout=30)}
    direct = post(back, structured(cloudevent(time=sent.get_time())))
    [published] = await collect(queue, 1)

    assert {message.headers["x-breakwater-path"] for message in replayed.values()} == {"replay"}
    from_store = read_back(replayed[sent.get_id()])
    assert attributes_of(from_store) == {
        **attributes_of(read_back(published)),
        "id": sent.get_id(),
        "dataschema": SCHEMA,  # as accepted: the first gateway's public URL
    }
    assert direct.json()["message_id"] == published.message_id
    generated = read_back(replayed[plain.json()["message_id"]])
    assert generated.get_source() == PUBLIC_URL
    assert generated.get_dataschema() == SCHEMA
    assert generated.get_id() == plain.json()["message_id"]


async def test_a_store_file_from_before_cloudevents_opens_and_replays(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection, tmp_path: Path
) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(SCHEMA_WITHOUT_HEADERS)  # as earlier gateways created it
        conn.execute(
            "INSERT INTO events (channel, message_id, correlation_id, timestamp, body)"
            " VALUES (?, ?, ?, ?, ?)",
            (CHANNEL, "old-1", "corr-old-1", 1_700_000_000_000, json.dumps(ORDER).encode()),
        )
        conn.commit()
    queue = await bind_queue(amqp, CHANNEL)

    gateway = start_with_cloudevents(start_gateway, store_path=str(path))
    [message] = await collect(queue, 1, timeout=30)
    after = httpx.post(f"{gateway.base_url}/v1/events/{CHANNEL}", json=ORDER)
    [new] = await collect(queue, 1)

    assert message.message_id == "old-1"
    assert message.correlation_id == "corr-old-1"
    assert message.headers == {"x-breakwater-path": "replay"}  # accepted before CloudEvents
    assert json.loads(message.body) == ORDER
    assert new.message_id == after.json()["message_id"]
    assert read_back(new).get_id() == new.message_id


# -- in: AMQP ----------------------------------------------------------------------------------


async def test_amqp_ingress_reads_a_cloudevent_in_binary_mode_and_stamps_the_others(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection
) -> None:
    start_with_cloudevents(start_gateway)
    queue = await bind_queue(amqp, CHANNEL)
    sent = cloudevent()
    as_amqp = ce_amqp.to_binary(sent, JSON)
    headers = dict(as_amqp.application_properties)
    # The SDK writes `time` as an AMQP 1.0 timestamp (an int here); its canonical string form
    # is what an AMQP 0-9-1 header carries. (aiormq stamps a random message_id on the message
    # too: the CloudEvent's id is what the event keeps.)
    headers["cloudEvents_time"] = sent.get_attributes()["time"].isoformat()

    await publish_inbound(amqp, CHANNEL, as_amqp.application_data, headers=headers)
    await publish_inbound(amqp, CHANNEL, json.dumps(ORDER).encode(), message_id="plain-amqp-1")
    received = {message.message_id: message for message in await collect(queue, 2)}

    cloud = read_back(received[sent.get_id()])
    assert cloud.get_source() == "/shop/checkout"
    assert cloud.get_extension("tenant") == "acme"
    assert cloud.get_time() == sent.get_time()
    stamped = read_back(received["plain-amqp-1"])
    assert stamped.get_id() == "plain-amqp-1"
    assert stamped.get_source() == PUBLIC_URL


async def test_amqp_ingress_dead_letters_a_malformed_cloudevent_with_the_reason(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection
) -> None:
    start_with_cloudevents(start_gateway)
    channel = await amqp.channel()
    dead_letters = await channel.declare_queue(DEAD_LETTER_QUEUE, durable=True)
    await dead_letters.purge()
    headers = {"cloudEvents_specversion": "1.0", "cloudEvents_type": CHANNEL}

    await publish_inbound(
        amqp, CHANNEL, json.dumps(ORDER).encode(), headers=headers, message_id="bad-ce-1"
    )
    [dead] = await collect(dead_letters, 1, keep=lambda m: m.message_id == "bad-ce-1")

    reason = dead.headers["x-breakwater-error"]
    assert reason.startswith("invalid CloudEvent: ")
    assert "source is missing" in reason
    assert "id is missing" in reason


# -- batches -----------------------------------------------------------------------------------


async def test_a_batch_gets_attributes_per_event_and_the_cloudevents_batch_mode_is_refused(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection
) -> None:
    gateway = start_with_cloudevents(start_gateway)
    queue = await bind_queue(amqp, CHANNEL)
    url = f"{gateway.base_url}/v1/events/{CHANNEL}/batch"

    answer = httpx.post(url, json=[ORDER, ORDER], headers={"Idempotency-Key": "ce-batch-1"})
    as_batch_mode = httpx.post(
        url,
        content=json.dumps([json.loads(structured(cloudevent())[1])]),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    one_cloudevent = post(gateway, binary(cloudevent()), CHANNEL + "/batch")

    assert answer.status_code == 202, answer.text
    events = [read_back(message) for message in await collect(queue, 2)]
    assert [event.get_id() for event in events] == ["ce-batch-1:0", "ce-batch-1:1"]
    assert {event.get_source() for event in events} == {PUBLIC_URL}
    assert as_batch_mode.status_code == 422
    assert "application/cloudevents-batch+json" in as_batch_mode.json()["detail"]
    assert one_cloudevent.status_code == 422
    assert "not a CloudEvent" in one_cloudevent.json()["detail"]
    await asyncio.sleep(0.3)
    assert await drain_now(queue) == []


async def test_amqp_ingress_takes_a_repeated_cloudevent_id_as_a_repeat(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection
) -> None:
    gateway = start_with_cloudevents(start_gateway)
    queue = await bind_queue(amqp, CHANNEL)
    event_id = new_id()
    headers = {
        "cloudEvents_specversion": "1.0",
        "cloudEvents_id": event_id,
        "cloudEvents_source": "/warehouse",
        "cloudEvents_type": CHANNEL,
    }

    # Each publish gets another random message_id from the client: the id is what counts.
    for _ in range(2):
        await publish_inbound(amqp, CHANNEL, json.dumps(ORDER).encode(), headers=headers)
    [message] = await collect(queue, 1)
    await wait_metric(
        gateway.base_url, 1, REPEATS, channel=CHANNEL, ingress="amqp"
    )  # the second one, acked unpublished

    assert message.message_id == event_id
    assert read_back(message).get_source() == "/warehouse"
    assert await drain_now(queue) == []


async def test_with_cloudevents_off_amqp_ingress_does_not_read_cloudevents_headers(
    start_gateway: GatewayFactory, amqp: AbstractRobustConnection
) -> None:
    start_gateway()
    queue = await bind_queue(amqp, CHANNEL)
    headers = {"cloudEvents_specversion": "1.0", "cloudEvents_id": "not-read"}

    await publish_inbound(
        amqp, CHANNEL, json.dumps(ORDER).encode(), headers=headers, message_id="amqp-off-1"
    )
    [message] = await collect(queue, 1)

    assert message.message_id == "amqp-off-1"
    assert message.headers == {"x-breakwater-path": "direct"}
