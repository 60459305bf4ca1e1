"""The benchmark suite (bench/, `make bench`) still runs: every benchmark's code path at a tiny size,
checking only the shape of what it reports. Speed is never asserted here: benchmarks are not tests.

Needs the shared RabbitMQ (as the integration tests do); the HTTP benchmark also needs `wrk` and
the figure needs matplotlib (each is skipped, saying so, where missing).
"""

from __future__ import annotations

import importlib.util
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bench import forwarding, http_ingress, outage, replay, scale, store_writes, wrk
from bench.common import AMQP_HOST, AMQP_PORT, RABBITMQCTL, Context
from bench.plot import draw
from bench.targets import evaluate

pytestmark = pytest.mark.integration

# The keys each benchmark's rows must carry, by case.
EXPECTED: dict[str, dict[str, set[str]]] = {
    "forwarding": {
        "gateway": {"events_per_s", "order_ok", "order_inversions", "complete", "direct"},
        "gateway_declarative": {
            "events_per_s",
            "cpu_ms_per_event",
            "order_ok",
            "order_inversions",
            "complete",
            "direct",
        },
        "faststream_relay": {"events_per_s", "complete", "cpu_ms_per_event"},
        "aio_pika_relay": {"events_per_s", "complete", "cpu_ms_per_event"},
        "aio_pika_raw_64": {"events_per_s", "complete"},
        "ratios": {"gateway_vs_relay", "gateway_vs_raw", "declarative_vs_pydantic"},
    },
    "http": {
        "published": {"requests_per_s", "p50_ms", "p99_ms", "answered_published"},
        "published_declarative": {"requests_per_s", "p50_ms", "p99_ms", "answered_published"},
        "stored": {"requests_per_s", "p50_ms", "p99_ms", "answered_stored"},
        "ratios": {"stored_vs_published", "stored_single_p50_ms", "declarative_vs_pydantic"},
    },
    "store": {
        "naive_sqlite": {"events_per_s", "journal_mode"},
        "fallback_store": {"events_per_s", "callers", "vs_naive"},
    },
    "outage": {
        "before": {"p50_ms", "p99_ms", "max_ms"},
        "during": {"p50_ms", "p99_ms", "max_ms", "stored"},
        "after": {"p50_ms", "p99_ms", "max_ms"},
        "breaker": {"partition_to_open_s", "slowest_during_ms", "limit_ms"},
    },
    "replay": {
        "replay": {"steady_events_per_s", "vs_budget", "max_in_1s_window", "order_ok"},
        "live_confirm": {"idle_p99_ms", "replay_p99_ms", "p99_during_vs_idle"},
    },
    "scale": {
        "empty": {"rss_peak_mib", "restart_to_ready_s"},
        "backlog": {"rss_peak_mib", "restart_to_ready_s", "stored_events"},
        "growth": {"rss_growth_mib", "restart_to_ready_s"},
    },
}
MODULES: dict[str, ModuleType] = {
    m.NAME: m for m in (forwarding, http_ingress, store_writes, outage, replay, scale)
}
collected: list[dict[str, Any]] = []

WRK_SAMPLE = """\
Running 1s test @ http://127.0.0.1:8000/v1/events/orders.created
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     8.75ms    2.31ms   1.20s    90.00%
    Req/Sec   460.02     50.00   500.00     80.00%
  Latency Distribution
     50%  812.00us
     75%    9.90ms
     90%   12.17ms
     99%   21.94ms
  508 requests in 1.10s, 5.12MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:    460.02
Transfer/sec:    512.00KB
"""


def _ctl(*args: str) -> None:
    subprocess.run([RABBITMQCTL, *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def broker_url() -> Iterator[str]:
    name = f"breakwater-bench-smoke-{uuid.uuid4().hex[:8]}"
    _ctl("add_vhost", name)
    _ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/{name}"
    _ctl("delete_vhost", name)


def test_wrk_report_is_parsed() -> None:
    figures = wrk.parse(WRK_SAMPLE)

    assert figures["requests_per_s"] == 460.02
    assert figures["requests"] == 508
    assert figures["p50_ms"] == 0.812
    assert figures["p99_ms"] == 21.94
    assert figures["max_ms"] == 1200.0
    assert figures["non_2xx"] == 3
    assert figures["socket_errors"] == 3


@pytest.mark.parametrize("name", list(EXPECTED))
async def test_benchmark_reports_its_figures(name: str, broker_url: str, tmp_path: Path) -> None:
    if name == "http" and not wrk.available():
        pytest.skip("wrk is not installed (Debian: apt-get install -y wrk)")
    module = MODULES[name]

    rows = await module.run(Context(broker_url, tmp_path, smoke=True), module.SMOKE)

    by_case: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        assert row["bench"] == name
        by_case.setdefault(row["case"], []).append(row)
    assert set(by_case) == set(EXPECTED[name])
    for case, keys in EXPECTED[name].items():
        for row in by_case[case]:
            assert keys <= set(row), (case, keys - set(row))
    collected.extend(rows)


def test_targets_and_figure_come_from_the_results(tmp_path: Path) -> None:
    if not collected:
        pytest.skip("no benchmark ran in this session")
    targets = evaluate(collected)

    assert targets
    assert all({"target", "met", "figure"} <= set(t) for t in targets)
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed")
    draw(
        {"date": "smoke", "machine": {}, "results": collected, "targets": targets},
        tmp_path / "b.png",
    )
    assert (tmp_path / "b.png").stat().st_size > 10_000
