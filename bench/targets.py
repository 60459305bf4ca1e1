"""The targets, checked against one run's results (ratios come from one run): issue 6's, the
declarative catalog's (a JSON Schema channel within 10 % of the pydantic one), the idempotency
keys' (an idempotency key on every event, forwarding and HTTP published and stored, within 10 % of
none) and issue 15's (the gateway against what users would run instead: the FastStream relay, the
FastStream HTTP recipe, RabbitMQ's management API, raw aio-pika; batches; the latency tail and the
memory under HTTP load). Each comparison is side by side, interleaved (ABBA...): the median of its
rounds' ratios, the rounds in the figure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Results = list[dict[str, Any]]


def _find(results: Results, bench: str, case: str, **match: Any) -> dict[str, Any] | None:
    for row in results:
        if (
            row.get("bench") == bench
            and row.get("case") == case
            and all(row.get(k) == v for k, v in match.items())
        ):
            return row
    return None


def _target(
    results: Results,
    name: str,
    bench: str,
    check: Callable[[Results], tuple[bool, str] | None],
) -> dict[str, Any]:
    try:
        outcome = check(results)
    except (KeyError, TypeError, ZeroDivisionError):
        outcome = None
    if outcome is None:
        return {"target": name, "bench": bench, "met": None, "figure": "not measured"}
    met, figure = outcome
    return {"target": name, "bench": bench, "met": met, "figure": figure}


def _cpu(row: dict[str, Any], unit: str = "event") -> str:
    """The CPU a run cost the serving process and the broker, per event (or request)."""
    own, broker = row.get(f"cpu_ms_per_{unit}"), row.get(f"broker_cpu_ms_per_{unit}")
    parts = [f"{own:.2f}" if own is not None else "-", f"{broker:.2f}" if broker else "-"]
    return f"CPU ms/{unit} own {parts[0]}, broker {parts[1]}"


def _forwarding_relay(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "forwarding", "ratios")
    gw, relay = _find(r, "forwarding", "gateway"), _find(r, "forwarding", "faststream_relay")
    if not row or not gw or not relay:
        return None
    x = row["gateway_vs_relay"]
    return (
        x >= 2.0 and bool(gw["complete"]) and bool(relay["complete"]),
        f"{x:.2f}x ({_rounds(row, 'gateway_vs_relay', 'x')}; means {gw['events_per_s']:.0f} vs"
        f" {relay['events_per_s']:.0f} events/s; gateway {_cpu(gw)}; relay {_cpu(relay)})",
    )


def _forwarding_raw(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "forwarding", "ratios")
    gw, raw = _find(r, "forwarding", "gateway"), _find(r, "forwarding", "aio_pika_raw_64")
    if not row or not gw or not raw:
        return None
    x = row["gateway_vs_raw"]
    return (
        x >= 0.6 and bool(gw["complete"]) and bool(raw["complete"]),
        f"{x:.0%} ({_rounds(row, 'gateway_vs_raw')}; means {gw['events_per_s']:.0f} vs"
        f" {raw['events_per_s']:.0f} events/s; broker CPU ms/event"
        f" {gw['broker_cpu_ms_per_event']:.2f} vs {raw['broker_cpu_ms_per_event']:.2f})",
    )


def _forwarding_order(r: Results) -> tuple[bool, str] | None:
    gw = _find(r, "forwarding", "gateway")
    if not gw:
        return None
    return (
        bool(gw["order_ok"]) and gw["complete"],
        f"{gw['order_inversions']} inversions in {gw['arrived']} events",
    )


def _rounds(row: dict[str, Any], ratio: str = "declarative_vs_pydantic", unit: str = "%") -> str:
    """The per-round ratios of an ABBA comparison (`ratio` in the ratios `row`), for a target's
    figure: as percentages, or (`unit` "x") as multiples."""
    rounds = row.get(f"{ratio}_rounds") or []
    if not rounds:
        return "one pair, in sequence"
    order = row.get(f"{ratio}_order") or ""

    def shown(x: float | None) -> str:
        if x is None:
            return "-"
        return f"{x:.2f}x" if unit == "x" else f"{x:.0%}"

    return f"median of {order} rounds " + ", ".join(shown(x) for x in rounds)


def _forwarding_declarative(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "forwarding", "ratios")
    gw, dcl = _find(r, "forwarding", "gateway"), _find(r, "forwarding", "gateway_declarative")
    if not row or not gw or not dcl or row.get("declarative_vs_pydantic") is None:
        return None
    x = row["declarative_vs_pydantic"]
    # Both sides complete in every run (a ratio of incomplete runs means nothing).
    return (
        x >= 0.9 and bool(dcl["complete"]) and bool(gw["complete"]),
        f"{x:.0%} ({_rounds(row)}; means {dcl['events_per_s']:.0f} vs {gw['events_per_s']:.0f}"
        f" events/s; CPU {dcl['cpu_ms_per_event']:.3f} vs {gw['cpu_ms_per_event']:.3f} ms/event;"
        f" {dcl['order_inversions']} inversions; complete: {dcl['complete']} vs {gw['complete']})",
    )


def _forwarding_keys(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "forwarding", "ratios")
    keyed, keyless = _find(r, "forwarding", "gateway"), _find(r, "forwarding", "gateway_keyless")
    if not row or not keyed or not keyless or row.get("keys_vs_keyless") is None:
        return None
    x = row["keys_vs_keyless"]
    # Both sides complete in every run (a ratio of incomplete runs means nothing).
    return (
        x >= 0.9 and bool(keyed["complete"]) and bool(keyless["complete"]),
        f"{x:.0%} ({_rounds(row, 'keys_vs_keyless')}; means {keyed['events_per_s']:.0f} with keys"
        f" vs {keyless['events_per_s']:.0f} events/s without; CPU {keyed['cpu_ms_per_event']:.3f}"
        f" vs {keyless['cpu_ms_per_event']:.3f} ms/event;"
        f" complete: {keyed['complete']} vs {keyless['complete']})",
    )


def _http_keys(case: str) -> Callable[[Results], tuple[bool, str] | None]:
    """The cost of an Idempotency-Key on every request of `case` (published or stored), against
    the same case without: keyed rate / keyless rate >= 90 %."""

    def check(r: Results) -> tuple[bool, str] | None:
        row = _find(r, "http", "ratios") or {}
        keyed = _find(r, "http", case, mode="load")
        keyless = _find(r, "http", f"{case}_keyless", mode="load")
        if not keyed or not keyless:
            return None
        ratio = f"keys_vs_keyless_{case}"
        x = row.get(ratio)
        if x is None:
            x = keyed["requests_per_s"] / keyless["requests_per_s"]
        single = _find(r, "http", case, mode="single") or {}
        single_keyless = _find(r, "http", f"{case}_keyless", mode="single") or {}
        # Every request of both sides answered 2xx (a ratio of refused requests means nothing).
        failed = (keyed.get("non_2xx") or 0, keyless.get("non_2xx") or 0)
        return (
            x >= 0.9 and failed == (0, 0),
            f"{x:.0%} ({_rounds(row, ratio)}; means {keyed['requests_per_s']:.0f} with keys vs"
            f" {keyless['requests_per_s']:.0f} req/s without; p50 one at a time"
            f" {single.get('p50_ms') or 0:.2f} vs {single_keyless.get('p50_ms') or 0:.2f} ms;"
            f" non-2xx {failed[0]} vs {failed[1]})",
        )

    return check


def _http_throughput(r: Results) -> tuple[bool, str] | None:
    pub, sto = _find(r, "http", "published", mode="load"), _find(r, "http", "stored", mode="load")
    if not pub or not sto:
        return None
    x = sto["requests_per_s"] / pub["requests_per_s"]
    return (
        x >= 1.0,
        f"stored {sto['requests_per_s']:.0f} vs published {pub['requests_per_s']:.0f} req/s ({x:.2f}x)",
    )


def _http_p50(r: Results) -> tuple[bool, str] | None:
    single = _find(r, "http", "stored", mode="single")
    if not single:
        return None
    return single["p50_ms"] <= 5.0, f"p50 {single['p50_ms']:.2f} ms (one request at a time)"


def _http_declarative(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "http", "ratios") or {}
    pub = _find(r, "http", "published", mode="load")
    dcl = _find(r, "http", "published_declarative", mode="load")
    if not pub or not dcl:
        return None
    x = row.get("declarative_vs_pydantic")
    if x is None:
        x = dcl["requests_per_s"] / pub["requests_per_s"]
    single_pub = _find(r, "http", "published", mode="single") or {}
    single_dcl = _find(r, "http", "published_declarative", mode="single") or {}
    return (
        x >= 0.9,
        f"{x:.0%} ({_rounds(row)}; means {dcl['requests_per_s']:.0f} vs"
        f" {pub['requests_per_s']:.0f} req/s; p50 one at a time"
        f" {single_dcl.get('p50_ms') or 0:.2f} vs {single_pub.get('p50_ms') or 0:.2f} ms)",
    )


def _http_peer(
    peer: str, ratio: str, at_least: float
) -> Callable[[Results], tuple[bool, str] | None]:
    """Single-event HTTP published under load against a peer's rate (`ratio` in the ratios row,
    the median of the rounds), at least `at_least` times it, every request of both answered 2xx."""

    def check(r: Results) -> tuple[bool, str] | None:
        row = _find(r, "http", "ratios") or {}
        pub = _find(r, "http", "published", mode="load")
        other = _find(r, "http", peer, mode="load")
        if not pub or not other or row.get(ratio) is None:
            return None
        x = row[ratio]
        failed = (pub.get("non_2xx") or 0, other.get("non_2xx") or 0)
        return (
            x >= at_least and failed == (0, 0),
            f"{x:.2f}x ({_rounds(row, ratio, 'x')}; means {pub['requests_per_s']:,.0f} vs"
            f" {other['requests_per_s']:,.0f} req/s; gateway {_cpu(pub, 'request')};"
            f" {peer} {_cpu(other, 'request')}; non-2xx {failed[0]} vs {failed[1]})",
        )

    return check


def _http_tail(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "http", "ratios") or {}
    pub = _find(r, "http", "published", mode="load")
    x = row.get("published_p99_vs_p50")
    if not pub or x is None:
        return None
    runs = ", ".join(f"{v:.2f}x" for v in row.get("published_p99_vs_p50_runs") or [])
    return (
        x <= 2.0,
        f"p99/p50 {x:.2f}x (median of runs {runs}; means p50 {pub['p50_ms']:.1f} ms,"
        f" p99 {pub['p99_ms']:.1f} ms at {pub.get('connections')} connections)",
    )


def _http_rss(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "http", "ratios") or {}
    pub = _find(r, "http", "published", mode="load")
    growth = row.get("published_rss_growth_mib")
    if not pub or growth is None:
        return None
    return (
        growth <= 64,
        f"+{growth:.1f} MiB at most (runs "
        + ", ".join(f"+{g:.1f}" for g in row.get("published_rss_growth_mib_runs") or [])
        + f"; idle {pub['rss_idle_mib']:.0f} MiB, peak {pub['rss_peak_mib']:.0f} MiB)",
    )


def _store_rate(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "store", "fallback_store", callers=256)
    if not row:
        return None
    return row["events_per_s"] >= 25_000, f"{row['events_per_s']:.0f} events/s at 256 callers"


def _store_ratio(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "store", "fallback_store", callers=256)
    naive = _find(r, "store", "naive_sqlite")
    if not row or not naive:
        return None
    return (
        row["vs_naive"] >= 20,
        f"{row['vs_naive']:.1f}x the naive way ({naive['events_per_s']:.0f} events/s)",
    )


def _outage(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "outage", "breaker")
    if not row or row["slowest_during_ms"] is None:
        return None
    return (
        row["slowest_during_ms"] <= row["limit_ms"],
        f"slowest {row['slowest_during_ms']:.0f} ms (limit {row['limit_ms']:.0f} ms);"
        f" breaker open {row['partition_to_open_s']} s after the partition",
    )


def _replay_rate(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "replay", "replay")
    if not row:
        return None
    x = row["vs_budget"]
    return (
        0.9 <= x <= 1.1 and row["complete"],
        f"{row['steady_events_per_s']:.0f}/s of {row['budget_per_s']}/s ({x:.0%});"
        f" max {row['max_in_1s_window']} in a 1 s window",
    )


def _replay_latency(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "replay", "live_confirm")
    if not row or row["p99_during_vs_idle"] is None:
        return None
    x = row["p99_during_vs_idle"]
    return (
        x <= 2.0,
        f"p99 {row['replay_p99_ms']:.1f} ms during replay vs {row['idle_p99_ms']:.1f} ms idle ({x:.2f}x)",
    )


def _rss(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "scale", "growth")
    if not row:
        return None
    return (
        row["rss_growth_mib"] <= 64,
        f"+{row['rss_growth_mib']:.1f} MiB with {row['stored_events']:,} events stored",
    )


def _restart(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "scale", "growth")
    if not row:
        return None
    return (
        row["restart_to_ready_s"] <= 2.0,
        f"{row['restart_to_ready_s']:.2f} s with {row['stored_events']:,} events"
        f" (empty store: {row['restart_to_ready_empty_s']:.2f} s)",
    )


def _batch_published(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "batch", "ratios")
    gw, raw = _find(r, "batch", "batch_published"), _find(r, "batch", "aio_pika_raw_256")
    if not row or not gw or not raw:
        return None
    x = row["published_vs_raw"]
    return (
        x >= 0.8 and gw["non_202"] == 0,
        f"{x:.0%} ({gw['events_per_s']:,.0f} vs {raw['events_per_s']:,.0f} events/s;"
        f" {_rounds(row, 'published_vs_raw')})",
    )


def _batch_stored(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "batch", "batch_stored")
    if not row:
        return None
    rate = row["median_events_per_s"]
    answered = row.get("answered_stored") == row["events"] * row.get("repetitions", 1)
    runs = ", ".join(f"{run['events_per_s']:,.0f}" for run in row.get("runs") or [])
    return (
        rate >= 20_000 and row["non_202"] == 0 and answered,
        f"{rate:,.0f} events/s (median of runs {runs})",
    )


TARGETS: tuple[tuple[str, str, Callable[[Results], tuple[bool, str] | None]], ...] = (
    ("AMQP forwarding >= 2x the plain FastStream relay", "forwarding", _forwarding_relay),
    ("AMQP forwarding >= 60% of raw aio-pika (64 in flight)", "forwarding", _forwarding_raw),
    ("per-channel order holds in forwarding", "forwarding", _forwarding_order),
    ("declarative channel forwarding >= 90% of pydantic", "forwarding", _forwarding_declarative),
    ("idempotency keys cost <= 10% in forwarding", "forwarding", _forwarding_keys),
    ("HTTP stored throughput >= published throughput", "http", _http_throughput),
    ("p50 of a stored request <= 5 ms (breaker open)", "http", _http_p50),
    (
        "single-event HTTP published >= 2x the FastStream HTTP recipe",
        "http",
        _http_peer("faststream_http", "published_vs_recipe", 2.0),
    ),
    (
        "single-event HTTP published >= RabbitMQ's management API",
        "http",
        _http_peer("management_api", "published_vs_management", 1.0),
    ),
    ("HTTP published p99 <= 2x p50 at 32 connections", "http", _http_tail),
    ("RSS under HTTP load <= idle + 64 MiB", "http", _http_rss),
    ("declarative channel HTTP >= 90% of pydantic", "http", _http_declarative),
    ("idempotency keys cost <= 10% in HTTP published", "http", _http_keys("published")),
    ("idempotency keys cost <= 10% in HTTP stored", "http", _http_keys("stored")),
    ("batch published >= 80% of raw aio-pika (256 in flight)", "batch", _batch_published),
    ("batch stored >= 20,000 events/s", "batch", _batch_stored),
    ("store >= 25,000 durable events/s at 256 callers", "store", _store_rate),
    ("store >= 20x the naive way", "store", _store_ratio),
    ("no request during a partition slower than deadline + 100 ms", "outage", _outage),
    ("replay within +-10% of its budget", "replay", _replay_rate),
    ("live confirm p99 during replay <= 2x idle", "replay", _replay_latency),
    ("RSS growth <= 64 MiB with 1,000,000 events stored", "scale", _rss),
    ("restart to ready <= 2 s with that backlog", "scale", _restart),
)


def evaluate(results: Results) -> list[dict[str, Any]]:
    benches = {row.get("bench") for row in results}
    return [
        _target(results, name, bench, check) for name, bench, check in TARGETS if bench in benches
    ]
