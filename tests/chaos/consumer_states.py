"""Which replica consumes an inbound queue, and whether first deliveries kept their order."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from tests.integration.gateway_process import GatewayProcess

INBOUND_QUEUE = "breakwater.in.orders.created"


def consumer_state(gateway: GatewayProcess, queue: str = INBOUND_QUEUE) -> str | None:
    """`breakwater_inbound_consumer`: this gateway's state for `queue` (None: not consuming it)."""
    text = httpx.get(f"{gateway.base_url}/metrics", timeout=5).text
    prefix = f'breakwater_inbound_consumer{{queue="{queue}",state="'
    for line in text.splitlines():
        if line.startswith(prefix) and line.endswith(" 1.0"):
            return line[len(prefix) :].split('"', 1)[0]
    return None


def inversions(ids: Sequence[str], arrivals: Sequence[tuple[str, float]]) -> int:
    """First deliveries that arrive after a later-numbered event's first delivery."""
    rank = {message_id: n for n, message_id in enumerate(ids)}
    seen: set[str] = set()
    highest, inverted = -1, 0
    for message_id, _ in sorted(arrivals, key=lambda arrival: arrival[1]):
        if message_id in seen or message_id not in rank:
            continue
        seen.add(message_id)
        if rank[message_id] < highest:
            inverted += 1
        highest = max(highest, rank[message_id])
    return inverted
