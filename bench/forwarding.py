"""1. AMQP forwarding: a preloaded `breakwater.in.orders.created` drained to `breakwater.events`.

The same N persistent 1 KiB messages are preloaded for the gateway and for the relays it is
measured against (a plain FastStream relay, the recipe from FastStream's docs; the same relay in
plain aio-pika, for reference); raw aio-pika confirmed publishing (64 in flight) publishes N
straight to the exchange. One consumer times every arrival; the rate is from the first arrival to
the last.

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

Every case, the yardsticks too, runs `Size.repetitions` times, interleaved (CASES in order, then
reversed, ...; see interleave()), so that no side always runs later than another on a machine whose
load drifts, and the gateway's keyless and declarative twins run next to it. Their rows report the
mean of the runs (counts summed, checks over every run, each run under `runs`); `ratios` compares
sides by the median of the rounds' ratios (round i: the i-th run of each side): the gateway
against the relay (`gateway_vs_relay`) and raw publishing (`gateway_vs_raw`), the declarative side
against the pydantic one (`declarative_vs_pydantic`), the keyed side against the keyless one
(`keys_vs_keyless`) and uvloop against asyncio (`uvloop_vs_asyncio`).
"""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
    purge_queue,
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
    # Runs of each case (CASES), interleaved (see interleave()).
    repetitions: int = 2


FULL = Size(events=20_000, repetitions=3)
SMOKE = Size(events=50)

# The gateway's cases: keyless and declarative next to `gateway` (each of those comparisons is of
# neighbours: keyless (A) against keyed (B), pydantic (A) against declarative (B)).
GATEWAY_CASES = ("gateway", "gateway_declarative", "gateway_keyless", "gateway_asyncio")
# Every case in the order of the odd rounds (see interleave()), the yardsticks (PEERS) around the
# gateway's.
CASES = (
    "faststream_relay",
    "gateway_keyless",
    "gateway",
    "gateway_declarative",
    "gateway_asyncio",
    "aio_pika_relay",
    "aio_pika_raw_64",
)
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
    """Side B against side A from their runs' figures (in the order each side ran): each round's
    ratio, Bi/Ai, and their median (one slow run on a noisy machine moves a mean, not a median)."""
    rounds = [_ratio(y, x) for x, y in zip(a, b, strict=True)]
    known = [r for r in rounds if r is not None]
    return {"ratio": round(statistics.median(known), 3) if known else None, "rounds": rounds}


def compared(
    name: str,
    order: Sequence[str],
    a: str,
    a_values: Sequence[float],
    b: str,
    b_values: Sequence[float],
) -> dict[str, Any]:
    """Side `b` against side `a` of one run's interleaved `order`, from each side's runs' figures:
    the median of the rounds' ratios (`name`), each round's ratio, and how the sides' runs were
    ordered ("ABBA...")."""
    ratio = ratio_of_sides(a_values, b_values)
    return {
        name: ratio["ratio"],
        f"{name}_rounds": ratio["rounds"],
        f"{name}_order": pair_order(order, a, b),
    }


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


# How the runs of a case combine into its row (combine_repetitions).
FIGURES: dict[str, tuple[str, ...]] = {
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


@dataclass(frozen=True)
class _Peer:
    """A yardstick (bench.yardsticks) run as a side of its own, interleaved with the gateway's."""

    case: str
    prefix: str  # its events' numbering (the order check), with the run's number
    command: Callable[[str, int, str], list[str]]  # yardstick arguments, from (url, count, prefix)
    drains: bool  # drains a preloaded inbound queue (a relay), else publishes itself
    keeps_ids: bool  # forwards the message_id, so the order check can see its events


PEERS = {
    # The recipe from FastStream's docs (a new message_id per forwarded message: no order check).
    "faststream_relay": _Peer("faststream_relay", "rly", lambda u, n, p: ["relay", u], True, False),
    # For reference (no target): the same relay in plain aio-pika, the gateway's prefetch.
    "aio_pika_relay": _Peer(
        "aio_pika_relay", "pkr", lambda u, n, p: ["pikarelay", u, str(PREFETCH)], True, True
    ),
    # Raw aio-pika, confirmed, 64 in flight, straight to the exchange: the ceiling.
    "aio_pika_raw_64": _Peer(
        "aio_pika_raw_64",
        "raw",
        lambda u, n, p: ["rawpub", u, str(n), str(RAW_IN_FLIGHT), p],
        False,
        True,
    ),
}


async def _peer_case(
    ctx: Context,
    recorder: ArrivalRecorder,
    broker_cpu: Callable[[], float],
    *,
    peer: _Peer,
    repetition: int,
    count: int,
) -> dict[str, Any]:
    """One run of a yardstick, timed by the same consumer as the gateway's runs."""
    url = ctx.broker_url
    timeout = 60 + count / 200
    prefix = f"{peer.prefix}{repetition}"
    log = ctx.workdir / f"{peer.case.replace('_', '-')}-{repetition}.log"
    own_cpu: float | None = None
    if peer.drains:
        await _preload(url, prefix, count)
    broker_before = broker_cpu()
    proc = child(peer.command(url, count, prefix), log, capture=not peer.drains)
    try:
        if peer.drains:
            await recorder.wait_for_child(1, timeout, proc, log)
            cpu_before = cpu_seconds(proc.pid) or 0.0  # after its start-up (imports, connect)
            broker_before = broker_cpu()
            complete = await recorder.wait_for_child(count, timeout, proc, log)
            own_cpu = (cpu_seconds(proc.pid) or 0.0) - cpu_before
        else:
            complete = await recorder.wait_for(count, timeout)
            await asyncio.to_thread(proc.wait, 30)
        peer_broker_cpu = broker_cpu() - broker_before
    finally:
        stop_child(proc)
    arrivals = recorder.arrivals[:count]
    events_per_s, span = throughput(arrivals)
    row: dict[str, Any] = {
        "bench": NAME,
        "case": peer.case,
        "events": count,
        "arrived": len(arrivals),
        "complete": complete,
        "events_per_s": events_per_s,
        "span_s": span,
        "broker_cpu_ms_per_event": per_event_ms(peer_broker_cpu, count),
    }
    if own_cpu is not None:
        row["cpu_ms_per_event"] = round(own_cpu * 1000 / max(1, count - 1), 3)
    if peer.keeps_ids:
        row |= order_check(arrivals, prefix)
    return row


async def run(ctx: Context, size: Size) -> list[dict[str, Any]]:
    url = ctx.broker_url
    # The broker shares the machine's two cores with whatever it forwards for: its CPU per event
    # is what bounds a forwarder that needs a consume and an ack on top of each publish.
    broker = broker_pid()

    def broker_cpu() -> float:
        return (cpu_seconds(broker) or 0.0) if broker else 0.0

    count = size.events
    await declare_inbound_queue(url)
    await declare_inbound_queue(url, DECLARED_CHANNEL)
    quiet_s = 0.2 if ctx.smoke else 1.0
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
                side = sides.get(name)
                repetition = len(runs[name]) + 1
                # Whatever an earlier run left (unacked and requeued, late arrivals) must not
                # count in this one: its queue emptied, both channels quiet, its recorder reset.
                await purge_queue(url, side.queue_name if side else INBOUND_QUEUE)
                for each in (recorder, declared_recorder):
                    await each.wait_quiet(quiet_s, 30)
                if side is None:
                    recorder.reset()
                    row = await _peer_case(
                        ctx,
                        recorder,
                        broker_cpu,
                        peer=PEERS[name],
                        repetition=repetition,
                        count=count,
                    )
                else:
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
        await purge_queue(url, INBOUND_QUEUE)
        await purge_queue(url, DECLARED_INBOUND_QUEUE)
    combined = {case: combine_repetitions(runs[case], **FIGURES) for case in CASES}
    # In the order the rows always had: the gateway, its variants, then the yardsticks.
    results = [combined[c] for c in (*GATEWAY_CASES, *PEERS)]

    def figures(case: str, key: str) -> list[Any]:
        return [r[key] for r in runs[case]]

    def comparison(name: str, a: str, b: str) -> dict[str, Any]:
        return compared(name, order, a, figures(a, "events_per_s"), b, figures(b, "events_per_s"))

    a_cpu = figures("gateway", "cpu_ms_per_event")
    cpu = ratio_of_sides(a_cpu, figures("gateway_declarative", "cpu_ms_per_event"))
    # Keyless is side A (the baseline), keyed side B: the ratio is keyed / keyless.
    keys_cpu = ratio_of_sides(figures("gateway_keyless", "cpu_ms_per_event"), a_cpu)
    loop_cpu = ratio_of_sides(figures("gateway_asyncio", "cpu_ms_per_event"), a_cpu)
    results.append(
        {
            "bench": NAME,
            "case": "ratios",
            # The targets: the gateway against the FastStream relay and raw publishing, the
            # median of the rounds (A: the yardstick, B: the gateway).
            **comparison("gateway_vs_relay", "faststream_relay", "gateway"),
            **comparison("gateway_vs_raw", "aio_pika_raw_64", "gateway"),
            "relay_events_per_s": figures("faststream_relay", "events_per_s"),
            "raw_events_per_s": figures("aio_pika_raw_64", "events_per_s"),
            # The declarative channel against the pydantic one, same bodies (A: pydantic).
            **comparison("declarative_vs_pydantic", "gateway", "gateway_declarative"),
            "pydantic_events_per_s": figures("gateway", "events_per_s"),
            "declarative_events_per_s": figures("gateway_declarative", "events_per_s"),
            "declarative_cpu_vs_pydantic": cpu["ratio"],
            "declarative_cpu_vs_pydantic_rounds": cpu["rounds"],
            "pydantic_cpu_ms_per_event": a_cpu,
            "declarative_cpu_ms_per_event": figures("gateway_declarative", "cpu_ms_per_event"),
            # Every message with a message_id (an idempotency key) against none, same bodies
            # (A: keyless, B: keyed).
            **comparison("keys_vs_keyless", "gateway_keyless", "gateway"),
            "keyless_events_per_s": figures("gateway_keyless", "events_per_s"),
            "keys_cpu_vs_keyless": keys_cpu["ratio"],
            "keys_cpu_vs_keyless_rounds": keys_cpu["rounds"],
            "keyless_cpu_ms_per_event": figures("gateway_keyless", "cpu_ms_per_event"),
            # uvloop (the default) against the standard library's loop, same bodies
            # (A: asyncio, B: uvloop).
            **comparison("uvloop_vs_asyncio", "gateway_asyncio", "gateway"),
            "uvloop_cpu_vs_asyncio": loop_cpu["ratio"],
            "asyncio_events_per_s": figures("gateway_asyncio", "events_per_s"),
            "asyncio_cpu_ms_per_event": figures("gateway_asyncio", "cpu_ms_per_event"),
            "run_order": order,
        }
    )
    return results
