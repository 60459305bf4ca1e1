"""docs/bench.png: one panel per benchmark, the gateway beside its yardstick, ratios written on.

python -m bench.plot [RESULTS.json] [--out docs/bench.png]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.common import FIGURE, RESULTS_DIR

GATEWAY = "#1f77b4"
YARDSTICK = "#999999"
MISSED = "#d62728"
MET = "#2ca02c"
DECLARATIVE = "#6baed6"  # the gateway on a declarative (JSON Schema) channel
KEYLESS = "#c6dbef"  # the gateway with no idempotency key on any event


def _find(results: list[dict[str, Any]], bench: str, case: str, **match: Any) -> dict[str, Any]:
    for row in results:
        if (
            row.get("bench") == bench
            and row.get("case") == case
            and all(row.get(k) == v for k, v in match.items())
        ):
            return row
    return {}


def _bars(ax: Any, labels: list[str], values: list[float], colors: list[str], fmt: str) -> None:
    bars = ax.bar(labels, values, color=colors)
    top = max(values, default=0) or 1
    for bar, value in zip(bars, values, strict=True):
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height() + top * 0.02,
            fmt.format(value),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylim(0, top * 1.25)


def _runs(ax: Any, positions: Iterable[int], rows: list[dict[str, Any]], key: str) -> None:
    """Each run of a repeated case (its row's `runs`) as a dot on its bar, off the centre where
    the bar's value is written: the spread."""
    for x, row in zip(positions, rows, strict=True):
        values = [run[key] for run in row.get("runs") or [] if run.get(key) is not None]
        if len(values) > 1:
            ax.plot([x + 0.3] * len(values), values, "o", color="black", markersize=3, zorder=3)


def _rounds(ratios: dict[str, Any], ratio: str = "declarative_vs_pydantic", unit: str = "%") -> str:
    """The per-round ratios of `ratio` (ABBA...; the figure is their median), for a title: as
    percentages, or (`unit` "x") as multiples; "" for one round."""
    rounds = ratios.get(f"{ratio}_rounds") or []
    if len(rounds) < 2:
        return ""
    order = ratios.get(f"{ratio}_order", "")
    shown = (f"{x or 0:.2f}x" if unit == "x" else f"{x or 0:.0%}" for x in rounds)
    return f" ({order} rounds " + ", ".join(shown) + ")"


def _note(ax: Any, text: str, met: bool | None) -> None:
    color = MET if met else (MISSED if met is False else "black")
    ax.text(0.02, 0.97, text, transform=ax.transAxes, va="top", fontsize=8, color=color, wrap=True)


def _unmeasured(ax: Any, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _met(targets: list[dict[str, Any]], bench: str) -> list[dict[str, Any]]:
    return [t for t in targets if t.get("bench") == bench]


def _verdicts(targets: list[dict[str, Any]]) -> tuple[str, bool | None]:
    if not targets:
        return "", None
    word = {True: "met: ", False: "MISSED: ", None: "not measured: "}
    lines = [word[t["met"]] + t["target"] for t in targets]
    met = all(t["met"] for t in targets) if all(t["met"] is not None for t in targets) else False
    return "\n".join(lines), met


def _forwarding(ax: Any, results: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    title = "1. AMQP forwarding (preloaded queue)"
    gw = _find(results, "forwarding", "gateway")
    if not gw:
        return _unmeasured(ax, title)
    declared = _find(results, "forwarding", "gateway_declarative")
    keyless = _find(results, "forwarding", "gateway_keyless")
    relay = _find(results, "forwarding", "faststream_relay")
    pika = _find(results, "forwarding", "aio_pika_relay")
    raw = _find(results, "forwarding", "aio_pika_raw_64")
    _bars(
        ax,
        [
            "gateway\n(pydantic)",
            "gateway\n(no keys)",
            "gateway\n(declarative)",
            "FastStream\nrelay",
            "aio-pika relay\n(reference)",
            "aio-pika raw\n64 in flight",
        ],
        [
            gw["events_per_s"],
            keyless.get("events_per_s", 0),
            declared.get("events_per_s", 0),
            relay.get("events_per_s", 0),
            pika.get("events_per_s", 0),
            raw.get("events_per_s", 0),
        ],
        [GATEWAY, KEYLESS, DECLARATIVE, YARDSTICK, "#cccccc", YARDSTICK],
        "{:,.0f}/s",
    )
    _runs(ax, range(6), [gw, keyless, declared, relay, pika, raw], "events_per_s")
    ax.tick_params(axis="x", labelsize=7)  # six bars
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for five verdicts above the bars
    ratios = _find(results, "forwarding", "ratios")
    ax.set_ylabel("events/s (first to last arrival)")
    ax.set_title(
        f"{title}\ngateway = {ratios.get('gateway_vs_relay') or 0:.2f}x FastStream relay"
        f"{_rounds(ratios, 'gateway_vs_relay', 'x')}\n"
        f"{ratios.get('gateway_vs_raw') or 0:.0%} of raw; order ok: {gw.get('order_ok')}"
        f"\ndeclarative channel = {ratios.get('declarative_vs_pydantic') or 0:.0%} of pydantic"
        f"{_rounds(ratios)}\nwith keys = {ratios.get('keys_vs_keyless') or 0:.0%} of no keys"
        f"{_rounds(ratios, 'keys_vs_keyless')}",
        fontsize=10,
    )
    _note(ax, *_verdicts(_met(targets, "forwarding")))


def _http(ax: Any, results: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    title = "2. HTTP ingress, one event a request (wrk)"
    pub, sto = (
        _find(results, "http", "published", mode="load"),
        _find(results, "http", "stored", mode="load"),
    )
    if not pub or not sto:
        return _unmeasured(ax, title)
    cases = (
        ("published", "published\n(broker up)", GATEWAY),
        ("published_keyless", "published\n(no keys)", KEYLESS),
        ("published_declarative", "published\n(declarative)", DECLARATIVE),
        ("faststream_http", "FastStream\nHTTP recipe", YARDSTICK),
        ("management_api", "RabbitMQ\nmgmt API", YARDSTICK),
        ("stored", "stored\n(partitioned)", GATEWAY),
        ("stored_keyless", "stored\n(no keys)", KEYLESS),
    )
    rows = [_find(results, "http", case, mode="load") for case, _, _ in cases]
    _bars(
        ax,
        [label for _, label, _ in cases],
        [row.get("requests_per_s", 0) for row in rows],
        [color for _, _, color in cases],
        "{:,.0f}/s",
    )
    _runs(ax, range(len(rows)), rows, "requests_per_s")
    ax.tick_params(axis="x", labelsize=7)  # seven bars
    ax.set_ylim(0, ax.get_ylim()[1] * 1.5)  # room for the verdicts above the bars
    single_pub = _find(results, "http", "published", mode="single")
    single_sto = _find(results, "http", "stored", mode="single")
    ratios = _find(results, "http", "ratios")
    ax.set_ylabel(f"requests/s ({pub.get('connections')} connections)")
    ax.set_title(
        f"{title}\npublished = {ratios.get('published_vs_recipe') or 0:.2f}x the FastStream recipe"
        f"{_rounds(ratios, 'published_vs_recipe', 'x')},\n"
        f"{ratios.get('published_vs_management') or 0:.2f}x the management API"
        f"{_rounds(ratios, 'published_vs_management', 'x')}\n"
        f"declarative {ratios.get('declarative_vs_pydantic') or 0:.0%} of pydantic;"
        f" with keys {ratios.get('keys_vs_keyless_published') or 0:.0%} (published),"
        f" {ratios.get('keys_vs_keyless_stored') or 0:.0%} (stored) of no keys\n"
        f"CPU ms/request: gateway {pub.get('cpu_ms_per_request') or 0:.2f},"
        f" recipe {_find(results, 'http', 'faststream_http', mode='load').get('cpu_ms_per_request') or 0:.2f},"
        f" bare HTTP + validation {ratios.get('floor_cpu_ms_per_request') or 0:.2f},"
        f" broker {pub.get('broker_cpu_ms_per_request') or 0:.2f}\n"
        f"published p99/p50 {ratios.get('published_p99_vs_p50') or 0:.2f}x;"
        f" one at a time p50: published {single_pub.get('p50_ms', 0):.1f} ms,"
        f" stored {single_sto.get('p50_ms', 0):.1f} ms",
        fontsize=9,
    )
    _note(ax, *_verdicts(_met(targets, "http")))


def _batch(ax: Any, results: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    title = "7. HTTP batches (1,000 events a request)"
    published = _find(results, "batch", "batch_published")
    if not published:
        return _unmeasured(ax, title)
    stored = _find(results, "batch", "batch_stored")
    raw = _find(results, "batch", "aio_pika_raw_256")
    rows = [published, stored, raw]
    _bars(
        ax,
        ["batches\npublished", "batches\nstored", "aio-pika raw\n256 in flight"],
        [row.get("events_per_s", 0) for row in rows],
        [GATEWAY, GATEWAY, YARDSTICK],
        "{:,.0f}/s",
    )
    _runs(ax, range(3), rows, "events_per_s")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.2)
    ratios = _find(results, "batch", "ratios")
    ax.set_ylabel("events/s")
    ax.set_title(
        f"{title}\npublished = {ratios.get('published_vs_raw') or 0:.0%} of raw"
        f"{_rounds(ratios, 'published_vs_raw')}",
        fontsize=10,
    )
    _note(ax, *_verdicts(_met(targets, "batch")))


def _store(ax: Any, results: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    title = "3. Store writes (durable)"
    naive = _find(results, "store", "naive_sqlite")
    cases = sorted(
        (r for r in results if r.get("bench") == "store" and r.get("case") == "fallback_store"),
        key=lambda r: r["callers"],
    )
    if not cases:
        return _unmeasured(ax, title)
    labels = ["naive\n(1 commit/event)"] + [f"store.put\n{r['callers']} callers" for r in cases]
    values = [naive.get("events_per_s", 0)] + [r["events_per_s"] for r in cases]
    _bars(ax, labels, values, [YARDSTICK] + [GATEWAY] * len(cases), "{:,.0f}/s")
    ax.axhline(25_000, color=MISSED, linestyle="--", linewidth=1)
    ax.text(len(labels) - 0.5, 25_000, " target 25k/s", va="bottom", ha="right", fontsize=7)
    ax.set_ylabel("events/s")
    ax.set_ylim(0, max(max(values), 25_000) * 1.3)
    ax.set_title(f"{title}: 256 callers = {cases[-1].get('vs_naive') or 0:.0f}x naive", fontsize=10)
    _note(ax, *_verdicts(_met(targets, "store")))


def _outage(ax: Any, results: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    title = "4. Outage: HTTP latency around a partition"
    breaker = _find(results, "outage", "breaker")
    phases = [_find(results, "outage", p) for p in ("before", "during", "after")]
    if not breaker:
        return _unmeasured(ax, title)
    labels = ["before", "during", "after"]
    x = range(len(labels))
    width = 0.25
    for offset, (key, color) in enumerate(
        (("p50_ms", "#9ecae1"), ("p99_ms", "#3182bd"), ("max_ms", "#08519c"))
    ):
        values = [(p.get(key) or 0) for p in phases]
        ax.bar([i + (offset - 1) * width for i in x], values, width, label=key[:-3], color=color)
    ax.axhline(breaker["limit_ms"], color=MISSED, linestyle="--", linewidth=1)
    ax.text(2.4, breaker["limit_ms"], "deadline + 100 ms", va="bottom", ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylim(top=breaker["limit_ms"] * 8)  # room for the verdict above the limit line
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("request latency, ms (log)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(
        f"{title}\nbreaker open {breaker.get('partition_to_open_s')} s after partition,"
        f" closed {breaker.get('heal_to_closed_s')} s after heal",
        fontsize=10,
    )
    _note(ax, *_verdicts(_met(targets, "outage")))


def _replay(ax: Any, results: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    title = "5. Replay"
    row, live = _find(results, "replay", "replay"), _find(results, "replay", "live_confirm")
    if not row:
        return _unmeasured(ax, title)
    _bars(
        ax,
        ["budget", "achieved\n(steady)", "max in a\n1 s window"],
        [row["budget_per_s"], row["steady_events_per_s"], row["max_in_1s_window"]],
        [YARDSTICK, GATEWAY, GATEWAY],
        "{:,.0f}",
    )
    ax.set_ylabel("events/s")
    ax.set_title(
        f"{title}: {row.get('vs_budget') or 0:.0%} of budget\nlive confirm p99: idle"
        f" {live.get('idle_p99_ms') or 0:.1f} ms, during replay {live.get('replay_p99_ms') or 0:.1f} ms",
        fontsize=10,
    )
    _note(ax, *_verdicts(_met(targets, "replay")))


def _scale(ax: Any, results: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    title = "6. Scale: empty store vs backlog"
    empty, full = _find(results, "scale", "empty"), _find(results, "scale", "backlog")
    if not empty or not full:
        return _unmeasured(ax, title)
    width = 0.38
    right = ax.twinx()
    for offset, (row, name, color) in enumerate(
        ((empty, "empty store", YARDSTICK), (full, f"{full['stored_events']:,} events", GATEWAY))
    ):
        x = (offset - 0.5) * width
        for axis, position, value, text in (
            (ax, x, row["rss_peak_mib"], f"{row['rss_peak_mib']:.0f} MiB"),
            (right, 1 + x, row["restart_to_ready_s"], f"{row['restart_to_ready_s']:.2f} s"),
        ):
            axis.bar(position, value, width, color=color, label=name if axis is ax else None)
            axis.text(position, value, text, ha="center", va="bottom", fontsize=8)
    ax.set_xticks([0, 1], ["RSS (peak)", "restart to ready"])
    ax.set_ylabel("RSS, MiB")
    right.set_ylabel("restart to ready, s")
    ax.set_ylim(0, max(empty["rss_peak_mib"], full["rss_peak_mib"]) * 1.5)
    right.set_ylim(0, max(full["restart_to_ready_s"], 2.0) * 1.5)
    right.axhline(2.0, xmin=0.5, color=MISSED, linestyle="--", linewidth=1)
    right.text(1.45, 2.0, "target 2 s", va="bottom", ha="right", fontsize=7)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, 0.8))
    growth = _find(results, "scale", "growth")
    ax.set_title(f"{title}\nRSS growth {growth.get('rss_growth_mib') or 0:+.0f} MiB", fontsize=10)
    _note(ax, *_verdicts(_met(targets, "scale")))


def draw(document: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, targets = document.get("results", []), document.get("targets", [])
    fig, axes = plt.subplots(2, 4, figsize=(23, 11))
    panels = (_forwarding, _http, _store, _outage, _replay, _scale, _batch)
    for panel, ax in zip(panels, axes.flat, strict=False):
        panel(ax, results, targets)
        ax.grid(axis="y", alpha=0.3)
    axes.flat[-1].axis("off")
    machine = document.get("machine", {})
    met = sum(1 for t in targets if t.get("met"))
    fig.suptitle(
        f"Breakwater benchmarks, {document.get('date', '')}: {met} of {len(targets)} targets met"
        f" - {machine.get('cpu_count')} x {machine.get('cpu_model', '')},"
        f" RabbitMQ {machine.get('rabbitmq_version', '')}, Python {machine.get('python_version', '')},"
        f" app {str(machine.get('app_commit', ''))[:12]}",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, nargs="?")
    parser.add_argument("--out", type=Path, default=FIGURE)
    args = parser.parse_args()
    source = args.results or max(RESULTS_DIR.glob("*.json"))
    draw(json.loads(source.read_text()), args.out)
    print(args.out)


if __name__ == "__main__":
    main()
