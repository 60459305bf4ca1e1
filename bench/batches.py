"""7. Batch ingress: `POST /v1/events/orders.created/batch`, broker up (`batch_published`) and
partitioned (`batch_stored`), against raw aio-pika confirmed publishing with 256 publishes in
flight (`aio_pika_raw_256`, the ceiling of anything that publishes through one connection).

`Size.events` 1 KiB events in batches of `Size.batch`, posted by `Size.clients` clients at once,
each batch with an Idempotency-Key base of its own (so every event's key is remembered, as a
producer that retries safely would have it). The rate is events over the time from the first
request to the last answer; every answer must be a 202 with every event `published` (or
`stored`). The published side and raw publishing run interleaved (raw, gateway, gateway, raw, ...)
so that neither always runs later on a machine whose load drifts; each run has a gateway (and a
store) of its own; `ratios` has the median of the rounds' ratios. The stored side runs as many
times, each through a partitioned TCP proxy with its breaker opened first, as the HTTP benchmark's
stored case does (its row: the mean, and `median_events_per_s`).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx
from yarl import URL

from bench.common import CHANNEL, Context, child, order_body, order_payload, stop_child, through
from bench.forwarding import combine_repetitions, compared, interleave
from bench.http_ingress import open_breaker
from tests.support.fault_proxy import FaultProxy

NAME = "batch"
RAW_IN_FLIGHT = 256
PUBLISHED = ("aio_pika_raw_256", "batch_published")
# The cases interleaved among themselves (the smoke test checks their runs' positions).
STORED = ("batch_stored",)
INTERLEAVED = (PUBLISHED, STORED)


@dataclass(frozen=True)
class Size:
    events: int
    batch: int
    clients: int
    repetitions: int = 2


FULL = Size(events=20_000, batch=1000, clients=2, repetitions=3)
SMOKE = Size(events=100, batch=25, clients=2)
SMOKE_ENV = {"BREAKWATER_PUBLISH_TIMEOUT_S": "0.3"}


def _bodies(size: Size) -> list[bytes]:
    """The batches' bodies: JSON arrays of the benchmark's 1 KiB orders, numbered throughout."""
    return [
        b"["
        + b",".join(order_body(order_payload(n)) for n in range(start, start + size.batch))
        + b"]"
        for start in range(0, size.events, size.batch)
    ]


async def _post_all(base_url: str, bodies: list[bytes], clients: int, label: str) -> dict[str, Any]:
    """Every batch posted once, `clients` at a time; the rate and what the answers said."""
    statuses: dict[str, int] = {}
    non_202 = 0
    queue = list(enumerate(bodies))
    queue.reverse()

    async def client() -> None:
        nonlocal non_202
        async with httpx.AsyncClient(timeout=120) as http:
            while queue:
                number, body = queue.pop()
                answer = await http.post(
                    f"{base_url}/v1/events/{CHANNEL}/batch",
                    content=body,
                    headers={
                        "content-type": "application/json",
                        "idempotency-key": f"{label}-{number}",
                    },
                )
                if answer.status_code != 202:
                    non_202 += 1
                    continue
                for result in answer.json()["results"]:
                    statuses[result["status"]] = statuses.get(result["status"], 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    seconds = time.perf_counter() - started
    events = sum(statuses.values())
    return {
        "events_per_s": round(events / seconds, 1) if seconds else 0.0,
        "seconds": round(seconds, 3),
        "accepted": events,
        "non_202": non_202,
        **{f"answered_{status}": count for status, count in sorted(statuses.items())},
    }


async def _gateway_run(ctx: Context, size: Size, label: str) -> dict[str, Any]:
    gateway = ctx.gateway(label)
    gateway.start(until="connected")
    try:
        gateway.start_profile(label)
        measured = await _post_all(gateway.base_url, _bodies(size), size.clients, label)
    finally:
        gateway.stop()
    return {"bench": NAME, "case": "batch_published", "events": size.events, **measured}


async def _raw_run(ctx: Context, size: Size, label: str) -> dict[str, Any]:
    raw = child(
        ["rawpub", ctx.broker_url, str(size.events), str(RAW_IN_FLIGHT)],
        ctx.workdir / f"{label}.log",
        capture=True,
    )
    try:
        out, _ = await asyncio.to_thread(raw.communicate, timeout=300)
    finally:
        stop_child(raw)
    seconds = float(json.loads(out.decode().strip().splitlines()[-1])["seconds"])
    return {
        "bench": NAME,
        "case": "aio_pika_raw_256",
        "events": size.events,
        "events_per_s": round(size.events / seconds, 1) if seconds else 0.0,
        "seconds": round(seconds, 3),
    }


async def _stored_run(ctx: Context, size: Size, label: str) -> dict[str, Any]:
    env = SMOKE_ENV if ctx.smoke else {}
    with FaultProxy(upstream_port=URL(ctx.broker_url).port or 5672) as proxy:
        gateway = ctx.gateway(label, broker_url=through(ctx.broker_url, proxy.port), env=env)
        gateway.start(until="connected")
        try:
            proxy.partition()
            await open_breaker(gateway.base_url)
            gateway.start_profile(label)
            measured = await _post_all(gateway.base_url, _bodies(size), size.clients, label)
        finally:
            proxy.heal()  # a gateway stopped while partitioned waits out its bounds
            gateway.stop()
    return {"bench": NAME, "case": "batch_stored", "events": size.events, **measured}


FIGURES = {
    "mean": ("events_per_s", "seconds"),
    "total": ("accepted", "non_202", "answered_published", "answered_stored"),
}


async def run(ctx: Context, size: Size) -> list[dict[str, Any]]:
    order = interleave(PUBLISHED, size.repetitions)
    runs: dict[str, list[dict[str, Any]]] = {"aio_pika_raw_256": [], "batch_published": []}
    for position, case in enumerate(order, 1):
        label = f"{case}-{len(runs[case]) + 1}"
        one = _raw_run if case == "aio_pika_raw_256" else _gateway_run
        runs[case].append({"position": position, **await one(ctx, size, label)})
    published = combine_repetitions(runs["batch_published"], **FIGURES)
    raw = combine_repetitions(runs["aio_pika_raw_256"], **FIGURES)
    # Each stored run on a gateway and store of its own; the target takes their median.
    stored_runs = [
        {"position": n, **await _stored_run(ctx, size, f"batch-stored-{n}")}
        for n in range(1, size.repetitions + 1)
    ]
    stored = combine_repetitions(stored_runs, **FIGURES)
    stored["median_events_per_s"] = statistics.median(r["events_per_s"] for r in stored_runs)
    ratios = {
        "bench": NAME,
        "case": "ratios",
        # The gateway's batches against raw confirmed publishing, same bodies, same run
        # (A: raw, B: gateway): the median of the rounds' ratios, and each round's.
        **compared(
            "published_vs_raw",
            order,
            "aio_pika_raw_256",
            [r["events_per_s"] for r in runs["aio_pika_raw_256"]],
            "batch_published",
            [r["events_per_s"] for r in runs["batch_published"]],
        ),
        "batch_events": size.batch,
        "clients": size.clients,
    }
    return [published, stored, raw, ratios]
