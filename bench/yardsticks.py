"""What users would run instead of the gateway, each in a process of its own (like the gateway):

    python -m bench.yardsticks relay URL           a plain FastStream relay, default settings
    python -m bench.yardsticks rawpub URL N K [P]  raw aio-pika confirmed publishing, K in flight
                                                   (message_ids P-n; P: "raw")
    python -m bench.yardsticks httprecipe URL PORT the HTTP recipe a FastStream user writes:
                                                   a Starlette endpoint on uvicorn, port PORT
    python -m bench.yardsticks httpfloor URL PORT  the same endpoint without publishing (202)
    python -m bench.yardsticks pikarelay URL K     the same relay in plain aio-pika, prefetch K
    python -m bench.yardsticks gate PORT           a TCP proxy to 127.0.0.1:PORT that holds all bytes
                                                   until it reads a line on stdin; prints its port
    python -m bench.yardsticks probe URL SECONDS   1-in-flight confirmed publishes to `bench.live`
                                                   until a line on stdin; prints "connected", then
                                                   [time.monotonic() at send, confirm ms] as JSON

The relays, the raw publisher and the HTTP recipe write to `breakwater.events` (routing key
`orders.created`), where the benchmark's consumer times their arrivals exactly as it times the
gateway's.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aio_pika
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange

from app.catalog.default import OrderCreated
from bench.common import CHANNEL, declare_events_exchange, message_id, order_bytes

LIVE_QUEUE = "bench.live"


def _faststream_broker(url: str) -> tuple[RabbitBroker, RabbitExchange]:
    """A FastStream broker with default settings, and `breakwater.events` as the gateway
    declares it: what the FastStream recipes publish to."""
    from app.broker.topology import EVENTS_EXCHANGE, EVENTS_EXCHANGE_ARGUMENTS

    exchange = RabbitExchange(
        EVENTS_EXCHANGE,
        type=ExchangeType.TOPIC,
        durable=True,
        arguments=EVENTS_EXCHANGE_ARGUMENTS,
    )
    return RabbitBroker(url), exchange


async def relay(url: str) -> None:
    """The recipe from FastStream's docs: subscriber -> publisher, the gateway's own model and
    queue, default broker settings, persistent output. (`OrderCreated` is imported at module
    level: FastDepends resolves the handler's string annotations in the module's globals.)"""
    from faststream import FastStream

    from app.catalog.default import DEFAULT_CATALOG
    from app.ingress.amqp_ingress import inbound_queue

    broker, exchange = _faststream_broker(url)

    @broker.subscriber(inbound_queue(DEFAULT_CATALOG[CHANNEL]))
    @broker.publisher(exchange=exchange, routing_key=CHANNEL, persist=True)
    async def forward(msg: OrderCreated) -> OrderCreated:
        return msg

    app = FastStream(broker)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, app.exit)
    await app.run()


async def rawpub(url: str, count: int, in_flight: int, prefix: str = "raw") -> None:
    body = order_bytes(0)
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await declare_events_exchange(channel)
        gate = asyncio.Semaphore(in_flight)

        async def one(n: int) -> None:
            async with gate:
                await exchange.publish(
                    aio_pika.Message(
                        body,
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=message_id(prefix, n),
                        correlation_id=message_id(prefix, n),
                        timestamp=datetime.now(UTC),
                        type=CHANNEL,
                        headers={"x-breakwater-path": "direct"},
                    ),
                    routing_key=CHANNEL,
                    mandatory=True,
                )

        started = time.monotonic()
        await asyncio.gather(*(one(n) for n in range(count)))
        print(json.dumps({"seconds": time.monotonic() - started}), flush=True)
    finally:
        await connection.close()


async def probe(url: str, seconds: float) -> None:
    """Live traffic beside the gateway: one confirmed publish at a time, each timed, until a line
    arrives on stdin (or `seconds` passed)."""
    body = order_bytes(0)
    connection = await aio_pika.connect_robust(url)
    samples: list[tuple[float, float]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), stop.set)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(LIVE_QUEUE, durable=True)
        print("connected", flush=True)  # the benchmark starts its clock on this line
        end = time.monotonic() + seconds
        while time.monotonic() < end and not stop.is_set():
            started = time.monotonic()
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=LIVE_QUEUE,
            )
            samples.append((started, (time.monotonic() - started) * 1000))
        await queue.purge()
    finally:
        loop.remove_reader(sys.stdin.fileno())
        await connection.close()
    print(json.dumps({"samples": samples}), flush=True)


async def pikarelay(url: str, prefetch: int) -> None:
    """The gateway's essential work without FastStream: consume (prefetch as the gateway),
    validate and re-serialise with the same model, publish persistent and confirmed, then ack.
    Not a target's yardstick: it shows what a relay of the same shape costs on this machine."""
    from app.catalog.default import DEFAULT_CATALOG

    connection = await aio_pika.connect_robust(url)
    inbound = await connection.channel()
    await inbound.set_qos(prefetch_count=prefetch)
    outbound = await connection.channel(publisher_confirms=True, on_return_raises=True)
    exchange = await declare_events_exchange(outbound)
    # Declared (as the gateway declares it) by the benchmark before the preload.
    queue = await inbound.declare_queue(DEFAULT_CATALOG[CHANNEL].inbound_queue, passive=True)

    async def forward(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        body = OrderCreated.model_validate_json(message.body).model_dump_json().encode()
        await exchange.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                timestamp=datetime.now(UTC),
                type=CHANNEL,
                headers={"x-breakwater-path": "direct"},
            ),
            routing_key=CHANNEL,
            mandatory=True,
        )
        await message.ack()

    await queue.consume(forward)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await connection.close()


def http_recipe(url: str, port: int, *, publish: bool = True) -> None:
    """What a FastStream user writes instead of the gateway: a Starlette endpoint that validates
    the body with the same model and awaits `broker.publish(..., persist=True)` (FastStream's
    channels confirm publishes by default), served by uvicorn as the gateway is (uvloop and
    httptools, chosen by uvicorn when installed; no access log). The `Idempotency-Key` header, when
    sent, becomes the message_id; nothing is remembered, stored or retried. (FastAPI would add its
    own request handling on top: Starlette is the leaner, stronger yardstick.)

    Without `publish`, the same endpoint answers 202 without a broker: the floor of any Python
    HTTP ingress on this stack (server, framework, validation), for the benchmark's explanation."""
    import uuid
    from contextlib import asynccontextmanager

    import uvicorn
    from pydantic import ValidationError
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    broker, exchange = _faststream_broker(url)

    async def post_event(request: Request) -> Response:
        try:
            order = OrderCreated.model_validate_json(await request.body())
        except ValidationError as exc:
            return Response(exc.json(), status_code=422, media_type="application/json")
        message_id = request.headers.get("idempotency-key") or uuid.uuid4().hex
        if publish:
            await broker.publish(
                order, exchange=exchange, routing_key=CHANNEL, persist=True, message_id=message_id
            )
        return JSONResponse({"message_id": message_id, "status": "published"}, status_code=202)

    async def healthz(request: Request) -> Response:
        return Response(status_code=200)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not publish:
            yield
            return
        await broker.start()
        await broker.declare_exchange(exchange)
        yield
        await broker.stop()

    app = Starlette(
        routes=[
            Route(f"/v1/events/{CHANNEL}", post_event, methods=["POST"]),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def gate(upstream_port: int) -> None:
    """Holds a consumer back until the benchmark is ready (in a process of its own, so that the
    forwarding costs neither the benchmark's consumer nor the measured process any GIL time)."""
    from tests.support.fault_proxy import FaultProxy

    with FaultProxy(upstream_port=upstream_port) as proxy:
        proxy.partition()
        print(proxy.port, flush=True)
        sys.stdin.readline()
        proxy.heal()
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


def main(argv: list[str]) -> None:
    command, url, *rest = argv
    if command == "gate":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        gate(int(url))
    elif command == "relay":
        asyncio.run(relay(url))
    elif command == "pikarelay":
        asyncio.run(pikarelay(url, int(rest[0])))
    elif command == "rawpub":
        asyncio.run(rawpub(url, int(rest[0]), int(rest[1]), *rest[2:]))
    elif command == "httprecipe":
        http_recipe(url, int(rest[0]))
    elif command == "httpfloor":
        http_recipe(url, int(rest[0]), publish=False)
    elif command == "probe":
        asyncio.run(probe(url, float(rest[0])))
    else:
        raise SystemExit(f"unknown yardstick {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
