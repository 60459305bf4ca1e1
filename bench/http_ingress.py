"""2. HTTP ingress driven by wrk: broker up (`published`) against partitioned (`stored`).

Two gateways on the same broker: one connected directly, one through a TCP fault proxy that is
partitioned (bytes held) and whose breaker is opened by a few requests before the measurement.
Each is measured under load (wrk, many connections) and one request at a time (wrk -c1), which
gives the latency of a single request without queueing in front of it.

`published_declarative` measures a third gateway, broker up, right after `published`: the same body
POSTed to the declarative catalog's channel (bench/catalog.yaml, a JSON Schema) instead of the
default catalog's pydantic one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from yarl import URL

from bench import wrk
from bench.common import (
    CHANNEL,
    DECLARED_CHANNEL,
    DECLARED_ENV,
    Context,
    accepted_counts,
    order_body,
    order_payload,
    through,
)
from tests.support.fault_proxy import FaultProxy

NAME = "http"


@dataclass(frozen=True)
class Size:
    duration_s: float
    connections: int
    single_duration_s: float
    env: dict[str, str] = field(default_factory=dict)  # for the partitioned gateway


FULL = Size(duration_s=10, connections=32, single_duration_s=4)
# A short publish deadline opens the breaker in a fraction of a second.
SMOKE = Size(
    duration_s=1,
    connections=4,
    single_duration_s=1,
    env={"BREAKWATER_PUBLISH_TIMEOUT_S": "0.3"},
)


async def open_breaker(base_url: str, timeout: float = 60) -> tuple[float, int]:  # noqa: ASYNC109
    """Send requests until /readyz says the breaker is open; (seconds it took, requests sent)."""
    body = order_body(order_payload(0))
    started = time.perf_counter()
    sent = 0
    async with httpx.AsyncClient(timeout=30) as client:

        async def breaker() -> str:
            return str((await client.get(f"{base_url}/readyz")).json()["breaker"])

        while await breaker() != "open":
            if time.perf_counter() - started > timeout:
                raise TimeoutError("the breaker did not open")
            # fail_max (5) concurrent publishes, each failing at the publish deadline.
            posts = [
                client.post(
                    f"{base_url}/v1/events/{CHANNEL}",
                    content=body,
                    headers={"content-type": "application/json"},
                )
                for _ in range(8)
            ]
            sent += len(posts)
            await asyncio.gather(*posts)
    return time.perf_counter() - started, sent


def _measure(
    ctx: Context, base_url: str, case: str, size: Size, channel: str = CHANNEL
) -> list[dict[str, Any]]:
    body_file = ctx.workdir / f"{case}-body.json"
    body_file.write_bytes(order_body(order_payload(1)))
    url = f"{base_url}/v1/events/{channel}"
    results = []
    for mode, connections, duration in (
        ("load", size.connections, size.duration_s),
        ("single", 1, size.single_duration_s),
    ):
        before = accepted_counts(base_url, channel)
        figures = wrk.run(
            url, body_file, f"{case}-{mode}", duration_s=duration, connections=connections
        )
        after = accepted_counts(base_url, channel)
        results.append(
            {
                "bench": NAME,
                "case": case,
                "mode": mode,
                "channel": channel,
                **figures,
                "answered_published": after.get("published", 0) - before.get("published", 0),
                "answered_stored": after.get("stored", 0) - before.get("stored", 0),
            }
        )
    return results


async def run(ctx: Context, size: Size) -> list[dict[str, Any]]:
    if not wrk.available():
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    results: list[dict[str, Any]] = []

    direct = ctx.gateway("http-published")
    direct.start(until="connected")
    try:
        direct.start_profile("http-published")
        results += await asyncio.to_thread(_measure, ctx, direct.base_url, "published", size)
    finally:
        direct.stop()

    # The same, next to it, on the declarative catalog's channel.
    declared = ctx.gateway("http-published-declarative", env=DECLARED_ENV)
    declared.start(until="connected")
    try:
        declared.start_profile("http-published-declarative")
        results += await asyncio.to_thread(
            _measure, ctx, declared.base_url, "published_declarative", size, DECLARED_CHANNEL
        )
    finally:
        declared.stop()

    with FaultProxy(upstream_port=URL(ctx.broker_url).port or 5672) as proxy:
        via_proxy = ctx.gateway(
            "http-stored", broker_url=through(ctx.broker_url, proxy.port), env=size.env
        )
        via_proxy.start(until="connected")
        try:
            proxy.partition()
            opened_after_s, sent = await open_breaker(via_proxy.base_url)
            via_proxy.start_profile("http-stored")
            measured = await asyncio.to_thread(_measure, ctx, via_proxy.base_url, "stored", size)
            for result in measured:
                result["breaker_opened_after_s"] = round(opened_after_s, 3)
                result["requests_to_open"] = sent
            results += measured
        finally:
            # Healed first: a gateway stopped while partitioned does not exit within 30 s.
            proxy.heal()
            via_proxy.stop()

    by_key = {(r["case"], r["mode"]): r for r in results}
    published = by_key[("published", "load")]["requests_per_s"]
    stored = by_key[("stored", "load")]["requests_per_s"]
    declarative = by_key[("published_declarative", "load")]["requests_per_s"]
    results.append(
        {
            "bench": NAME,
            "case": "ratios",
            "stored_vs_published": round(stored / published, 3) if published else None,
            "stored_single_p50_ms": by_key[("stored", "single")].get("p50_ms"),
            "published_single_p50_ms": by_key[("published", "single")].get("p50_ms"),
            # The declarative channel against the pydantic one (both broker up), same body.
            "declarative_vs_pydantic": round(declarative / published, 3) if published else None,
            "declarative_single_p50_ms": by_key[("published_declarative", "single")].get("p50_ms"),
        }
    )
    return results
