"""The targets of issue 6, checked against one run's results (ratios come from one run), the
declarative catalog's: a JSON Schema channel within 10 % of the pydantic one, and the idempotency
keys': an idempotency key on every event (forwarding; HTTP published and stored) within 10 % of
none. Each is side by side (ABBA: the ratio of the two sides' means, its rounds in the figure)."""

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


def _forwarding_relay(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "forwarding", "ratios")
    gw, relay = _find(r, "forwarding", "gateway"), _find(r, "forwarding", "faststream_relay")
    if not row or not gw or not relay:
        return None
    x = row["gateway_vs_relay"]
    return x >= 2.0, f"{x:.2f}x ({gw['events_per_s']:.0f} vs {relay['events_per_s']:.0f} events/s)"


def _forwarding_raw(r: Results) -> tuple[bool, str] | None:
    row = _find(r, "forwarding", "ratios")
    gw, raw = _find(r, "forwarding", "gateway"), _find(r, "forwarding", "aio_pika_raw_64")
    if not row or not gw or not raw:
        return None
    x = row["gateway_vs_raw"]
    return x >= 0.6, f"{x:.0%} ({gw['events_per_s']:.0f} vs {raw['events_per_s']:.0f} events/s)"


def _forwarding_order(r: Results) -> tuple[bool, str] | None:
    gw = _find(r, "forwarding", "gateway")
    if not gw:
        return None
    return (
        bool(gw["order_ok"]) and gw["complete"],
        f"{gw['order_inversions']} inversions in {gw['arrived']} events",
    )


def _rounds(row: dict[str, Any], ratio: str = "declarative_vs_pydantic") -> str:
    """The per-round ratios of an ABBA comparison (`ratio` in the ratios `row`), for a target's
    figure."""
    rounds = row.get(f"{ratio}_rounds") or []
    if not rounds:
        return "one pair, in sequence"
    order = row.get(f"{ratio}_order") or ""
    return f"{order} rounds " + ", ".join(f"{x:.0%}" if x is not None else "-" for x in rounds)


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
    rate = row["events_per_s"]
    return (
        rate >= 20_000 and row["non_202"] == 0 and row.get("answered_stored") == row["events"],
        f"{rate:,.0f} events/s",
    )


TARGETS: tuple[tuple[str, str, Callable[[Results], tuple[bool, str] | None]], ...] = (
    ("AMQP forwarding >= 2x the plain FastStream relay", "forwarding", _forwarding_relay),
    ("AMQP forwarding >= 60% of raw aio-pika (64 in flight)", "forwarding", _forwarding_raw),
    ("per-channel order holds in forwarding", "forwarding", _forwarding_order),
    ("declarative channel forwarding >= 90% of pydantic", "forwarding", _forwarding_declarative),
    ("idempotency keys cost <= 10% in forwarding", "forwarding", _forwarding_keys),
    ("HTTP stored throughput >= published throughput", "http", _http_throughput),
    ("p50 of a stored request <= 5 ms (breaker open)", "http", _http_p50),
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
