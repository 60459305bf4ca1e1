"""6. Scale: the gateway's RSS and its start-to-ready time (process start -> /readyz 200) with
1,000,000 events in its store, against an empty store.

The big store is written once with the store's own schema, statements and pragmas (executemany in
large transactions, ~1 KiB bodies) and cached in bench/.cache; each run works on a copy, because the
gateway starts replaying it at once. Each store is started twice (start, then restart); RSS is read
from /proc/<pid>/status at ready and sampled while the gateway runs for `settle_s`.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.store.fallback import _INSERT, _SCHEMA, _connect_writer
from bench.common import CACHE_DIR, CHANNEL, Context, order_body, order_payload

NAME = "scale"
CHUNK = 20_000


@dataclass(frozen=True)
class Size:
    events: int
    settle_s: float
    starts: int = 2
    cache: bool = True


FULL = Size(events=1_000_000, settle_s=4)
SMOKE = Size(events=200, settle_s=0.3, starts=1, cache=False)


def build_store(path: Path, events: int) -> float:
    """A real store file holding `events` rows of CHANNEL; returns seconds taken."""
    started = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = _connect_writer(path, "NORMAL")
    body = order_body(order_payload(3))
    base_ms = int(time.time() * 1000)
    try:
        for start in range(0, events, CHUNK):
            rows = [
                (CHANNEL, f"{base_ms + n:012x}scale{n:015d}", f"corr{n:028d}", base_ms, body)
                for n in range(start, min(events, start + CHUNK))
            ]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        count = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        assert count == events, (count, events)
    finally:
        conn.close()
    return time.monotonic() - started


def cached_store(events: int, use_cache: bool, scratch: Path) -> tuple[Path, float | None]:
    """(path of a pristine store with `events` rows, seconds spent building it or None)."""
    schema = hashlib.sha256((_SCHEMA + _INSERT).encode()).hexdigest()[:10]
    path = (CACHE_DIR if use_cache else scratch) / f"store-{events}-{schema}.db"
    if use_cache and path.exists():
        return path, None
    return path, build_store(path, events)


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


async def _measure(ctx: Context, label: str, store: Path | None, size: Size) -> dict[str, Any]:
    gateway = ctx.gateway(f"scale-{label}", env={"BREAKWATER_STORE_MAX_BYTES": str(64 * 1024**3)})
    db = gateway.workdir / f"scale-{label}.db"
    if store is not None:
        await asyncio.to_thread(_copy, store, db)
    ready_s: list[float] = []
    rss_ready: list[int] = []
    rss_peak = 0
    depth = None
    for start in range(size.starts):
        ready = await asyncio.to_thread(gateway.start, until="ready", timeout=120)
        ready_s.append(round(ready, 3))
        rss_ready.append(gateway.rss_kib() or 0)
        if start == 0:
            gateway.start_profile(f"scale-{label}")
        end = time.monotonic() + size.settle_s
        while time.monotonic() < end:
            rss_peak = max(rss_peak, gateway.rss_kib() or 0)
            await asyncio.sleep(0.1)
        depth = gateway.readyz().get("store_depth")
        gateway.stop()
    return {
        "bench": NAME,
        "case": label,
        "stored_events": size.events if store is not None else 0,
        "store_file_mib": round(db.stat().st_size / 2**20, 1) if db.exists() else 0,
        "start_to_ready_s": ready_s[0],
        "restart_to_ready_s": ready_s[-1],
        "rss_at_ready_mib": round(rss_ready[-1] / 1024, 1),
        "rss_peak_mib": round(rss_peak / 1024, 1),
        "store_depth_at_end": depth,
    }


async def run(ctx: Context, size: Size) -> list[dict[str, Any]]:
    source, built_s = await asyncio.to_thread(
        cached_store, size.events, size.cache, ctx.workdir / "scale-source"
    )
    empty = await _measure(ctx, "empty", None, size)
    full = await _measure(ctx, "backlog", source, size)
    full["store_built_s"] = None if built_s is None else round(built_s, 1)
    return [
        empty,
        full,
        {
            "bench": NAME,
            "case": "growth",
            "stored_events": size.events,
            "rss_growth_mib": round(full["rss_peak_mib"] - empty["rss_peak_mib"], 1),
            "rss_growth_at_ready_mib": round(
                full["rss_at_ready_mib"] - empty["rss_at_ready_mib"], 1
            ),
            "restart_to_ready_s": full["restart_to_ready_s"],
            "restart_to_ready_empty_s": empty["restart_to_ready_s"],
        },
    ]
