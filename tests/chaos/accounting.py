"""The ACCOUNTING line every chaos scenario ends with: accepted, delivered, duplicated, lost, recovery.

`accepted` are the ids the gateway took responsibility for (HTTP 202, or a preloaded inbound
message that must be forwarded); `deliveries` are (message_id, monotonic arrival time) pairs as a
consumer bound to `breakwater.events` saw them. Recovery time runs from the end of the fault to
the first arrival of the last accepted event (0 when everything was there before the fault ended).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Accounting:
    scenario: str
    accepted: int
    delivered: int  # unique accepted ids seen by the consumer
    duplicated: int  # extra copies of accepted ids
    lost: int
    recovery_s: float | None  # None: nothing to recover, or not everything arrived
    unconfirmed_delivered: int = 0  # ids seen whose answer was not a 202 (in flight at a kill)
    missing_sample: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        scenario: str,
        accepted: Iterable[str],
        deliveries: Iterable[tuple[str, float]],
        *,
        fault_end: float | None,
        **extra: Any,
    ) -> Accounting:
        wanted = set(accepted)
        copies: Counter[str] = Counter()
        first: dict[str, float] = {}
        for message_id, received in deliveries:
            copies[message_id] += 1
            if message_id not in first or received < first[message_id]:
                first[message_id] = received
        delivered = wanted & first.keys()
        missing = wanted - delivered
        recovery: float | None = None
        if not missing and delivered and fault_end is not None:
            recovery = round(max(0.0, max(first[i] for i in delivered) - fault_end), 3)
        return cls(
            scenario=scenario,
            accepted=len(wanted),
            delivered=len(delivered),
            duplicated=sum(copies[i] - 1 for i in delivered),
            lost=len(missing),
            recovery_s=recovery,
            unconfirmed_delivered=len(first.keys() - wanted),
            missing_sample=sorted(missing)[:5],
            extra=extra,
        )

    def report(self) -> str:
        line = "ACCOUNTING " + json.dumps(
            {
                "scenario": self.scenario,
                "accepted": self.accepted,
                "delivered": self.delivered,
                "duplicated": self.duplicated,
                "lost": self.lost,
                "recovery_s": self.recovery_s,
                "unconfirmed_delivered": self.unconfirmed_delivered,
                **self.extra,
            },
            sort_keys=False,
        )
        print(line, flush=True)
        return line

    def assert_nothing_lost(self) -> None:
        assert self.accepted > 0, f"{self.scenario}: no event was accepted, nothing was tested"
        assert self.lost == 0, (
            f"{self.scenario}: {self.lost} of {self.accepted} accepted events lost,"
            f" e.g. {self.missing_sample}"
        )
        assert self.delivered == self.accepted
