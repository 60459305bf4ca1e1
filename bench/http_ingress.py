"""2. HTTP ingress driven by wrk: broker up (`published`) against partitioned (`stored`), and
against what users would run instead.

Gateways on the same broker: connected directly, or through a TCP fault proxy that is partitioned
(bytes held) and whose breaker is opened by a few requests before the measurement. Each is measured
under load (wrk, many connections) and one request at a time (wrk -c1), which gives the latency of
a single request without queueing in front of it. Under load, the serving process's CPU and the
broker's are counted per request, and the gateway's RSS is sampled (idle before the load, peak
during it).

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

The peers, measured the same way with the same body:
- `faststream_http`: the recipe a FastStream user writes instead (bench.yardsticks.http_recipe: a
  Starlette endpoint on uvicorn that validates with the same model and awaits a persistent,
  confirmed `broker.publish`), on the same broker, with the same Idempotency-Key headers (its
  message_ids).
- `management_api`: RabbitMQ's own HTTP publish endpoint (the management plugin's
  `POST /api/exchanges/{vhost}/{exchange}/publish`, persistent, no validation) on a private node
  of the same RabbitMQ with the plugin enabled, started for this benchmark, its topology declared
  by the gateway's code. The node is both the HTTP server and the broker: its CPU is the serving
  process's.
- `http_floor` (no peer, no target): the recipe's endpoint answering 202 without publishing, what
  serving, the framework and validation cost before any broker work.
Every published case publishes into `breakwater.events`, whose alternate exchange parks the events
in `breakwater.unrouted` (purged before each run).

Each case runs `Size.repetitions` times, each run on a new gateway (with a store of its own; for
the stored cases, also a proxy of its own and a breaker opened afresh; a new recipe process),
interleaved so that no side always runs later than another on a machine whose load drifts:
broker up, the PUBLISHED cases in order, then reversed, ... (faststream_http, published_keyless,
published, published_declarative, published_asyncio, management_api, then backwards: keyless and
declarative are next to `published`); then partitioned, the STORED cases the same way
(stored_keyless, stored, stored, stored_keyless). Their rows report the mean of the runs (counts
summed, each run under `runs`); `ratios` compares sides by the median of the rounds' ratios under
load (round i: the i-th run of each side): the gateway against the recipe
(`published_vs_recipe`) and the management API (`published_vs_management`), the declarative side
against the pydantic one (`declarative_vs_pydantic`), each keyed side against its keyless side
(`keys_vs_keyless_published`, `keys_vs_keyless_stored`), uvloop against asyncio
(`uvloop_vs_asyncio`); and, for `published` under load, the median of its runs' p99/p50
(`published_p99_vs_p50`) and the largest RSS growth over idle (`published_rss_growth_mib`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from yarl import URL

from app.broker.topology import EVENTS_EXCHANGE, UNROUTED
from bench import wrk
from bench.common import (
    ASYNCIO_ENV,
    CHANNEL,
    DECLARED_CHANNEL,
    DECLARED_ENV,
    Context,
    accepted_counts,
    broker_pid,
    child,
    cpu_seconds,
    declare_outbound_topology,
    free_port,
    order_body,
    order_payload,
    purge_queue,
    rss_kib,
    stop_child,
    through,
)
from bench.forwarding import combine_repetitions, compared, interleave
from bench.otlp_sink import OtlpSink
from tests.support.fault_proxy import FaultProxy
from tests.support.rabbit_node import RabbitNode

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


FULL = Size(duration_s=10, connections=32, single_duration_s=4, repetitions=3)
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
# comparison of a gateway variant is of a neighbour with the keyed pydantic case, keyless (A)
# against keyed (B) and pydantic (A) against declarative (B); the peers at the ends.
PUBLISHED = (
    "faststream_http",
    "published_keyless",
    "published",
    "published_declarative",
    "published_asyncio",
    "published_traced",
    "management_api",
    "http_floor",
)
STORED = ("stored_keyless", "stored")
# Each group of cases interleaved among themselves (the smoke test checks their runs' positions).
INTERLEAVED = (PUBLISHED, STORED)
PEERS = ("faststream_http", "management_api")
# Not a peer: the recipe's endpoint without its publish, what any Python HTTP ingress on this
# stack costs before it talks to a broker (uvicorn, Starlette, pydantic).
FLOOR = "http_floor"


@dataclass(frozen=True)
class _Side:
    label: str  # of its processes, files and Idempotency-Keys (with the run's number)
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
    "faststream_http": _Side("http-faststream"),
    # The management API takes no Idempotency-Key (each request's body is the same envelope).
    "management_api": _Side("http-management-api", keys=False),
    "http_floor": _Side("http-floor"),
}


@dataclass(frozen=True)
class _Server:
    """What wrk loads: where to POST what, and whose CPU and memory to count."""

    url: str
    body: bytes
    pid: int  # the process that serves the requests
    broker_pid: int | None  # the broker's, when it is another process
    # `breakwater_events_accepted_total` by status (a gateway), or None: 2xx answers count.
    accepted: Callable[[], dict[str, float]] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class _RssPeak:
    """The peak RSS of a process, sampled every 50 ms in a thread while in the `with`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.idle_kib = rss_kib(pid)
        self.peak_kib = self.idle_kib
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            now = rss_kib(self.pid)
            if now is not None and (self.peak_kib is None or now > self.peak_kib):
                self.peak_kib = now

    def __enter__(self) -> _RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self) -> dict[str, float | None]:
        def mib(kib: int | None) -> float | None:
            return round(kib / 1024, 1) if kib is not None else None

        return {"rss_idle_mib": mib(self.idle_kib), "rss_peak_mib": mib(self.peak_kib)}


def _measure(
    ctx: Context, server: _Server, case: str, size: Size, label: str, keys: bool
) -> list[dict[str, Any]]:
    """wrk under load, then one request at a time; `label` names the files and prefixes the
    Idempotency-Keys (every request has one when `keys`, none has one otherwise)."""
    body_file = ctx.workdir / f"{label}-body.json"
    body_file.write_bytes(server.body)
    results = []
    for mode, connections, duration in (
        ("load", size.connections, size.duration_s),
        ("single", 1, size.single_duration_s),
    ):
        before = server.accepted() if server.accepted else {}
        cpu_before = cpu_seconds(server.pid) or 0.0
        broker_before = (cpu_seconds(server.broker_pid) or 0.0) if server.broker_pid else 0.0
        with _RssPeak(server.pid) as rss:
            figures = wrk.run(
                server.url,
                body_file,
                f"{label}-{mode}",
                duration_s=duration,
                connections=connections,
                keys=keys,
                headers=server.headers,
            )
        requests = max(1, figures.get("requests") or 0)
        row: dict[str, Any] = {"bench": NAME, "case": case, "mode": mode, **figures}
        row["cpu_ms_per_request"] = round(
            ((cpu_seconds(server.pid) or 0.0) - cpu_before) * 1000 / requests, 3
        )
        if server.broker_pid:
            broker_cpu = (cpu_seconds(server.broker_pid) or 0.0) - broker_before
            row["broker_cpu_ms_per_request"] = round(broker_cpu * 1000 / requests, 3)
        if mode == "load":
            row |= rss.figures()
        if server.accepted:
            after = server.accepted()
            for status in ("published", "stored"):
                row[f"answered_{status}"] = after.get(status, 0) - before.get(status, 0)
        else:
            row["answered_published"] = (figures.get("requests") or 0) - figures["non_2xx"]
        results.append(row)
    return results


def _figures(row: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """How the runs of a case combine (combine_repetitions): rates and latencies averaged
    (percentiles too: a mean of each run's), counts summed, the worst maximum."""
    percentiles = tuple(k for k in row if re.fullmatch(r"p[\d.]+_ms", k))
    return {
        "mean": (
            "requests_per_s",
            "mean_ms",
            *percentiles,
            "breaker_opened_after_s",
            "cpu_ms_per_request",
            "broker_cpu_ms_per_request",
            "rss_idle_mib",
        ),
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
        "peak": ("max_ms", "rss_peak_mib"),
    }


def _gateway_server(base_url: str, pid: int, broker: int | None, channel: str) -> _Server:
    return _Server(
        url=f"{base_url}/v1/events/{channel}",
        body=order_body(order_payload(1)),
        pid=pid,
        broker_pid=broker,
        accepted=lambda: accepted_counts(base_url, channel),
    )


async def _published_run(
    ctx: Context, size: Size, case: str, label: str, broker: int | None
) -> list[dict[str, Any]]:
    """One run of a broker-up gateway case, on a new gateway (its own store): no run starts on
    what an earlier one left."""
    side = SIDES[case]
    with OtlpSink() if side.traced else contextlib.nullcontext() as sink:
        env = (
            side.env if sink is None else {**side.env, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}
        )
        gateway = ctx.gateway(label, env=env)
        gateway.start(until="connected")
        try:
            gateway.start_profile(label)
            server = _gateway_server(gateway.base_url, gateway.pid, broker, side.channel)
            measured = await asyncio.to_thread(_measure, ctx, server, case, size, label, side.keys)
        finally:
            gateway.stop()  # which exports the spans still waiting
    if sink is not None:
        for row in measured:
            row["exported_spans"] = sum(sink.spans.values())
    return measured


async def _recipe_run(
    ctx: Context, size: Size, case: str, label: str, broker: int | None
) -> list[dict[str, Any]]:
    """One run of the FastStream HTTP recipe (or its floor), a new process, on the gateway's
    broker."""
    port = free_port()
    log = ctx.workdir / f"{label}.log"
    command = "httpfloor" if case == FLOOR else "httprecipe"
    recipe = child([command, ctx.broker_url, str(port)], log)
    try:
        base_url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(_wait_serving, f"{base_url}/healthz", lambda: _exited(recipe, log))
        server = _Server(
            url=f"{base_url}/v1/events/{CHANNEL}",
            body=order_body(order_payload(1)),
            pid=recipe.pid,
            broker_pid=None if case == FLOOR else broker,
        )
        return await asyncio.to_thread(_measure, ctx, server, case, size, label, SIDES[case].keys)
    finally:
        stop_child(recipe)


def _wait_serving(url: str, gone: Callable[[], str | None], timeout: float = 60) -> None:
    """Until `url` answers 200; `gone` says why the server will never answer (None: not gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (why := gone()) is not None:
            raise RuntimeError(why)
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def _exited(proc: subprocess.Popen[bytes], log: Path) -> str | None:
    if proc.poll() is None:
        return None
    return f"{proc.args} exited with {proc.returncode}:\n{log.read_text(errors='replace')}"


@dataclass(frozen=True)
class _ManagementNode:
    node: RabbitNode
    port: int  # the management plugin's HTTP listener

    def server(self) -> _Server:
        pid = self.node.os_pid()
        assert pid is not None
        envelope = {
            "properties": {"delivery_mode": 2, "content_type": "application/json"},
            "routing_key": CHANNEL,
            "payload": order_body(order_payload(1)).decode(),
            "payload_encoding": "string",
        }
        credentials = base64.b64encode(b"guest:guest").decode()
        return _Server(
            url=f"http://127.0.0.1:{self.port}/api/exchanges/%2F/{EVENTS_EXCHANGE}/publish",
            body=json.dumps(envelope).encode(),
            pid=pid,
            broker_pid=None,  # the node is the broker
            headers={"Authorization": f"Basic {credentials}"},
        )


@contextlib.contextmanager
def _management_node(workdir: Path) -> Iterator[_ManagementNode]:
    """A private node of the same RabbitMQ with the management plugin, for this benchmark only."""
    port = free_port()
    node = RabbitNode(
        "breakwater-bench-mgmt",
        free_port(),
        free_port(),
        workdir / "management-node",
        extra_config=f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {port}\n",
        plugins=["rabbitmq_management"],
    )
    with node:
        _wait_serving(
            f"http://127.0.0.1:{port}/",
            lambda: None if node.is_running() else f"{node.name} stopped",
        )
        yield _ManagementNode(node, port)


async def _management_run(
    ctx: Context, size: Size, case: str, label: str, management: _ManagementNode
) -> list[dict[str, Any]]:
    await purge_queue(management.node.url, UNROUTED)
    server = management.server()
    return await asyncio.to_thread(_measure, ctx, server, case, size, label, SIDES[case].keys)


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
            # No broker CPU: the broker is out of reach.
            server = _gateway_server(via_proxy.base_url, via_proxy.pid, None, side.channel)
            measured = await asyncio.to_thread(_measure, ctx, server, case, size, label, side.keys)
        finally:
            # Healed first: a gateway stopped while partitioned does not exit within 30 s.
            proxy.heal()
            via_proxy.stop()
    for result in measured:
        result["breaker_opened_after_s"] = round(opened_after_s, 3)
        result["requests_to_open"] = sent
    return measured


async def run(ctx: Context, size: Size) -> list[dict[str, Any]]:
    if not wrk.available():
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    broker = broker_pid()
    await declare_outbound_topology(ctx.broker_url)

    # Each run's rows (load, single), by case, in the order the case ran.
    runs: dict[str, list[list[dict[str, Any]]]] = {case: [] for case in SIDES}
    orders: dict[str, list[str]] = {}
    with _management_node(ctx.workdir) as management:
        await declare_outbound_topology(management.node.url)
        for cases in (PUBLISHED, STORED):
            order = interleave(cases, size.repetitions)
            orders.update(dict.fromkeys(cases, order))
            for position, case in enumerate(order, 1):
                label = f"{SIDES[case].label}-{len(runs[case]) + 1}"
                if case == "management_api":
                    measured = await _management_run(ctx, size, case, label, management)
                elif case in STORED:
                    measured = await _stored_run(ctx, size, case, label)
                else:
                    await purge_queue(ctx.broker_url, UNROUTED)
                    one_run = _recipe_run if case in ("faststream_http", FLOOR) else _published_run
                    measured = await one_run(ctx, size, case, label, broker)
                runs[case].append([{"position": position, **row} for row in measured])

    results: list[dict[str, Any]] = []
    # The rows in the order they always had, then the keyless cases, then the peers.
    for case in (
        "published",
        "published_declarative",
        "stored",
        *(c for c in SIDES if "keyless" in c),
        "published_asyncio",
        "published_traced",
        *PEERS,
        FLOOR,
    ):
        # One row per mode (load, single), as _measure gives them, each combining the case's runs.
        for by_mode in zip(*runs[case], strict=True):
            results.append(combine_repetitions(by_mode, **_figures(by_mode[0])))

    by_key = {(r["case"], r["mode"]): r for r in results}

    def load_rates(case: str) -> list[float]:
        return [load["requests_per_s"] for load, _single in runs[case]]

    def single_p50(case: str) -> float | None:
        return by_key[(case, "single")].get("p50_ms")

    def comparison(name: str, a: str, b: str) -> dict[str, Any]:
        """Side `b` against side `a` under load (the median of the rounds)."""
        return compared(name, orders[b], a, load_rates(a), b, load_rates(b))

    published = by_key[("published", "load")]["requests_per_s"]
    stored = by_key[("stored", "load")]["requests_per_s"]
    keys: dict[str, Any] = {}
    for keyed in ("published", "stored"):
        keyless = f"{keyed}_keyless"
        # Keyless is side A (the baseline), keyed side B: the ratio is keyed / keyless.
        keys |= {
            **comparison(f"keys_vs_keyless_{keyed}", keyless, keyed),
            f"{keyed}_keyed_requests_per_s": load_rates(keyed),
            f"{keyless}_requests_per_s": load_rates(keyless),
            f"{keyless}_single_p50_ms": single_p50(keyless),
        }
    published_loads = [load for load, _single in runs["published"]]
    tails = [
        round(load["p99_ms"] / load["p50_ms"], 3)
        for load in published_loads
        if load.get("p99_ms") and load.get("p50_ms")
    ]
    growth = [
        round(load["rss_peak_mib"] - load["rss_idle_mib"], 1)
        for load in published_loads
        if load.get("rss_peak_mib") is not None and load.get("rss_idle_mib") is not None
    ]
    results.append(
        {
            "bench": NAME,
            "case": "ratios",
            "stored_vs_published": round(stored / published, 3) if published else None,
            "stored_single_p50_ms": single_p50("stored"),
            "published_single_p50_ms": single_p50("published"),
            # The peers (A) against the gateway's keyed pydantic case (B), broker up, same body.
            **comparison("published_vs_recipe", "faststream_http", "published"),
            **comparison("published_vs_management", "management_api", "published"),
            "recipe_requests_per_s": load_rates("faststream_http"),
            "management_requests_per_s": load_rates("management_api"),
            "recipe_single_p50_ms": single_p50("faststream_http"),
            "management_single_p50_ms": single_p50("management_api"),
            # What serving, framework and validation alone cost (no broker): the floor under
            # every HTTP case's CPU per request.
            "floor_cpu_ms_per_request": by_key[(FLOOR, "load")].get("cpu_ms_per_request"),
            "floor_requests_per_s": load_rates(FLOOR),
            # The latency tail of `published` under load: each run's p99/p50, and their median.
            "published_p99_vs_p50": round(statistics.median(tails), 3) if tails else None,
            "published_p99_vs_p50_runs": tails,
            # Its memory: the largest growth over idle of any run (RSS peak under load - idle).
            "published_rss_growth_mib": max(growth) if growth else None,
            "published_rss_growth_mib_runs": growth,
            # The declarative channel against the pydantic one (both broker up), same body.
            **comparison("declarative_vs_pydantic", "published", "published_declarative"),
            "pydantic_requests_per_s": load_rates("published"),
            "declarative_requests_per_s": load_rates("published_declarative"),
            "declarative_single_p50_ms": single_p50("published_declarative"),
            # Every request with an Idempotency-Key against none (broker up; partitioned).
            **keys,
            # Tracing on, every request sampled and its spans exported, against off (A: off).
            **comparison("traced_vs_published", "published", "published_traced"),
            "traced_requests_per_s": load_rates("published_traced"),
            "traced_single_p50_ms": single_p50("published_traced"),
            # uvloop (the default) against the standard library's loop, broker up, same body.
            **comparison("uvloop_vs_asyncio", "published_asyncio", "published"),
            "asyncio_requests_per_s": load_rates("published_asyncio"),
            "asyncio_single_p50_ms": single_p50("published_asyncio"),
            "published_run_order": orders["published"],
            "stored_run_order": orders["stored"],
        }
    )
    return results
