"""Tracing (README: Tracing), on the real broker: one trace from a producer's request through the
gateway (published directly, or stored and replayed by a restarted gateway) to a real FastStream
consumer with `RabbitTelemetryMiddleware`. Each side keeps its spans in the SDK's in-memory
exporter; the gateway runs in-process (`app.tracing.testing`) and over HTTP through ASGI.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from faststream.rabbit import (
    ExchangeType,
    RabbitBroker,
    RabbitExchange,
    RabbitMessage,
    RabbitQueue,
)
from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from app.broker.topology import EVENTS_EXCHANGE, EVENTS_EXCHANGE_ARGUMENTS, UNROUTED
from app.catalog.default import DEFAULT_CATALOG
from app.gateway import Gateway
from app.settings import Settings
from app.store.drain import drain_store
from app.tracing import Tracing
from app.tracing.testing import in_memory
from bench.otlp_sink import OtlpSink

from .gateway_process import GatewayProcess, free_port

CHANNEL = "orders.created"
ORDER = json.dumps(DEFAULT_CATALOG[CHANNEL].example).encode()
INBOUND_QUEUE = f"breakwater.in.{CHANNEL}"
# What FastStream names the consumer's span: `<exchange>.<routing key> process`.
CONSUMER_SPAN = f"{EVENTS_EXCHANGE}.{CHANNEL} process"


class Side:
    """One side's tracer provider with its spans in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.tracer = self.provider.get_tracer("test")

    def request(self) -> ReadableSpan:
        """A producer's client span, ended: what its request's `traceparent` names."""
        self.tracer.start_span("POST order", kind=SpanKind.CLIENT).end()
        return self.spans.get_finished_spans()[-1]

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.named(name)
        return span

    async def wait_for(self, name: str, timeout: float = 15.0) -> ReadableSpan:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not self.named(name):
                await asyncio.sleep(0.02)
        return self.one(name)


def traceparent(span: ReadableSpan) -> str:
    assert span.context is not None
    context = span.context
    return f"00-{format_trace_id(context.trace_id)}-{format_span_id(context.span_id)}-{context.trace_flags:02x}"


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def trace_of(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


class Consumer:
    """A FastStream consumer of `orders.created` with RabbitTelemetryMiddleware: its own side of
    spans, and the headers of what it received."""

    def __init__(self, broker_url: str) -> None:
        self.side = Side()
        self.headers: list[dict[str, Any]] = []
        self.broker = RabbitBroker(
            broker_url,
            middlewares=(RabbitTelemetryMiddleware(tracer_provider=self.side.provider),),
            log_level=10,
        )
        queue = RabbitQueue(
            f"tracing-{uuid.uuid4().hex[:8]}", auto_delete=True, routing_key=CHANNEL
        )
        exchange = RabbitExchange(EVENTS_EXCHANGE, type=ExchangeType.TOPIC, declare=False)

        @self.broker.subscriber(queue, exchange)
        async def consume(body: dict[str, Any], message: RabbitMessage) -> None:
            self.headers.append(dict(message.headers))

    async def process_span(self) -> ReadableSpan:
        return await self.side.wait_for(CONSUMER_SPAN)


@asynccontextmanager
async def consuming(broker_url: str) -> AsyncIterator[Consumer]:
    # The gateway's exchange, declared as the gateway declares it, so the consumer can bind before
    # any gateway has run in this vhost (a replay must find the queue there).
    connection = await aio_pika.connect_robust(broker_url)
    channel = await connection.channel()
    await channel.declare_exchange(UNROUTED, aio_pika.ExchangeType.FANOUT, durable=True)
    await channel.declare_exchange(
        EVENTS_EXCHANGE,
        aio_pika.ExchangeType.TOPIC,
        durable=True,
        arguments=EVENTS_EXCHANGE_ARGUMENTS,
    )
    await connection.close()
    consumer = Consumer(broker_url)
    await consumer.broker.start()
    try:
        yield consumer
    finally:
        await consumer.broker.stop()


@asynccontextmanager
async def gateway(
    broker_url: str, store: Path, tracing: Tracing | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway in this process on `store`; its HTTP ingress through the client it yields, once
    it consumes its inbound queues (when its broker is there)."""
    settings = Settings(_env_file=None, broker_url=broker_url, store_path=store)
    running = Gateway(settings, DEFAULT_CATALOG, tracing=tracing)
    async with running.running():
        if running.link.is_connected:
            async with asyncio.timeout(15):
                while not running.inbound_link.is_consuming:
                    await asyncio.sleep(0.02)
        transport = httpx.ASGITransport(app=running.http_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


@pytest.fixture
def producer() -> Side:
    return Side()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "fallback.db"


@pytest.fixture
def unreachable_broker(vhost: str) -> str:
    """A broker URL nothing answers at: the broker is away."""
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/{vhost}"


async def post(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    response = await client.post(
        f"/v1/events/{CHANNEL}",
        content=ORDER,
        headers={"content-type": "application/json", **headers},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["status"])


async def test_a_published_event_is_one_trace_from_the_request_to_the_consumer(
    broker_url: str, store: Path, producer: Side
) -> None:
    tracing, gateway_spans = in_memory()
    async with consuming(broker_url) as consumer, gateway(broker_url, store, tracing) as client:
        request = producer.request()
        sent = traceparent(request)
        assert await post(client, {"traceparent": sent, "tracestate": "vendor=1"}) == "published"
        processed = await consumer.process_span()

    accepted = next(s for s in gateway_spans.get_finished_spans() if s.kind is SpanKind.SERVER)
    (published,) = [s for s in gateway_spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert accepted.name == "POST /v1/events/{channel}"
    assert published.name == "send breakwater.events"
    # request -> accept -> publish -> the consumer's process span: one trace, each the parent of
    # the next.
    assert {trace_of(s) for s in (request, accepted, published, processed)} == {trace_of(request)}
    assert parent_of(accepted) == span_id(request)
    assert parent_of(published) == span_id(accepted)
    assert parent_of(processed) == span_id(published)
    assert accepted.attributes is not None
    assert published.attributes is not None
    assert accepted.attributes["http.response.status_code"] == 202
    assert published.attributes["messaging.system"] == "rabbitmq"
    assert published.attributes["messaging.destination.name"] == EVENTS_EXCHANGE
    assert published.attributes["messaging.rabbitmq.destination.routing_key"] == CHANNEL
    # The outbound traceparent is the publish span's, never the stored (accepting) one; the
    # producer's tracestate travels on.
    (headers,) = consumer.headers
    assert headers["traceparent"] == traceparent(published)
    assert headers["tracestate"] == "vendor=1"
    assert (
        published.attributes["messaging.message.id"] == processed.attributes["messaging.message.id"]
    )


async def test_a_replayed_event_continues_the_trace_after_a_restart(
    broker_url: str, unreachable_broker: str, store: Path, producer: Side
) -> None:
    first, first_spans = in_memory()
    async with gateway(unreachable_broker, store, first) as client:
        request = producer.request()
        sent = traceparent(request)
        assert await post(client, {"traceparent": sent}) == "stored"
    accepted = next(s for s in first_spans.get_finished_spans() if s.kind is SpanKind.SERVER)
    stored = next(s for s in first_spans.get_finished_spans() if s.name == f"store {CHANNEL}")
    assert parent_of(stored) == span_id(accepted)
    # What the store keeps with the event: the accepting span's context.
    with sqlite3.connect(store) as conn:
        (row,) = conn.execute("SELECT headers FROM events").fetchall()
    assert json.loads(row[0]) == {"traceparent": traceparent(accepted)}

    second, second_spans = in_memory()  # another process' provider, as after a restart
    async with consuming(broker_url) as consumer, gateway(broker_url, store, second):
        processed = await consumer.process_span()
    (replayed,) = second_spans.get_finished_spans()

    assert replayed.name == "replay breakwater.events"
    assert replayed.kind is SpanKind.PRODUCER
    assert {trace_of(s) for s in (accepted, replayed, processed)} == {trace_of(request)}
    assert parent_of(accepted) == span_id(request)
    assert parent_of(replayed) == span_id(accepted)
    assert [link.context.span_id for link in replayed.links] == [span_id(accepted)]
    assert parent_of(processed) == span_id(replayed)
    (headers,) = consumer.headers
    assert headers["traceparent"] == traceparent(replayed)
    assert headers["x-breakwater-path"] == "replay"


async def test_amqp_ingress_continues_the_trace_of_the_inbound_message(
    broker_url: str, store: Path
) -> None:
    tracing, gateway_spans = in_memory()
    sender = Side()
    async with consuming(broker_url) as consumer, gateway(broker_url, store, tracing):
        producer = RabbitBroker(
            broker_url, middlewares=(RabbitTelemetryMiddleware(tracer_provider=sender.provider),)
        )
        async with producer:
            await producer.publish(
                ORDER, queue=INBOUND_QUEUE, content_type="application/json", persist=True
            )
        processed = await consumer.process_span()

    # FastStream's publisher sends the context of its `create` span (its `publish` span's parent).
    (sent,) = sender.named(f"default.{INBOUND_QUEUE} create")
    accepted = next(s for s in gateway_spans.get_finished_spans() if s.kind is SpanKind.CONSUMER)
    (published,) = [s for s in gateway_spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert accepted.name == f"process {INBOUND_QUEUE}"
    assert {trace_of(s) for s in (sent, accepted, published, processed)} == {trace_of(sent)}
    assert parent_of(accepted) == span_id(sent)
    assert parent_of(published) == span_id(accepted)
    assert parent_of(processed) == span_id(published)


@pytest.mark.parametrize(
    "malformed",
    [
        "not a traceparent",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case
    ],
)
async def test_a_malformed_traceparent_is_ignored_and_the_event_starts_a_trace(
    broker_url: str, store: Path, malformed: str
) -> None:
    tracing, gateway_spans = in_memory()
    async with consuming(broker_url) as consumer, gateway(broker_url, store, tracing) as client:
        assert await post(client, {"traceparent": malformed}) == "published"
        processed = await consumer.process_span()

    accepted = next(s for s in gateway_spans.get_finished_spans() if s.kind is SpanKind.SERVER)
    (published,) = [s for s in gateway_spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert accepted.parent is None  # a new trace, begun by the gateway
    assert trace_of(processed) == trace_of(accepted)
    assert parent_of(processed) == span_id(published)
    assert consumer.headers[0]["traceparent"] == traceparent(published)


async def test_tracing_off_makes_no_spans_and_forwards_the_producers_trace_context(
    broker_url: str, store: Path, producer: Side
) -> None:
    async with consuming(broker_url) as consumer, gateway(broker_url, store) as client:
        request = producer.request()
        sent = traceparent(request)
        assert await post(client, {"traceparent": sent, "tracestate": "a=1,b=2"}) == "published"
        processed = await consumer.process_span()
        assert await post(client, {"traceparent": "00-garbage"}) == "published"
        async with asyncio.timeout(15):
            while len(consumer.headers) < 2:
                await asyncio.sleep(0.02)

    forwarded, malformed = consumer.headers
    assert (forwarded["traceparent"], forwarded["tracestate"]) == (sent, "a=1,b=2")
    # The consumer's span is the producer's child: no gateway span in between.
    assert parent_of(processed) == span_id(request)
    assert trace_of(processed) == trace_of(request)
    # A malformed one is not passed on.
    assert "traceparent" not in malformed
    assert "tracestate" not in malformed


def test_a_gateway_set_up_by_otel_variables_exports_its_spans_over_otlp(
    broker_url: str, tmp_path: Path
) -> None:
    """The real process, configured as users do: spans reach an OTLP/HTTP receiver, named after
    the service, and none is lost at a clean stop (the last batch is flushed)."""
    with OtlpSink() as collector:
        env = {
            "BREAKWATER_BROKER_URL": broker_url,
            "BREAKWATER_STORE_PATH": str(tmp_path / "fallback.db"),
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_SERVICE_NAME": "breakwater-under-test",
        }
        process = GatewayProcess(env, tmp_path / "gateway.log").start()
        try:
            for _ in range(3):
                answer = httpx.post(
                    f"{process.base_url}/v1/events/{CHANNEL}",
                    content=ORDER,
                    headers={"content-type": "application/json"},
                )
                assert answer.status_code == 202, answer.text
        finally:
            process.stop()
        assert process.wait() == 0

    assert collector.services == {"breakwater-under-test"}
    assert collector.spans == {"POST /v1/events/{channel}": 3, "send breakwater.events": 3}


async def test_breakwater_store_replay_traces_its_replays_too(
    broker_url: str, unreachable_broker: str, store: Path, tmp_path: Path
) -> None:
    """`breakwater store replay` (app/store/drain.py) with tracing on: replay spans, and the published
    traceparent is the replay span's, not the one stored."""
    first, first_spans = in_memory()
    async with gateway(unreachable_broker, store, first) as client:
        assert await post(client, {}) == "stored"
    accepted = next(s for s in first_spans.get_finished_spans() if s.kind is SpanKind.SERVER)

    with OtlpSink() as collector:
        settings = Settings(
            _env_file=None,
            store_path=store,
            otel_traces_exporter="otlp",
            otel_exporter_otlp_endpoint=collector.endpoint,
        )
        async with consuming(broker_url) as consumer:
            replayed = await drain_store(
                settings, path=store, rate=100, broker_urls=[broker_url], connect_timeout_s=10
            )
            processed = await consumer.process_span()

    assert replayed == 1
    assert collector.spans == {"replay breakwater.events": 1}
    assert trace_of(processed) == trace_of(accepted)
    assert consumer.headers[0]["traceparent"] != traceparent(accepted)
