"""3. Store writes: `await FallbackStore.put(event)` from 1, 16 and 256 concurrent callers, against
the naive way (sqlite3, default journal, one INSERT and one commit per event, same row shape).

Both write files in the same scratch directory (the disk the gateway's store would use).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.events import Event
from app.store.fallback import _INSERT, _SCHEMA, FallbackStore, _to_row
from bench.common import CHANNEL, Context, order_body, order_payload, rate

NAME = "store"


USES_BROKER = False


@dataclass(frozen=True)
class Size:
    # (callers, events) per FallbackStore case; the naive way writes `naive_events`. A case stops
    # early after `max_s` seconds (a slow disk must not stall the suite); rates use what was written.
    cases: tuple[tuple[int, int], ...]
    naive_events: int
    max_s: float = 6.0


FULL = Size(cases=((1, 3_000), (16, 20_000), (256, 100_000)), naive_events=3_000)
SMOKE = Size(cases=((1, 50), (16, 50), (256, 50)), naive_events=50)


def make_events(count: int, prefix: str) -> list[Event]:
    body = order_body(order_payload(0))
    return [Event.accept(CHANNEL, body, message_id=f"{prefix}-{n:09d}") for n in range(count)]


async def store_puts(
    path: Path, events: list[Event], callers: int, max_s: float
) -> tuple[int, float, int]:
    """`callers` concurrent coroutines put `events` (each put awaited) until all are stored or
    `max_s` passed; (events stored, seconds, commits)."""
    store = FallbackStore(path, max_bytes=64 * 1024**3)
    await store.open()
    try:
        queue = iter(events)
        started = time.perf_counter()
        deadline = started + max_s

        async def caller() -> None:
            for event in queue:  # a shared iterator: each event is taken once
                await store.put(event)
                if time.perf_counter() > deadline:
                    return

        await asyncio.gather(*(caller() for _ in range(callers)))
        return store.depth(), time.perf_counter() - started, store.commits
    finally:
        await store.close()


def naive_inserts(path: Path, events: list[Event], max_s: float) -> tuple[int, float]:
    """The common recipe: default journal (DELETE) and synchronous (FULL), commit per event;
    (events stored, seconds)."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(_SCHEMA)
        rows = [_to_row(event) for event in events]
        started = time.perf_counter()
        deadline = started + max_s
        written = 0
        for row in rows:
            conn.execute(_INSERT, row)
            conn.commit()
            written += 1
            if time.perf_counter() > deadline:
                break
        return written, time.perf_counter() - started
    finally:
        conn.close()


async def run(ctx: Context, size: Size) -> list[dict[str, Any]]:
    workdir = ctx.workdir / "store"
    workdir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []

    naive = make_events(size.naive_events, "naive")
    written, seconds = await asyncio.to_thread(
        naive_inserts, workdir / "naive.db", naive, size.max_s
    )
    naive_rate = rate(written, seconds)
    journal = sqlite3.connect(workdir / "naive.db").execute("PRAGMA journal_mode").fetchone()[0]
    results.append(
        {
            "bench": NAME,
            "case": "naive_sqlite",
            "callers": 1,
            "events": written,
            "seconds": round(seconds, 3),
            "events_per_s": naive_rate,
            "journal_mode": journal,
        }
    )
    for callers, count in size.cases:
        events = make_events(count, f"c{callers}")
        written, seconds, commits = await store_puts(
            workdir / f"store-{callers}.db", events, callers, size.max_s
        )
        store_rate = rate(written, seconds)
        results.append(
            {
                "bench": NAME,
                "case": "fallback_store",
                "callers": callers,
                "events": written,
                "seconds": round(seconds, 3),
                "events_per_commit": round(written / commits, 1) if commits else None,
                "events_per_s": store_rate,
                "vs_naive": round(store_rate / naive_rate, 2) if naive_rate else None,
            }
        )
    return results
