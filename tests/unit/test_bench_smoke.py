"""The benchmark suite (bench/, `make bench`) still runs: every benchmark's code path at a tiny size,
checking only the shape of what it reports. Speed is never asserted here: benchmarks are not tests.

Needs the shared RabbitMQ (as the integration tests do); the HTTP benchmark also needs `wrk` and
the figure needs matplotlib (each is skipped, saying so, where missing).
"""

from __future__ import annotations

import http.server
import importlib.util
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bench import wrk
from bench.__main__ import BENCHMARKS
from bench.common import AMQP_HOST, AMQP_PORT, RABBITMQCTL, Context
from bench.forwarding import abba, combine_repetitions, interleave, pair_order, ratio_of_sides
from bench.plot import draw
from bench.targets import evaluate

pytestmark = pytest.mark.integration

# The keys each benchmark's rows must carry, by case.
REPEATED = {"repetitions", "runs"}  # a case run more than once (ABBA): the mean, and each run


def abba_ratio(name: str) -> set[str]:
    """The keys of an ABBA comparison in a `ratios` row: the ratio, its rounds and its order."""
    return {name, f"{name}_rounds", f"{name}_order"}


# The ABBA comparisons in each benchmark's `ratios` row.
COMPARISONS = {
    "forwarding": (
        "gateway_vs_relay",
        "gateway_vs_raw",
        "declarative_vs_pydantic",
        "keys_vs_keyless",
        "uvloop_vs_asyncio",
    ),
    "http": (
        "published_vs_recipe",
        "published_vs_management",
        "declarative_vs_pydantic",
        "keys_vs_keyless_published",
        "keys_vs_keyless_stored",
        "uvloop_vs_asyncio",
        "traced_vs_published",
    ),
    "batch": ("published_vs_raw",),
    "keys": ("published_keyed_cpu_vs_keyless", "stored_keyed_cpu_vs_keyless"),
}
GATEWAY_RUN = {
    "events_per_s",
    "cpu_ms_per_event",
    "order_ok",
    "order_inversions",
    "unique",
    "complete",
    "direct",
    "idempotency_keys",
}
HTTP_RUN = {
    "requests_per_s",
    "p50_ms",
    "p99_ms",
    "non_2xx",
    "idempotency_keys",
    "cpu_ms_per_request",
}
HTTP_PUBLISHED = HTTP_RUN | {"answered_published", "broker_cpu_ms_per_request"} | REPEATED
EXPECTED: dict[str, dict[str, set[str]]] = {
    "forwarding": {
        "gateway": GATEWAY_RUN | REPEATED,
        "gateway_keyless": GATEWAY_RUN | REPEATED,
        "gateway_declarative": GATEWAY_RUN | REPEATED,
        "gateway_asyncio": GATEWAY_RUN | REPEATED,
        "faststream_relay": {
            "events_per_s",
            "complete",
            "cpu_ms_per_event",
            "broker_cpu_ms_per_event",
        }
        | REPEATED,
        "aio_pika_relay": {"events_per_s", "complete", "cpu_ms_per_event", "order_ok", "unique"}
        | REPEATED,
        "aio_pika_raw_64": {"events_per_s", "complete", "order_ok", "unique"} | REPEATED,
        "ratios": {
            "relay_events_per_s",
            "raw_events_per_s",
            "pydantic_events_per_s",
            "declarative_events_per_s",
            "keyless_events_per_s",
            "keys_cpu_vs_keyless",
            "run_order",
            "uvloop_cpu_vs_asyncio",
            "asyncio_events_per_s",
            "asyncio_cpu_ms_per_event",
        }
        | {key for comparison in COMPARISONS["forwarding"] for key in abba_ratio(comparison)},
    },
    "http": {
        "published": HTTP_PUBLISHED,
        "published_keyless": HTTP_PUBLISHED,
        "published_declarative": HTTP_PUBLISHED,
        "published_asyncio": HTTP_PUBLISHED,
        "published_traced": HTTP_PUBLISHED | {"exported_spans"},
        "faststream_http": HTTP_PUBLISHED,
        # RabbitMQ's management API takes no Idempotency-Key; the node is the broker.
        "management_api": HTTP_RUN - {"idempotency_keys"} | {"answered_published"} | REPEATED,
        # The recipe without its publish: no broker work to count.
        "http_floor": HTTP_RUN | {"answered_published"} | REPEATED,
        "stored": HTTP_RUN | {"answered_stored", "breaker_opened_after_s"} | REPEATED,
        "stored_keyless": HTTP_RUN | {"answered_stored", "breaker_opened_after_s"} | REPEATED,
        "ratios": {
            "stored_vs_published",
            "stored_single_p50_ms",
            "pydantic_requests_per_s",
            "declarative_requests_per_s",
            "published_keyed_requests_per_s",
            "published_keyless_requests_per_s",
            "stored_keyed_requests_per_s",
            "stored_keyless_requests_per_s",
            "published_run_order",
            "stored_run_order",
            "recipe_requests_per_s",
            "management_requests_per_s",
            "floor_cpu_ms_per_request",
            "published_p99_vs_p50",
            "published_rss_growth_mib",
            "asyncio_requests_per_s",
            "asyncio_single_p50_ms",
            "traced_requests_per_s",
            "traced_single_p50_ms",
        }
        | {key for comparison in COMPARISONS["http"] for key in abba_ratio(comparison)},
    },
    "batch": {
        "batch_published": {"events_per_s", "accepted", "answered_published", "non_202"} | REPEATED,
        "batch_stored": {"events_per_s", "accepted", "answered_stored", "non_202"}
        | REPEATED
        | {"median_events_per_s"},
        "aio_pika_raw_256": {"events_per_s", "seconds"} | REPEATED,
        "ratios": abba_ratio("published_vs_raw") | {"batch_events", "clients"},
    },
    "store": {
        "naive_sqlite": {"events_per_s", "journal_mode"},
        "fallback_store": {"events_per_s", "callers", "vs_naive"},
    },
    "keys": {
        **{
            case: {"events_per_s", "cpu_us_per_event", "idempotency_keys"} | REPEATED
            for case in ("published_keyless", "published_keyed", "stored_keyless", "stored_keyed")
        },
        "ratios": {
            "callers",
            "published_keys_add_cpu_us_per_event",
            "stored_keys_add_cpu_us_per_event",
        }
        | {key for comparison in COMPARISONS["keys"] for key in abba_ratio(comparison)},
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
MODULES: dict[str, ModuleType] = BENCHMARKS
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


def test_every_benchmark_of_make_bench_is_smoke_tested() -> None:
    assert set(EXPECTED) == set(MODULES)


def test_wrk_report_is_parsed() -> None:
    figures = wrk.parse(WRK_SAMPLE)

    assert figures["requests_per_s"] == 460.02
    assert figures["requests"] == 508
    assert figures["p50_ms"] == 0.812
    assert figures["p99_ms"] == 21.94
    assert figures["max_ms"] == 1200.0
    assert figures["non_2xx"] == 3
    assert figures["socket_errors"] == 3


def test_wrk_sends_an_idempotency_key_only_when_asked_and_the_headers_given(
    tmp_path: Path,
) -> None:
    if not wrk.available():
        pytest.skip("wrk is not installed (Debian: apt-get install -y wrk)")
    # (Idempotency-Key, Authorization) of every request, whichever run sent it: the server may
    # still be answering one run's last request when the next run starts.
    seen: list[tuple[str | None, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.headers.get("Idempotency-Key"), self.headers.get("Authorization")))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    body = tmp_path / "body.json"
    body.write_bytes(b"{}")
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        try:
            keyed = wrk.run(url, body, "a", duration_s=1, connections=1)
            keyless = wrk.run(url, body, "b", duration_s=1, connections=1, keys=False)
            wrk.run(url, body, "c", duration_s=1, connections=1, headers={"Authorization": "B z"})
        finally:
            server.shutdown()
    assert keyed["idempotency_keys"] is True
    assert keyless["idempotency_keys"] is False
    keys = [key for key, _ in seen]
    first = [key for key in keys if key and key.startswith("a-1-")]
    assert first
    assert len(set(first)) == len(first)
    assert None in keys  # the keyless run's
    assert not [key for key in keys if key and key.startswith("b")]
    # Only the third run's requests carried the header, every one of them.
    assert {authorization for key, authorization in seen if key and key.startswith("c-1-")} == {
        "B z"
    }
    assert {authorization for key, authorization in seen if not (key or "").startswith("c")} == {
        None
    }


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
    repetitions = getattr(module.SMOKE, "repetitions", None)
    for case, keys in EXPECTED[name].items():
        for row in by_case[case]:
            assert keys <= set(row), (case, keys - set(row))
            if "idempotency_keys" in keys:
                assert row["idempotency_keys"] is ("keyless" not in case), case
            if name == "http" and row.get("mode") == "load" and case.startswith("published"):
                # The gateway's memory, sampled around the load.
                assert {"rss_idle_mib", "rss_peak_mib"} <= set(row), case
            if "exported_spans" in keys:
                # Tracing was on, and each answered request's spans (its server span and its
                # send span) reached the receiver.
                assert row["exported_spans"] >= 2 * row["answered_published"] > 0, case
            if "unique" in keys:
                # The order check saw every event (keyless ones by their correlation_id).
                assert row["unique"] == row["arrived"], case
            if "runs" in keys:
                # Interleaved: each case ran its repetitions, at the positions interleave() gives
                # it among the cases of its group.
                (group,) = [cases for cases in module.INTERLEAVED if case in cases]
                order = interleave(group, repetitions)
                assert row["repetitions"] == repetitions
                assert [run["position"] for run in row["runs"]] == [
                    n for n, s in enumerate(order, 1) if s == case
                ]
    for ratios in by_case.get("ratios", []):
        # Every comparison ran ABBA (or BAAB: its side B first), one round ratio per repetition.
        balanced = "".join(abba(repetitions))
        for comparison in COMPARISONS[name]:
            order = ratios[f"{comparison}_order"]
            assert order in (balanced, balanced.translate(str.maketrans("AB", "BA"))), comparison
            assert len(ratios[f"{comparison}_rounds"]) == repetitions, comparison
    collected.extend(rows)


def test_abba_interleaves_the_two_sides() -> None:
    assert abba(1) == ["A", "B"]
    assert abba(2) == ["A", "B", "B", "A"]
    assert abba(3) == ["A", "B", "B", "A", "A", "B"]


def test_three_sides_interleave_abba_with_their_neighbours() -> None:
    order = interleave(("K", "G", "D"), 2)

    assert order == ["K", "G", "D", "D", "G", "K"]
    # Each neighbour of G against G: ABBA, every round's two runs adjacent.
    assert pair_order(order, "G", "D") == "ABBA"
    assert pair_order(order, "K", "G") == "ABBA"
    assert pair_order(interleave(("K", "G", "D"), 3), "K", "G") == "".join(abba(3))


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
    # Each round's own ratio, and their median: one slow run does not move it.
    assert ratio_of_sides([100.0, 300.0], [90.0, 270.0]) == {"ratio": 0.9, "rounds": [0.9, 0.9]}
    assert ratio_of_sides([100.0, 100.0, 100.0], [90.0, 300.0, 95.0]) == {
        "ratio": 0.95,
        "rounds": [0.9, 3.0, 0.95],
    }


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
