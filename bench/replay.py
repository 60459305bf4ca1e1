"""5. Replay: a backlog of ~5 x BREAKWATER_REPLAY_RATE events in the store when the gateway starts;
the achieved rate at the consumer (steady part) against the budget, and the broker's confirm
latency of unrelated live traffic (1 in flight, another queue) while the replay runs vs idle.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from app.store.fallback import FallbackStore
from bench.common import (
    ArrivalRecorder,
    Context,
    child,
    latency_summary,
    order_check,
    rate,
    stop_child,
)
from bench.store_writes import make_events

NAME = "replay"


@dataclass(frozen=True)
class Size:
    rate: int
    backlog: int
    idle_s: float


FULL = Size(rate=500, backlog=2_500, idle_s=4)
SMOKE = Size(rate=100, backlog=100, idle_s=0.5)


def max_in_window(times: list[float], window_s: float = 1.0) -> int:
    """Most arrivals in any `window_s` sliding window."""
    best = start = 0
    for end, at in enumerate(times):
        while at - times[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


async def run(ctx: Context, size: Size) -> list[dict[str, Any]]:
    gateway = ctx.gateway("replay", env={"BREAKWATER_REPLAY_RATE": str(size.rate)})
    gateway.workdir.mkdir(parents=True, exist_ok=True)
    store = FallbackStore(gateway.workdir / "replay.db", max_bytes=64 * 1024**3)
    await store.open()
    try:
        await asyncio.gather(*(store.put(e) for e in make_events(size.backlog, "rpl")))
    finally:
        await store.close()

    expected_s = size.backlog / size.rate
    async with ArrivalRecorder(ctx.broker_url) as recorder:
        probe = child(
            ["probe", ctx.broker_url, "600"], ctx.workdir / "probe.log", capture=True, stdin=True
        )
        try:
            assert probe.stdout is not None
            assert probe.stdin is not None
            await asyncio.to_thread(probe.stdout.readline)  # "connected"
            await asyncio.sleep(size.idle_s)
            gateway.start(until="none")
            gateway.start_profile("replay")
            started_at = gateway.started_at
            complete = await recorder.wait_for(size.backlog, expected_s * 3 + 30)
            gateway.stop_profile()
            probe.stdin.write(b"stop\n")
            probe.stdin.flush()
            out = await asyncio.to_thread(probe.stdout.read)
            await asyncio.to_thread(probe.wait, 60)
        finally:
            stop_child(probe)
            gateway.stop()
    samples: list[tuple[float, float]] = json.loads(out)["samples"] if out else []

    arrivals = recorder.arrivals[: size.backlog]
    times = [a.at for a in arrivals]
    # Steady part: without the first and last tenth (start-up, the last partial batch).
    cut = len(times) // 10
    steady = times[cut : len(times) - cut] if len(times) > 20 else times
    steady_rate = rate(len(steady) - 1, steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    first, last = (times[0], times[-1]) if times else (started_at, started_at)
    idle = [ms for at, ms in samples if at < started_at]
    during = [ms for at, ms in samples if first + 0.2 <= at <= last - 0.1]
    idle_summary = latency_summary(idle, "idle_")
    during_summary = latency_summary(during, "replay_")
    p99_idle, p99_during = idle_summary["idle_p99_ms"], during_summary["replay_p99_ms"]
    return [
        {
            "bench": NAME,
            "case": "replay",
            "budget_per_s": size.rate,
            "backlog": size.backlog,
            "arrived": len(arrivals),
            "complete": complete,
            "steady_events_per_s": steady_rate,
            "overall_events_per_s": rate(len(times) - 1, last - first) if len(times) > 1 else 0.0,
            "vs_budget": round(steady_rate / size.rate, 3),
            "max_in_1s_window": max_in_window(times),
            "start_to_first_event_s": round(first - started_at, 3),
            **order_check(arrivals, "rpl"),
        },
        {
            "bench": NAME,
            "case": "live_confirm",
            **idle_summary,
            **during_summary,
            "p99_during_vs_idle": (
                round(p99_during / p99_idle, 2) if p99_idle and p99_during else None
            ),
        },
    ]
