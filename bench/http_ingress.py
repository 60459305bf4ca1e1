"""2. HTTP ingress driven by wrk: broker up (`published`) against partitioned (`stored`).

Two gateways on the same broker: one connected directly, one through a TCP fault proxy that is
partitioned (bytes held) and whose breaker is opened by a few requests before the measurement.
Each is measured under load (wrk, many connections) and one request at a time (wrk -c1), which
gives the latency of a single request without queueing in front of it.

`published_declarative` measures the same, broker up, with a gateway on the declarative catalog
(bench/catalog.yaml): the same body POSTed to its channel (a JSON Schema) instead of the default
catalog's pydantic one. The two are interleaved ABBA (published, published_declarative,
published_declarative, published: `Size.repetitions` runs of each, a new gateway for each run), so
that neither always runs second on a machine whose load drifts; their rows report the mean of the
runs (counts summed, each run under `runs`), and `ratios` the declarative side's mean against the
pydantic side's.
"""

from __future__ import annotations

import asyncio
import re
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
from bench.forwarding import abba, combine_repetitions, ratio_of_sides
from tests.support.fault_proxy import FaultProxy

NAME = "http"


@dataclass(frozen=True)
class Size:
    duration_s: float
    connections: int
    single_duration_s: float
    env: dict[str, str] = field(default_factory=dict)  # for the partitioned gateway
    # Runs of each catalog's broker-up case (`published`, `published_declarative`), ABBA order.
    repetitions: int = 2


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
    ctx: Context,
    base_url: str,
    case: str,
    size: Size,
    channel: str = CHANNEL,
    label: str | None = None,
) -> list[dict[str, Any]]:
    """wrk under load, then one request at a time; `label` (default: `case`) names the files and
    prefixes the Idempotency-Keys."""
    label = label or case
    body_file = ctx.workdir / f"{label}-body.json"
    body_file.write_bytes(order_body(order_payload(1)))
    url = f"{base_url}/v1/events/{channel}"
    results = []
    for mode, connections, duration in (
        ("load", size.connections, size.duration_s),
        ("single", 1, size.single_duration_s),
    ):
        before = accepted_counts(base_url, channel)
        figures = wrk.run(
            url, body_file, f"{label}-{mode}", duration_s=duration, connections=connections
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


def _figures(row: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """How the runs of a broker-up case combine (combine_repetitions): rates and latencies
    averaged (percentiles too: a mean of each run's), counts summed, the worst maximum."""
    percentiles = tuple(k for k in row if re.fullmatch(r"p[\d.]+_ms", k))
    return {
        "mean": ("requests_per_s", "mean_ms", *percentiles),
        "total": (
            "requests",
            "duration_s",
            "non_2xx",
            "socket_errors",
            "answered_published",
            "answered_stored",
        ),
        "peak": ("max_ms",),
    }


async def run(ctx: Context, size: Size) -> list[dict[str, Any]]:
    if not wrk.available():
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    results: list[dict[str, Any]] = []

    # Broker up, ABBA: the default catalog (pydantic) and the declarative one (JSON Schema).
    sides = {
        "A": ("published", "http-published", {}, CHANNEL),
        "B": (
            "published_declarative",
            "http-published-declarative",
            DECLARED_ENV,
            DECLARED_CHANNEL,
        ),
    }
    runs: dict[str, list[list[dict[str, Any]]]] = {"A": [], "B": []}
    order = abba(size.repetitions)
    for position, name in enumerate(order, 1):
        case, label, env, channel = sides[name]
        # A new gateway per run (its own store): no run starts on what an earlier one left.
        label = f"{label}-{len(runs[name]) + 1}"
        gateway = ctx.gateway(label, env=env)
        gateway.start(until="connected")
        try:
            gateway.start_profile(label)
            measured = await asyncio.to_thread(
                _measure, ctx, gateway.base_url, case, size, channel, label
            )
        finally:
            gateway.stop()
        runs[name].append([{"position": position, **row} for row in measured])
    for name in ("A", "B"):
        # One row per mode (load, single), as _measure gives them, each combining the side's runs.
        for by_mode in zip(*runs[name], strict=True):
            results.append(combine_repetitions(by_mode, **_figures(by_mode[0])))

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
    a_rates = [load["requests_per_s"] for load, _single in runs["A"]]
    b_rates = [load["requests_per_s"] for load, _single in runs["B"]]
    rates = ratio_of_sides(a_rates, b_rates)
    results.append(
        {
            "bench": NAME,
            "case": "ratios",
            "stored_vs_published": round(stored / published, 3) if published else None,
            "stored_single_p50_ms": by_key[("stored", "single")].get("p50_ms"),
            "published_single_p50_ms": by_key[("published", "single")].get("p50_ms"),
            # The declarative channel against the pydantic one (both broker up), same body, ABBA:
            # (B1+B2)/(A1+A2) under load, and per round (B1/A1, B2/A2), from each run's figures.
            "declarative_vs_pydantic": rates["ratio"],
            "declarative_vs_pydantic_rounds": rates["rounds"],
            "declarative_vs_pydantic_order": "".join(order),
            "pydantic_requests_per_s": a_rates,
            "declarative_requests_per_s": b_rates,
            "declarative_single_p50_ms": by_key[("published_declarative", "single")].get("p50_ms"),
        }
    )
    return results
