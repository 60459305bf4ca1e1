"""Messages whose AMQP properties pamqp cannot decode reach AMQP ingress instead of killing it.

The broker accepts header tables that pamqp (under aiormq) cannot read: a table nested deeper than
Python's recursion limit, a timestamp beyond datetime's range. pamqp raises inside aiormq's frame
reader, the reader dies and takes the connection with it; the message is redelivered on the next
connection and kills that one too: AMQP ingress would stall for every channel, for good.

`install()` wraps pamqp's property decoding once per process: when it fails, the frame (whose length
the frame layer already knows, so the stream stays in step) yields properties holding only what
was decoded before the failure, and headers that carry an `UndecodableProperties`. AMQP ingress
dead-letters such a message with the reason. A producer cannot forge the marker: it is a Python
object, not a value the wire can carry.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pamqp.base import BasicProperties

MARKER_HEADER = "x-breakwater-undecodable"
_DECODE_ERRORS = (RecursionError, ValueError, OverflowError, struct.error, UnicodeDecodeError)


@dataclass(frozen=True)
class UndecodableProperties:
    reason: str


def undecodable(headers: dict[str, Any] | None) -> UndecodableProperties | None:
    """The marker `install()` put in a message's headers, if it did."""
    marker = (headers or {}).get(MARKER_HEADER)
    return marker if isinstance(marker, UndecodableProperties) else None


def install() -> None:
    if getattr(BasicProperties.unmarshal, "_breakwater_tolerant", False):
        return
    strict = BasicProperties.unmarshal

    def tolerant(self: BasicProperties, flags: int, data: bytes) -> None:
        try:
            strict(self, flags, data)
        except _DECODE_ERRORS as exc:
            reason = f"AMQP properties cannot be decoded: {type(exc).__name__}: {exc}"[:300]
            # Basic.Properties, the only subclass, has `headers`; the base does not declare it.
            setattr(self, "headers", {MARKER_HEADER: UndecodableProperties(reason)})  # noqa: B010

    tolerant._breakwater_tolerant = True  # type: ignore[attr-defined]
    BasicProperties.unmarshal = tolerant  # type: ignore[method-assign]
