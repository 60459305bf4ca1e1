"""2. HTTP ingress driven by wrk: broker up (`published`) against partitioned (`stored`).

Gateways on the same broker: connected directly, or through a TCP fault proxy that is partitioned
(bytes held) and whose breaker is opened by a few requests before the measurement. Each is measured
under load (wrk, many connections) and one request at a time (wrk -c1), which gives the latency of
a single request without queueing in front of it.

Every request of `published` and `stored` has an Idempotency-Key of its own, so the gateway
remembers each one (a row in its store, group-committed); `published_keyless` and `stored_keyless`
measure the same with no Idempotency-Key header at all, so no key is remembered: their rates
against the keyed cases' are what the keys cost. (The few requests that open a breaker have no key,
in either stored case.)

`published_declarative` measures the same as `published` (keys and all), broker up, with a gateway
on the declarative catalog (bench/catalog.yaml): the same body POSTed to its channel (a JSON
Schema) instead of the default catalog's pydantic one. `published_asyncio` measures `published` on
the standard library's event loop (BREAKWATER_EVENT_LOOP=asyncio) instead of uvloop
(`uvloop_vs_asyncio`). `published_traced` measures `published` with tracing on (README: Tracing),
every request sampled, its spans exported over OTLP/HTTP to a local receiver that decodes and
counts them (bench/otlp_sink.py; `exported_spans`): `traced_vs_published`.

Each case runs `Size.repetitions` times, each run on a new gateway (with a store of its own; for
the stored cases, also a proxy of its own and a breaker opened afresh), interleaved so that neither
side of a comparison always runs later than the other on a machine whose load drifts. Broker up,
the PUBLISHED cases in order, then reversed, ... (published_keyless, published,
published_declarative, published_asyncio, published_asyncio, published_declarative, published,
published_keyless: each comparison with `published` but the loop's is ABBA, its runs adjacent, and
every case's mean position is the same); then partitioned, the STORED cases the same way
(stored_keyless, stored, stored, stored_keyless). Their rows report the mean of the runs (counts
summed, each run under `runs`); `ratios` has the declarative side's mean against the pydantic
side's (`declarative_vs_pydantic`) and each keyed side's against its keyless side's
(`keys_vs_keyless_published`, `keys_vs_keyless_stored`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from yarl import URL

from bench import wrk
from bench.common import (
    ASYNCIO_ENV,
    CHANNEL,
    DECLARED_CHANNEL,
    DECLARED_ENV,
    Context,
    accepted_counts,
    order_body,
    order_payload,
    through,
)
from bench.forwarding import combine_repetitions, interleave, pair_order, ratio_of_sides
from bench.otlp_sink import OtlpSink
from tests.support.fault_proxy import FaultProxy

NAME = "http"
# Tracing on, every trace recorded; the endpoint is each run's own OtlpSink.
TRACED_ENV = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "always_on"}


@dataclass(frozen=True)
class Size:
    duration_s: float
    connections: int
    single_duration_s: float
    env: dict[str, str] = field(default_factory=dict)  # for the partitioned gateways
    # Runs of each case, interleaved (PUBLISHED, then STORED; see bench.forwarding.interleave()).
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


# The cases, each group in the order of its odd rounds (see bench.forwarding.interleave()): each
# comparison is of a neighbour with the keyed pydantic case, keyless (A) against keyed (B) and
# pydantic (A) against declarative (B).
PUBLISHED = (
    "published_keyless",
    "published",
    "published_declarative",
    "published_asyncio",
    "published_traced",
)
STORED = ("stored_keyless", "stored")
# Each group of cases interleaved among themselves (the smoke test checks their runs' positions).
INTERLEAVED = (PUBLISHED, STORED)


@dataclass(frozen=True)
class _Side:
    label: str  # of its gateways, files and Idempotency-Keys (with the run's number)
    env: dict[str, str] = field(default_factory=dict)
    channel: str = CHANNEL
    keys: bool = True  # every request has an Idempotency-Key; else none has the header
    traced: bool = False  # tracing on, exporting to an OtlpSink of the run's own


SIDES = {
    "published": _Side("http-published"),
    "published_keyless": _Side("http-published-keyless", keys=False),
    "published_declarative": _Side(
        "http-published-declarative", DECLARED_ENV, channel=DECLARED_CHANNEL
    ),
    # uvicorn on the standard library's loop (its httptools parser stays: it is the loop's cost).
    "published_asyncio": _Side("http-published-asyncio", ASYNCIO_ENV),
    "published_traced": _Side("http-published-traced", TRACED_ENV, traced=True),
    "stored": _Side("http-stored"),
    "stored_keyless": _Side("http-stored-keyless", keys=False),
}


def _measure(
    ctx: Context,
    base_url: str,
    case: str,
    size: Size,
    channel: str = CHANNEL,
    label: str | None = None,
    keys: bool = True,
) -> list[dict[str, Any]]:
    """wrk under load, then one request at a time; `label` (default: `case`) names the files and
    prefixes the Idempotency-Keys (every request has one when `keys`, none has one otherwise)."""
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
            url,
            body_file,
            f"{label}-{mode}",
            duration_s=duration,
            connections=connections,
            keys=keys,
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
    """How the runs of a case combine (combine_repetitions): rates and latencies averaged
    (percentiles too: a mean of each run's), counts summed, the worst maximum."""
    percentiles = tuple(k for k in row if re.fullmatch(r"p[\d.]+_ms", k))
    return {
        "mean": ("requests_per_s", "mean_ms", *percentiles, "breaker_opened_after_s"),
        "total": (
            "requests",
            "duration_s",
            "non_2xx",
            "socket_errors",
            "answered_published",
            "answered_stored",
            "requests_to_open",
            "exported_spans",
        ),
        "peak": ("max_ms",),
    }


async def _published_run(ctx: Context, size: Size, case: str, label: str) -> list[dict[str, Any]]:
    """One run of a broker-up case, on a new gateway (its own store): no run starts on what an
    earlier one left."""
    side = SIDES[case]
    with OtlpSink() if side.traced else contextlib.nullcontext() as sink:
        env = (
            side.env if sink is None else {**side.env, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}
        )
        gateway = ctx.gateway(label, env=env)
        gateway.start(until="connected")
        try:
            gateway.start_profile(label)
            measured = await asyncio.to_thread(
                _measure, ctx, gateway.base_url, case, size, side.channel, label, side.keys
            )
        finally:
            gateway.stop()  # which exports the spans still waiting
    if sink is not None:
        for row in measured:
            row["exported_spans"] = sum(sink.spans.values())
    return measured


async def _stored_run(ctx: Context, size: Size, case: str, label: str) -> list[dict[str, Any]]:
    """One run of a partitioned case, on a new proxy and gateway (its own store, its breaker
    opened just before): every run sees its breaker the same way (e.g. its first trial publish,
    `breaker_reset_timeout_s` after it opened), and none starts on what an earlier one stored."""
    side = SIDES[case]
    with FaultProxy(upstream_port=URL(ctx.broker_url).port or 5672) as proxy:
        via_proxy = ctx.gateway(label, broker_url=through(ctx.broker_url, proxy.port), env=size.env)
        via_proxy.start(until="connected")
        try:
            proxy.partition()
            opened_after_s, sent = await open_breaker(via_proxy.base_url)
            via_proxy.start_profile(label)
            measured = await asyncio.to_thread(
                _measure, ctx, via_proxy.base_url, case, size, side.channel, label, side.keys
            )
        finally:
            # Healed first: a gateway stopped while partitioned does not exit within 30 s.
            proxy.heal()
            via_proxy.stop()
    for result in measured:
        result["breaker_opened_after_s"] = round(opened_after_s, 3)
        result["requests_to_open"] = sent
    return measured


def _loop_ratio(asyncio_rates: list[float], uvloop_rates: list[float]) -> dict[str, Any]:
    ratio = ratio_of_sides(asyncio_rates, uvloop_rates)
    return {
        "uvloop_vs_asyncio": ratio["ratio"],
        "uvloop_vs_asyncio_rounds": ratio["rounds"],
        "asyncio_requests_per_s": asyncio_rates,
    }


async def run(ctx: Context, size: Size) -> list[dict[str, Any]]:
    if not wrk.available():
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")

    # Each run's rows (load, single), by case, in the order the case ran.
    runs: dict[str, list[list[dict[str, Any]]]] = {case: [] for case in SIDES}
    orders: dict[str, list[str]] = {}
    for cases, one_run in ((PUBLISHED, _published_run), (STORED, _stored_run)):
        order = interleave(cases, size.repetitions)
        orders.update(dict.fromkeys(cases, order))
        for position, case in enumerate(order, 1):
            label = f"{SIDES[case].label}-{len(runs[case]) + 1}"
            measured = await one_run(ctx, size, case, label)
            runs[case].append([{"position": position, **row} for row in measured])

    results: list[dict[str, Any]] = []
    # The rows in the order they always had, then the keyless cases.
    for case in (
        "published",
        "published_declarative",
        "stored",
        *(c for c in SIDES if "keyless" in c),
        "published_asyncio",
        "published_traced",
    ):
        # One row per mode (load, single), as _measure gives them, each combining the case's runs.
        for by_mode in zip(*runs[case], strict=True):
            results.append(combine_repetitions(by_mode, **_figures(by_mode[0])))

    by_key = {(r["case"], r["mode"]): r for r in results}

    def load_rates(case: str) -> list[float]:
        return [load["requests_per_s"] for load, _single in runs[case]]

    def single_p50(case: str) -> float | None:
        return by_key[(case, "single")].get("p50_ms")

    published = by_key[("published", "load")]["requests_per_s"]
    stored = by_key[("stored", "load")]["requests_per_s"]
    a_rates, b_rates = load_rates("published"), load_rates("published_declarative")
    rates = ratio_of_sides(a_rates, b_rates)
    traced = ratio_of_sides(load_rates("published"), load_rates("published_traced"))
    keys: dict[str, Any] = {}
    for keyed in ("published", "stored"):
        keyless = f"{keyed}_keyless"
        # Keyless is side A (the baseline), keyed side B: the ratio is keyed / keyless.
        ratio = ratio_of_sides(load_rates(keyless), load_rates(keyed))
        keys |= {
            f"keys_vs_keyless_{keyed}": ratio["ratio"],
            f"keys_vs_keyless_{keyed}_rounds": ratio["rounds"],
            f"keys_vs_keyless_{keyed}_order": pair_order(orders[keyed], keyless, keyed),
            f"{keyed}_keyed_requests_per_s": load_rates(keyed),
            f"{keyless}_requests_per_s": load_rates(keyless),
            f"{keyless}_single_p50_ms": single_p50(keyless),
        }
    results.append(
        {
            "bench": NAME,
            "case": "ratios",
            "stored_vs_published": round(stored / published, 3) if published else None,
            "stored_single_p50_ms": single_p50("stored"),
            "published_single_p50_ms": single_p50("published"),
            # The declarative channel against the pydantic one (both broker up), same body, ABBA:
            # (B1+B2)/(A1+A2) under load, and per round (B1/A1, B2/A2), from each run's figures.
            "declarative_vs_pydantic": rates["ratio"],
            "declarative_vs_pydantic_rounds": rates["rounds"],
            "declarative_vs_pydantic_order": pair_order(
                orders["published"], "published", "published_declarative"
            ),
            "pydantic_requests_per_s": a_rates,
            "declarative_requests_per_s": b_rates,
            "declarative_single_p50_ms": single_p50("published_declarative"),
            # Every request with an Idempotency-Key against none (broker up; partitioned), same
            # body, ABBA (A: keyless, B: keyed): (B1+B2)/(A1+A2) under load, and per round.
            **keys,
            # uvloop (the default) against the standard library's loop, broker up, same body
            # (A: asyncio, B: uvloop): (B1+B2)/(A1+A2) under load, and per round.
            **_loop_ratio(load_rates("published_asyncio"), load_rates("published")),
            "asyncio_single_p50_ms": single_p50("published_asyncio"),
            # Tracing on (every request sampled, spans exported) against off, broker up, same
            # body (A: off, B: traced): (B1+B2)/(A1+A2) under load, and per round.
            "traced_vs_published": traced["ratio"],
            "traced_vs_published_rounds": traced["rounds"],
            "traced_vs_published_order": pair_order(
                orders["published"], "published", "published_traced"
            ),
            "traced_requests_per_s": load_rates("published_traced"),
            "traced_single_p50_ms": single_p50("published_traced"),
            "published_run_order": orders["published"],
            "stored_run_order": orders["stored"],
        }
    )
    return results
