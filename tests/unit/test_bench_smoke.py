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
from bench.forwarding import abba, combine_repetitions, ratio_of_sides
from bench.plot import draw
from bench.targets import evaluate

pytestmark = pytest.mark.integration

# The keys each benchmark's rows must carry, by case.
REPEATED = {"repetitions", "runs"}  # a case run more than once (ABBA): the mean, and each run
ABBA_RATIO = {
    "declarative_vs_pydantic",
    "declarative_vs_pydantic_rounds",
    "declarative_vs_pydantic_order",
}
EXPECTED: dict[str, dict[str, set[str]]] = {
    "forwarding": {
        "gateway": {"events_per_s", "order_ok", "order_inversions", "complete", "direct"}
        | REPEATED,
        "gateway_declarative": {
            "events_per_s",
            "cpu_ms_per_event",
            "order_ok",
            "order_inversions",
            "complete",
            "direct",
        }
        | REPEATED,
        "faststream_relay": {"events_per_s", "complete", "cpu_ms_per_event"},
        "aio_pika_relay": {"events_per_s", "complete", "cpu_ms_per_event"},
        "aio_pika_raw_64": {"events_per_s", "complete"},
        "ratios": {
            "gateway_vs_relay",
            "gateway_vs_raw",
            "pydantic_events_per_s",
            "declarative_events_per_s",
        }
        | ABBA_RATIO,
    },
    "http": {
        "published": {"requests_per_s", "p50_ms", "p99_ms", "answered_published"} | REPEATED,
        "published_declarative": {"requests_per_s", "p50_ms", "p99_ms", "answered_published"}
        | REPEATED,
        "stored": {"requests_per_s", "p50_ms", "p99_ms", "answered_stored"},
        "ratios": {
            "stored_vs_published",
            "stored_single_p50_ms",
            "pydantic_requests_per_s",
            "declarative_requests_per_s",
        }
        | ABBA_RATIO,
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
            if "runs" in keys:
                # ABBA: each side ran its repetitions, at the positions abba() gives it.
                side = "A" if case in ("gateway", "published") else "B"
                order = abba(module.SMOKE.repetitions)
                assert row["repetitions"] == module.SMOKE.repetitions
                assert [run["position"] for run in row["runs"]] == [
                    n for n, s in enumerate(order, 1) if s == side
                ]
    if "ratios" in by_case and "declarative_vs_pydantic_rounds" in by_case["ratios"][0]:
        ratios = by_case["ratios"][0]
        assert ratios["declarative_vs_pydantic_order"] == "".join(abba(module.SMOKE.repetitions))
        assert len(ratios["declarative_vs_pydantic_rounds"]) == module.SMOKE.repetitions
    collected.extend(rows)


def test_abba_interleaves_the_two_sides() -> None:
    assert abba(1) == ["A", "B"]
    assert abba(2) == ["A", "B", "B", "A"]
    assert abba(3) == ["A", "B", "B", "A", "A", "B"]


def test_repetitions_combine_to_a_mean_and_keep_every_runs_checks() -> None:
    runs = [
        {"case": "gateway", "position": 1, "events_per_s": 100.0, "arrived": 50, "complete": True},
        {"case": "gateway", "position": 4, "events_per_s": 300.0, "arrived": 40, "complete": False},
    ]

    row = combine_repetitions(
        runs, mean=("events_per_s",), total=("arrived",), every=("complete", "absent")
    )

    assert row["case"] == "gateway"
    assert "position" not in row
    assert "absent" not in row
    assert row["events_per_s"] == 200.0
    assert row["arrived"] == 90
    assert row["complete"] is False  # one incomplete run makes the case incomplete
    assert row["repetitions"] == 2
    assert row["runs"] == [
        {"position": 1, "events_per_s": 100.0, "arrived": 50, "complete": True},
        {"position": 4, "events_per_s": 300.0, "arrived": 40, "complete": False},
    ]
    # (B1+B2)/(A1+A2), and each round's own ratio.
    assert ratio_of_sides([100.0, 300.0], [90.0, 270.0]) == {"ratio": 0.9, "rounds": [0.9, 0.9]}


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
