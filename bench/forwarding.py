"""1. AMQP forwarding: a preloaded `breakwater.in.orders.created` drained to `breakwater.events`.

The same N persistent 1 KiB messages are preloaded for the gateway and for a plain FastStream relay;
raw aio-pika confirmed publishing (64 in flight) publishes N straight to the exchange. One consumer
times every arrival; the rate is from the first arrival to the last.

Every message of the `gateway` case carries a message_id, so the gateway remembers each one's
idempotency key (a row in its store, group-committed). `gateway_keyless` runs the same case with
the same bodies sent without a message_id (each carries its number as its correlation_id instead,
for the order check), so that no key is remembered: its rate against the `gateway` case's is what
the keys cost.

`gateway_declarative` runs the gateway case with the declarative catalog (bench/catalog.yaml): the
same N bodies (with message_ids) through `breakwater.in.orders.created.declared`, validated
against a JSON Schema instead of the pydantic model.

`gateway_asyncio` runs the gateway case on the standard library's event loop
(BREAKWATER_EVENT_LOOP=asyncio) instead of uvloop: the gateway's rate against it is what uvloop
gives (`uvloop_vs_asyncio`).

The four are interleaved (keyless, gateway, declarative, asyncio, asyncio, declarative, gateway,
keyless: CASES in order, then reversed, `Size.repetitions` runs of each; see interleave()), so that
each comparison with the `gateway` case but the loop's is ABBA with adjacent runs, and with an even
number of runs no side's mean position is later than another's on a machine whose load drifts. Their rows report the mean of the runs (counts summed, checks over
every run, each run under `runs`); `ratios` has the declarative side's mean against the pydantic
side's (`declarative_vs_pydantic`), the keyed side's against the keyless side's
(`keys_vs_keyless`) and uvloop's against asyncio's (`uvloop_vs_asyncio`).
"""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
from yarl import URL

from bench.common import (
    ASYNCIO_ENV,
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
    # Runs of each gateway case (CASES), interleaved (see interleave()).
    repetitions: int = 2


FULL = Size(events=20_000)
SMOKE = Size(events=50)

# The gateway cases, in the order of their odd rounds (see interleave()): each comparison is of a
# neighbour with `gateway`, keyless (A) against keyed (B), pydantic (A) against declarative (B).
CASES = ("gateway_keyless", "gateway", "gateway_declarative", "gateway_asyncio")
# Each group of cases interleaved among themselves (the smoke test checks their runs' positions).
INTERLEAVED = (CASES,)


def interleave(sides: Sequence[str], repetitions: int) -> list[str]:
    """The side of each run, `repetitions` of each: round i (the i-th run of every side) runs the
    sides in order when i is odd and reversed when even, e.g. A B C C B A A B C ... Any two
    neighbours X, Y of `sides` then run X Y Y X X Y ... (ABBA, their runs adjacent), and with an
    even `repetitions` every side's mean position is the same."""
    return [
        s for i in range(repetitions) for s in (sides if i % 2 == 0 else tuple(reversed(sides)))
    ]


def abba(repetitions: int) -> list[str]:
    """The side of each run, "A" or "B", `repetitions` of each: A B B A A B B A ...; round i (the
    i-th A and the i-th B) is A then B when i is odd, B then A when even."""
    return interleave(("A", "B"), repetitions)


def pair_order(order: Sequence[str], a: str, b: str) -> str:
    """How sides `a` and `b` ran among `order`, as "A" and "B" (e.g. "ABBA")."""
    return "".join("A" if s == a else "B" for s in order if s in (a, b))


def combine_repetitions(
    runs: Sequence[Mapping[str, Any]],
    *,
    mean: Collection[str] = (),
    total: Collection[str] = (),
    every: Collection[str] = (),
    peak: Collection[str] = (),
) -> dict[str, Any]:
    """One row for the runs of a case: the first run's row with its `mean` keys averaged, `total`
    keys summed, `every` keys true only if true in every run and `peak` keys at their maximum (a
    key missing or None in a run gives None, except for `peak`); plus `repetitions`, `aggregate`
    and `runs` (each run's own figures of those keys and its `position`, when it has one)."""
    combined = {k: v for k, v in runs[0].items() if k != "position"}

    def values(key: str) -> list[Any]:
        return [run.get(key) for run in runs]

    for key in (k for k in mean if k in combined):
        got = values(key)
        combined[key] = None if None in got else round(statistics.fmean(got), 3)
    for key in (k for k in total if k in combined):
        got = values(key)
        combined[key] = None if None in got else sum(got)
    for key in (k for k in every if k in combined):
        combined[key] = all(bool(v) for v in values(key))
    for key in (k for k in peak if k in combined):
        present = [v for v in values(key) if v is not None]
        combined[key] = max(present) if present else None
    kept = {"position", *mean, *total, *every, *peak}
    combined["repetitions"] = len(runs)
    combined["aggregate"] = "mean of the runs (counts summed" + (
        ", checks over every run)" if every else ")"
    )
    combined["runs"] = [{k: v for k, v in run.items() if k in kept} for run in runs]
    return combined


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def ratio_of_sides(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Side B against side A from their runs' figures (in the order each side ran): the ratio of
    the sums, (B1+B2+...)/(A1+A2+...) (the ratio of the means), and of each round, Bi/Ai."""
    return {
        "ratio": _ratio(sum(b), sum(a)),
        "rounds": [_ratio(y, x) for x, y in zip(a, b, strict=True)],
    }


async def _purge(url: str, queue_name: str = INBOUND_QUEUE) -> None:
    """Whatever a stopped run left in the inbound queue (unacked, requeued) must not count."""
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        await queue.purge()
    finally:
        await connection.close()


async def _preload(
    url: str, prefix: str, count: int, queue_name: str = INBOUND_QUEUE, *, keys: bool = True
) -> float:
    """`count` messages numbered `prefix`-n: in their message_id (`keys`), else in their
    correlation_id, with no message_id (an inbound message without an idempotency key)."""
    bodies = [order_bytes(n) for n in range(count)]
    ids = [message_id(prefix, n) for n in range(count)]
    if keys:
        return await publish_confirmed(url, bodies, ids, routing_key=queue_name)
    return await publish_confirmed(
        url,
        bodies,
        [None] * count,
        routing_key=queue_name,
        properties=lambda i: {"correlation_id": ids[i]},
    )


def per_event_ms(seconds: float, count: int) -> float:
    return round(seconds * 1000 / max(1, count - 1), 3)


async def _gateway_case(
    ctx: Context,
    recorder: ArrivalRecorder,
    broker_cpu: Callable[[], float],
    *,
    case: str,
    repetition: int,
    queue_name: str,
    prefix: str,
    count: int,
    env: Mapping[str, str],
    keys: bool = True,
) -> dict[str, Any]:
    """The gateway (a new process, with a store of its own) draining `count` messages preloaded
    into `queue_name` (with message_ids when `keys`); `recorder` is bound to their channel."""
    url = ctx.broker_url
    timeout = 60 + count / 200
    label = f"forwarding-{case.replace('_', '-')}-{repetition}"
    # Its inbound connection goes through a gate that holds every byte until the outbound link
    # is up: started on a full queue, the gateway would otherwise take messages before it can
    # publish them and divert them to the store (see the report).
    await _preload(url, prefix, count, queue_name, keys=keys)
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
        "idempotency_keys": keys,
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
        **order_check(arrivals, prefix, "message_id" if keys else "correlation_id"),
    }


# How the runs of a gateway case combine into its row (combine_repetitions).
GATEWAY_FIGURES: dict[str, tuple[str, ...]] = {
    "mean": ("events_per_s", "span_s", "cpu_ms_per_event", "broker_cpu_ms_per_event"),
    "total": ("arrived", "direct", "replay", "order_inversions", "unique", "duplicates"),
    "every": ("complete", "order_ok"),
    "peak": ("rss_mib",),
}


@dataclass(frozen=True)
class _Side:
    case: str
    queue_name: str
    prefix: str
    env: Mapping[str, str]
    recorder: ArrivalRecorder
    keys: bool = True


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
    quiet_s = 0.2 if ctx.smoke else 1.0
    results: list[dict[str, Any]] = []
    async with ArrivalRecorder(url) as recorder:
        async with ArrivalRecorder(url, routing_key=DECLARED_CHANNEL) as declared_recorder:
            sides = {
                # The default catalog: orders.created validated by its pydantic model; every
                # message has a message_id (an idempotency key).
                "gateway": _Side("gateway", INBOUND_QUEUE, "fwd", {}, recorder),
                # The same, no message has a message_id: no key to remember.
                "gateway_keyless": _Side(
                    "gateway_keyless", INBOUND_QUEUE, "fnk", {}, recorder, keys=False
                ),
                # The same bodies on a declarative catalog's channel (JSON Schema).
                "gateway_declarative": _Side(
                    "gateway_declarative",
                    DECLARED_INBOUND_QUEUE,
                    "dcl",
                    DECLARED_ENV,
                    declared_recorder,
                ),
                # The default catalog's case on the standard library's event loop.
                "gateway_asyncio": _Side(
                    "gateway_asyncio", INBOUND_QUEUE, "fas", ASYNCIO_ENV, recorder
                ),
            }
            runs: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
            order = interleave(CASES, size.repetitions)
            for position, name in enumerate(order, 1):
                side = sides[name]
                repetition = len(runs[name]) + 1
                # Whatever an earlier run left (unacked and requeued, late arrivals) must not
                # count in this one: its queue emptied, both channels quiet, its recorder reset.
                await _purge(url, side.queue_name)
                for each in (recorder, declared_recorder):
                    await each.wait_quiet(quiet_s, 30)
                side.recorder.reset()
                row = await _gateway_case(
                    ctx,
                    side.recorder,
                    broker_cpu,
                    case=side.case,
                    repetition=repetition,
                    queue_name=side.queue_name,
                    prefix=f"{side.prefix}{repetition}",
                    count=count,
                    env=side.env,
                    keys=side.keys,
                )
                runs[name].append({"position": position, **row})
        await _purge(url, DECLARED_INBOUND_QUEUE)
        combined = {case: combine_repetitions(runs[case], **GATEWAY_FIGURES) for case in CASES}
        # In the order the rows always had: the gateway, its declarative twin, then the new side.
        results += [
            combined[c]
            for c in ("gateway", "gateway_declarative", "gateway_keyless", "gateway_asyncio")
        ]
        gateway_rate = combined["gateway"]["events_per_s"]

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

    def figures(case: str, key: str) -> list[Any]:
        return [r[key] for r in runs[case]]

    a_rates, a_cpu = figures("gateway", "events_per_s"), figures("gateway", "cpu_ms_per_event")
    b_rates = figures("gateway_declarative", "events_per_s")
    b_cpu = figures("gateway_declarative", "cpu_ms_per_event")
    k_rates = figures("gateway_keyless", "events_per_s")
    k_cpu = figures("gateway_keyless", "cpu_ms_per_event")
    loop_rates = ratio_of_sides(figures("gateway_asyncio", "events_per_s"), a_rates)
    loop_cpu = ratio_of_sides(figures("gateway_asyncio", "cpu_ms_per_event"), a_cpu)
    rates, cpu = ratio_of_sides(a_rates, b_rates), ratio_of_sides(a_cpu, b_cpu)
    # Keyless is side A (the baseline), keyed side B: the ratio is keyed / keyless.
    keys_rates, keys_cpu = ratio_of_sides(k_rates, a_rates), ratio_of_sides(k_cpu, a_cpu)
    results.append(
        {
            "bench": NAME,
            "case": "ratios",
            "gateway_vs_relay": round(gateway_rate / relay_rate, 3) if relay_rate else None,
            "gateway_vs_raw": round(gateway_rate / raw_rate, 3) if raw_rate else None,
            # The declarative channel against the pydantic one, same bodies, same run, ABBA:
            # (B1+B2)/(A1+A2), and per round (B1/A1, B2/A2), from each run's own figures.
            "declarative_vs_pydantic": rates["ratio"],
            "declarative_vs_pydantic_rounds": rates["rounds"],
            "declarative_vs_pydantic_order": pair_order(order, "gateway", "gateway_declarative"),
            "pydantic_events_per_s": a_rates,
            "declarative_events_per_s": b_rates,
            "declarative_cpu_vs_pydantic": cpu["ratio"],
            "declarative_cpu_vs_pydantic_rounds": cpu["rounds"],
            "pydantic_cpu_ms_per_event": a_cpu,
            "declarative_cpu_ms_per_event": b_cpu,
            # Every message with a message_id (an idempotency key) against none, same bodies, same
            # run, ABBA (A: keyless, B: keyed): (B1+B2)/(A1+A2), and per round (B1/A1, B2/A2).
            "keys_vs_keyless": keys_rates["ratio"],
            "keys_vs_keyless_rounds": keys_rates["rounds"],
            "keys_vs_keyless_order": pair_order(order, "gateway_keyless", "gateway"),
            "keyless_events_per_s": k_rates,
            "keys_cpu_vs_keyless": keys_cpu["ratio"],
            "keys_cpu_vs_keyless_rounds": keys_cpu["rounds"],
            "keyless_cpu_ms_per_event": k_cpu,
            # uvloop (the default) against the standard library's loop, same bodies, same run
            # (A: asyncio, B: uvloop): (B1+B2)/(A1+A2), and per round.
            "uvloop_vs_asyncio": loop_rates["ratio"],
            "uvloop_vs_asyncio_rounds": loop_rates["rounds"],
            "uvloop_cpu_vs_asyncio": loop_cpu["ratio"],
            "asyncio_events_per_s": figures("gateway_asyncio", "events_per_s"),
            "asyncio_cpu_ms_per_event": figures("gateway_asyncio", "cpu_ms_per_event"),
            "run_order": order,
        }
    )
    return results
