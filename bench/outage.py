"""4. Outage: a steady closed-loop HTTP client (8 concurrent requests) while the gateway's link to
the broker is partitioned (fault proxy: bytes held, sockets open) and then healed.

Reports the time from the partition to the breaker opening (/readyz polled every 10 ms), from the
heal to the breaker closing, and the latency of the requests started before, during and after the
partition.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from yarl import URL

from bench.common import (
    CHANNEL,
    Context,
    latency_summary,
    order_body,
    order_payload,
    through,
)
from tests.support.fault_proxy import FaultProxy

NAME = "outage"
POLL_S = 0.01


@dataclass(frozen=True)
class Size:
    before_s: float
    during_s: float
    after_s: float
    concurrency: int = 8
    env: dict[str, str] = field(default_factory=dict)


FULL = Size(before_s=3, during_s=12, after_s=16)
# Short deadline and reset timeout so the smoke test sees the breaker open and close in seconds.
SMOKE = Size(
    before_s=0.3,
    during_s=1.5,
    after_s=2.0,
    concurrency=2,
    env={"BREAKWATER_PUBLISH_TIMEOUT_S": "0.3", "BREAKWATER_BREAKER_RESET_TIMEOUT_S": "0.5"},
)


@dataclass(slots=True)
class Sample:
    started: float
    ms: float
    status: str  # published | stored | http-<code> | error


async def _client(base_url: str, stop: asyncio.Event, samples: list[Sample]) -> None:
    body = order_body(order_payload(2))
    async with httpx.AsyncClient(timeout=30) as client:
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = await client.post(
                    f"{base_url}/v1/events/{CHANNEL}",
                    content=body,
                    headers={"content-type": "application/json"},
                )
                status = (
                    str(response.json()["status"])
                    if response.status_code == 202
                    else f"http-{response.status_code}"
                )
            except httpx.HTTPError:
                status = "error"
            samples.append(Sample(started, (time.monotonic() - started) * 1000, status))


async def _watch(base_url: str, stop: asyncio.Event, states: list[tuple[float, str]]) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        while not stop.is_set():
            try:
                state = str((await client.get(f"{base_url}/readyz")).json()["breaker"])
            except (httpx.HTTPError, ValueError, KeyError):
                state = "unknown"
            if not states or states[-1][1] != state:
                states.append((time.monotonic(), state))
            await asyncio.sleep(POLL_S)


def _first(states: list[tuple[float, str]], state: str, after: float) -> float | None:
    return next((at - after for at, s in states if s == state and at >= after), None)


async def run(ctx: Context, size: Size) -> list[dict[str, Any]]:
    deadline_s = float(size.env.get("BREAKWATER_PUBLISH_TIMEOUT_S", "2.0"))
    with FaultProxy(upstream_port=URL(ctx.broker_url).port or 5672) as proxy:
        gateway = ctx.gateway(
            "outage", broker_url=through(ctx.broker_url, proxy.port), env=size.env
        )
        gateway.start(until="connected")
        stop = asyncio.Event()
        samples: list[Sample] = []
        states: list[tuple[float, str]] = []
        try:
            tasks = [
                asyncio.create_task(_client(gateway.base_url, stop, samples))
                for _ in range(size.concurrency)
            ]
            tasks.append(asyncio.create_task(_watch(gateway.base_url, stop, states)))
            await asyncio.sleep(size.before_s)
            gateway.start_profile("outage")
            partitioned_at = time.monotonic()
            await asyncio.to_thread(proxy.partition)
            await asyncio.sleep(size.during_s)
            healed_at = time.monotonic()
            await asyncio.to_thread(proxy.heal)
            await asyncio.sleep(size.after_s)
            stop.set()
            await asyncio.gather(*tasks)
            depth_at_end = gateway.readyz().get("store_depth")
        finally:
            gateway.stop()

    results: list[dict[str, Any]] = []
    phases = {
        "before": (float("-inf"), partitioned_at),
        "during": (partitioned_at, healed_at),
        "after": (healed_at, float("inf")),
    }
    for phase, (start, end) in phases.items():
        chosen = [s for s in samples if start <= s.started < end]
        outcomes = Counter(s.status for s in chosen)
        span = min(end, max((s.started for s in chosen), default=start)) - max(
            start, min((s.started for s in chosen), default=start)
        )
        results.append(
            {
                "bench": NAME,
                "case": phase,
                **latency_summary([s.ms for s in chosen]),
                "requests_per_s": round(len(chosen) / span, 1) if span > 0 else None,
                "published": outcomes.get("published", 0),
                "stored": outcomes.get("stored", 0),
                "failed": sum(n for k, n in outcomes.items() if k not in ("published", "stored")),
            }
        )
    # Every request in flight at some moment of the partition, started before it or not.
    overlapping = [
        s.ms for s in samples if s.started < healed_at and s.started + s.ms / 1000 > partitioned_at
    ]
    results.append(
        {
            "bench": NAME,
            "case": "breaker",
            "partition_to_open_s": _round(_first(states, "open", partitioned_at)),
            "heal_to_closed_s": _round(_first(states, "closed", healed_at)),
            "publish_deadline_s": deadline_s,
            "slowest_during_ms": round(max(overlapping), 3) if overlapping else None,
            "limit_ms": deadline_s * 1000 + 100,
            "store_depth_at_end": depth_at_end,
            "states": [(round(at - partitioned_at, 3), state) for at, state in states],
        }
    )
    return results


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
