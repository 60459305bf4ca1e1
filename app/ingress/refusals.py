"""What an ingress answers when it does not accept an event: the status, the reason label of
`breakwater_events_rejected_total`, the detail and when to retry. One mapping for a single event
and for each event of a batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..outbound.connection import Unroutable
from ..store.fallback import StoreError, StoreFull
from .idempotency import KeyConflict, KeyInFlight

RETRY_AFTER_STORE_FULL_S: Final = 30
RETRY_AFTER_STORE_BROKEN_S: Final = 5


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why one event was not accepted, as a single request would have been answered."""

    status: int
    reason: str  # the `reason` label of breakwater_events_rejected_total
    detail: str | list[dict[str, Any]]
    retry_after_s: int | None = None

    def as_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"status": self.status, "detail": self.detail}
        if self.retry_after_s is not None:
            error["retry_after"] = self.retry_after_s
        return error


def refusal(exc: Exception) -> Refusal:
    """The answer to what `IdempotentPublisher.submit` raised (re-raises anything else)."""
    if isinstance(exc, KeyConflict):
        return Refusal(422, "idempotency_conflict", str(exc))
    if isinstance(exc, KeyInFlight):
        return Refusal(409, "idempotency_in_flight", str(exc), exc.retry_after_s)
    if isinstance(exc, StoreFull):
        return Refusal(503, "store_full", str(exc), RETRY_AFTER_STORE_FULL_S)
    if isinstance(exc, StoreError):
        return Refusal(503, "store_unavailable", str(exc), RETRY_AFTER_STORE_BROKEN_S)
    if isinstance(exc, Unroutable):
        return Refusal(502, "unroutable", f"the broker could not route the event: {exc}")
    raise exc
