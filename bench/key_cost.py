"""What idempotency keys cost inside the gateway's process, without HTTP, AMQP or a broker.

The HTTP benchmark's keyed-against-keyless rounds move by 20 % from one round to the next on a
busy two-core machine, more than the keys cost. This one isolates them: the real
`IdempotentPublisher` over a real `FallbackStore` file, in front of a stand-in for the
`ResilientPublisher` that answers at once, `published` (the key goes to the store's next write of
keys) or `stored` (the event, with its key, goes into the store's group commit, as the breaker-open
path does). 256 callers submit events of the benchmark's order body, every one keyed or none; the
process's CPU time (both threads: the event loop and the store's writer) per event is compared,
keyed against keyless, interleaved (A B B A A B), the median of the rounds.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.events import Event
from app.ingress.idempotency import IdempotentPublisher
from app.outbound.publisher import Outcome
from app.store.fallback import FallbackStore, RememberedKey
from bench.common import CHANNEL, Context, order_body, order_payload, rate
from bench.forwarding import combine_repetitions, compared, interleave

NAME = "keys"
USES_BROKER = False
CALLERS = 256
OUTCOMES = (Outcome.published, Outcome.stored)
# Each outcome's two cases, interleaved between themselves (keyless first).
INTERLEAVED = (
    ("published_keyless", "published_keyed"),
    ("stored_keyless", "stored_keyed"),
)


@dataclass(frozen=True)
class Size:
    events: int
    repetitions: int


FULL = Size(events=60_000, repetitions=3)
SMOKE = Size(events=300, repetitions=1)


class _AnswersAtOnce:
    """Stands in for the ResilientPublisher: `published` costs nothing, `stored` costs what the
    breaker-open path costs in the store (a queued put, with the key, awaited to its commit)."""

    def __init__(self, store: FallbackStore, outcome: Outcome) -> None:
        self.store = store
        self.outcome = outcome

    async def submit(self, event: Event, key: RememberedKey | None = None) -> Outcome:
        if self.outcome is Outcome.stored:
            await self.store.put_nowait(event, key)
        return self.outcome


async def _one_run(path: Path, outcome: Outcome, keyed: bool, size: Size) -> dict[str, Any]:
    store = FallbackStore(path, max_bytes=64 * 1024**3)
    await store.open()
    body = order_body(order_payload(0))
    # Events are made before the clock starts: their ids and stamps are the ingress' work.
    events = [
        Event.accept(CHANNEL, body, message_id=f"{path.stem}-{n}" if keyed else None)
        for n in range(size.events)
    ]
    window = IdempotentPublisher(
        _AnswersAtOnce(store, outcome),  # type: ignore[arg-type]
        store,
        ttl_s=86_400,
        max_keys=100_000,
    )
    try:
        queue = iter(events)

        async def caller() -> None:
            for event in queue:  # a shared iterator: each event is taken once
                await window.submit(event, keyed=keyed)

        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(CALLERS)))
        await window.keys_written()  # the published events' keys are part of their cost
        cpu, seconds = time.process_time() - cpu, time.perf_counter() - started
    finally:
        await store.close()
    return {
        "bench": NAME,
        "case": f"{outcome.value}_{'keyed' if keyed else 'keyless'}",
        "events": size.events,
        "events_per_s": rate(size.events, seconds),
        "cpu_us_per_event": round(cpu * 1e6 / size.events, 2),
        "idempotency_keys": keyed,
    }


async def run(ctx: Context, size: Size) -> list[dict[str, Any]]:
    workdir = ctx.workdir / "keys"
    workdir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    ratios: dict[str, Any] = {"bench": NAME, "case": "ratios", "callers": CALLERS}
    for outcome, (keyless, keyed) in zip(OUTCOMES, INTERLEAVED, strict=True):
        order = interleave((keyless, keyed), size.repetitions)
        runs: dict[str, list[dict[str, Any]]] = {keyless: [], keyed: []}
        for position, case in enumerate(order, 1):
            path = workdir / f"{case}-{len(runs[case]) + 1}.db"
            row = await _one_run(path, outcome, case == keyed, size)
            runs[case].append({"position": position, **row})
        for case in (keyless, keyed):
            results.append(
                combine_repetitions(runs[case], mean=("events_per_s", "cpu_us_per_event"))
            )
        cpu = {case: [r["cpu_us_per_event"] for r in runs[case]] for case in runs}
        # CPU per event, keyed against keyless (above 1: what the keys add, as a factor of the
        # little the rest of this path costs), and the microseconds the keys add (the median of
        # the rounds): the figure to set beside a request's CPU in the HTTP benchmark.
        name = f"{outcome.value}_keyed_cpu_vs_keyless"
        ratios |= compared(name, order, keyless, cpu[keyless], keyed, cpu[keyed])
        added = [k - n for n, k in zip(cpu[keyless], cpu[keyed], strict=True)]
        ratios[f"{outcome.value}_keys_add_cpu_us_per_event"] = round(statistics.median(added), 2)
    results.append(ratios)
    return results
