"""1. AMQP forwarding: a preloaded `breakwater.in.orders.created` drained to `breakwater.events`.

The same N persistent 1 KiB messages are preloaded for the gateway and for a plain FastStream relay;
raw aio-pika confirmed publishing (64 in flight) publishes N straight to the exchange. One consumer
times every arrival; the rate is from the first arrival to the last.

`gateway_declarative` runs the gateway case again, right after it, with the declarative catalog
(bench/catalog.yaml): the same N bodies through `breakwater.in.orders.created.declared`, validated
against a JSON Schema instead of the pydantic model.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aio_pika
from yarl import URL

from bench.common import (
    DECLARED_CHANNEL,
    DECLARED_ENV,
    DECLARED_INBOUND_QUEUE,
    INBOUND_QUEUE,
    ArrivalRecorder,
    Context,
    broker_pid,
    child,
    cpu_seconds,
    declare_inbound_queue,
    message_id,
    order_bytes,
    order_check,
    publish_confirmed,
    stop_child,
    through,
    throughput,
)

NAME = "forwarding"
RAW_IN_FLIGHT = 64
PREFETCH = 256  # the gateway's default BREAKWATER_INBOUND_PREFETCH


@dataclass(frozen=True)
class Size:
    events: int


FULL = Size(events=20_000)
SMOKE = Size(events=50)


async def _purge(url: str, queue_name: str = INBOUND_QUEUE) -> None:
    """Whatever a stopped run left in the inbound queue (unacked, requeued) must not count."""
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        await queue.purge()
    finally:
        await connection.close()


async def _preload(url: str, prefix: str, count: int, queue_name: str = INBOUND_QUEUE) -> float:
    bodies = [order_bytes(n) for n in range(count)]
    ids = [message_id(prefix, n) for n in range(count)]
    return await publish_confirmed(url, bodies, ids, routing_key=queue_name)


def per_event_ms(seconds: float, count: int) -> float:
    return round(seconds * 1000 / max(1, count - 1), 3)


async def _gateway_case(
    ctx: Context,
    recorder: ArrivalRecorder,
    broker_cpu: Callable[[], float],
    *,
    case: str,
    queue_name: str,
    prefix: str,
    count: int,
    env: Mapping[str, str],
) -> dict[str, Any]:
    """The gateway draining `count` messages preloaded into `queue_name`; `recorder` is bound to
    their channel."""
    url = ctx.broker_url
    timeout = 60 + count / 200
    label = "forwarding-" + case.replace("_", "-")
    # Its inbound connection goes through a gate that holds every byte until the outbound link
    # is up: started on a full queue, the gateway would otherwise take messages before it can
    # publish them and divert them to the store (see the report).
    await _preload(url, prefix, count, queue_name)
    gate = child(
        ["gate", str(URL(url).port or 5672)],
        ctx.workdir / f"{label}-gate.log",
        capture=True,
        stdin=True,
    )
    try:
        assert gate.stdout is not None
        assert gate.stdin is not None
        gate_port = int(await asyncio.to_thread(gate.stdout.readline))
        gateway = ctx.gateway(
            label, env={**env, "BREAKWATER_INBOUND_BROKER_URL": through(url, gate_port)}
        )
        try:
            await asyncio.to_thread(gateway.start, until="connected")
            gateway.start_profile(label)
            gate.stdin.write(b"open\n")
            gate.stdin.flush()
            await recorder.wait_for(1, timeout)
            cpu_before = cpu_seconds(gateway.pid) or 0.0
            broker_before = broker_cpu()
            complete = await recorder.wait_for(count, timeout)
            gateway_cpu = (cpu_seconds(gateway.pid) or 0.0) - cpu_before
            gateway_broker_cpu = broker_cpu() - broker_before
            gateway.stop_profile()
            rss = gateway.rss_kib()
        finally:
            gateway.stop()
    finally:
        stop_child(gate)
    arrivals = recorder.arrivals[:count]
    events_per_s, span = throughput(arrivals)
    paths = Counter(a.path or "none" for a in arrivals)
    return {
        "bench": NAME,
        "case": case,
        "channel": recorder.routing_key,
        "events": count,
        "arrived": len(arrivals),
        "complete": complete,
        "events_per_s": events_per_s,
        "span_s": span,
        "direct": paths.get("direct", 0),
        "replay": paths.get("replay", 0),
        "rss_mib": round(rss / 1024, 1) if rss else None,
        # CPU time of the process from the first arrival to the last, per event.
        "cpu_ms_per_event": round(gateway_cpu * 1000 / max(1, count - 1), 3),
        "broker_cpu_ms_per_event": per_event_ms(gateway_broker_cpu, count),
        **order_check(arrivals, prefix),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


async def run(ctx: Context, size: Size) -> list[dict[str, Any]]:
    url = ctx.broker_url
    # The broker shares the machine's two cores with whatever it forwards for: its CPU per event
    # is what bounds a forwarder that needs a consume and an ack on top of each publish.
    broker = broker_pid()

    def broker_cpu() -> float:
        return (cpu_seconds(broker) or 0.0) if broker else 0.0

    count = size.events
    timeout = 60 + count / 200
    await declare_inbound_queue(url)
    await declare_inbound_queue(url, DECLARED_CHANNEL)
    results: list[dict[str, Any]] = []
    async with ArrivalRecorder(url) as recorder:
        # The gateway: the default catalog, orders.created validated by its pydantic model.
        pydantic = await _gateway_case(
            ctx,
            recorder,
            broker_cpu,
            case="gateway",
            queue_name=INBOUND_QUEUE,
            prefix="fwd",
            count=count,
            env={},
        )
        results.append(pydantic)
        gateway_rate = pydantic["events_per_s"]

        # The same, next to it: the same bodies on a declarative catalog's channel (JSON Schema).
        async with ArrivalRecorder(url, routing_key=DECLARED_CHANNEL) as declared_recorder:
            declared = await _gateway_case(
                ctx,
                declared_recorder,
                broker_cpu,
                case="gateway_declarative",
                queue_name=DECLARED_INBOUND_QUEUE,
                prefix="dcl",
                count=count,
                env=DECLARED_ENV,
            )
        await _purge(url, DECLARED_INBOUND_QUEUE)
        results.append(declared)

        # A plain FastStream relay over the same preloaded queue.
        await _purge(url)
        await recorder.wait_quiet(0.2 if ctx.smoke else 1.0, 30)
        recorder.reset()
        await _preload(url, "rly", count)
        relay = child(["relay", url], ctx.workdir / "relay.log")
        try:
            await recorder.wait_for_child(1, timeout, relay, ctx.workdir / "relay.log")
            cpu_before = cpu_seconds(relay.pid) or 0.0  # after its start-up (imports, connect)
            broker_before = broker_cpu()
            complete = await recorder.wait_for_child(
                count, timeout, relay, ctx.workdir / "relay.log"
            )
            relay_cpu = (cpu_seconds(relay.pid) or 0.0) - cpu_before
            relay_broker_cpu = broker_cpu() - broker_before
        finally:
            stop_child(relay)
        arrivals = recorder.arrivals[:count]
        relay_rate, span = throughput(arrivals)
        results.append(
            {
                "bench": NAME,
                "case": "faststream_relay",
                "events": count,
                "arrived": len(arrivals),
                "complete": complete,
                "events_per_s": relay_rate,
                "span_s": span,
                "cpu_ms_per_event": round(relay_cpu * 1000 / max(1, count - 1), 3),
                "broker_cpu_ms_per_event": per_event_ms(relay_broker_cpu, count),
            }
        )

        # For reference (no target): the same relay in plain aio-pika, the gateway's prefetch.
        await _purge(url)
        await recorder.wait_quiet(0.2 if ctx.smoke else 1.0, 30)
        recorder.reset()
        await _preload(url, "pkr", count)
        pika_log = ctx.workdir / "pikarelay.log"
        pika = child(["pikarelay", url, str(PREFETCH)], pika_log)
        try:
            await recorder.wait_for_child(1, timeout, pika, pika_log)
            cpu_before = cpu_seconds(pika.pid) or 0.0
            broker_before = broker_cpu()
            complete = await recorder.wait_for_child(count, timeout, pika, pika_log)
            pika_cpu = (cpu_seconds(pika.pid) or 0.0) - cpu_before
            pika_broker_cpu = broker_cpu() - broker_before
        finally:
            stop_child(pika)
        arrivals = recorder.arrivals[:count]
        pika_rate, span = throughput(arrivals)
        results.append(
            {
                "bench": NAME,
                "case": "aio_pika_relay",
                "events": count,
                "arrived": len(arrivals),
                "complete": complete,
                "events_per_s": pika_rate,
                "span_s": span,
                "cpu_ms_per_event": round(pika_cpu * 1000 / max(1, count - 1), 3),
                "broker_cpu_ms_per_event": per_event_ms(pika_broker_cpu, count),
                **order_check(arrivals, "pkr"),
            }
        )

        # Raw aio-pika, confirmed, 64 in flight, straight to the exchange.
        await _purge(url)
        await recorder.wait_quiet(0.2 if ctx.smoke else 1.0, 30)
        recorder.reset()
        broker_before = broker_cpu()
        raw = child(
            ["rawpub", url, str(count), str(RAW_IN_FLIGHT)],
            ctx.workdir / "rawpub.log",
            capture=True,
        )
        try:
            complete = await recorder.wait_for(count, timeout)
            raw_broker_cpu = broker_cpu() - broker_before
            raw.wait(30)
        finally:
            stop_child(raw)
        arrivals = recorder.arrivals[:count]
        raw_rate, span = throughput(arrivals)
        results.append(
            {
                "bench": NAME,
                "case": "aio_pika_raw_64",
                "events": count,
                "arrived": len(arrivals),
                "complete": complete,
                "events_per_s": raw_rate,
                "span_s": span,
                "broker_cpu_ms_per_event": per_event_ms(raw_broker_cpu, count),
                # A control for the order check: one publisher, publishes started in order.
                **order_check(arrivals, "raw"),
            }
        )
    results.append(
        {
            "bench": NAME,
            "case": "ratios",
            "gateway_vs_relay": round(gateway_rate / relay_rate, 3) if relay_rate else None,
            "gateway_vs_raw": round(gateway_rate / raw_rate, 3) if raw_rate else None,
            # The declarative channel against the pydantic one, same bodies, same run.
            "declarative_vs_pydantic": _ratio(declared["events_per_s"], gateway_rate),
            "declarative_cpu_vs_pydantic": _ratio(
                declared["cpu_ms_per_event"], pydantic["cpu_ms_per_event"]
            ),
        }
    )
    return results
