"""One event type of a catalog."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .model import EventModel


@dataclass(frozen=True)
class Channel:
    """One event type: its routing key on `breakwater.events`, its model, and how to describe it."""

    name: str
    model: type[EventModel]
    summary: str
    example: dict[str, Any] = field(default_factory=dict)

    @property
    def inbound_queue(self) -> str:
        return f"breakwater.in.{self.name}"
