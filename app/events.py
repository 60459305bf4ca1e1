"""The envelope every accepted event travels in, from ingress through the store to the exchange."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class DeliveryPath(StrEnum):
    """Value of the `x-breakwater-path` header: how the event reached the exchange."""

    direct = "direct"
    replay = "replay"


PATH_HEADER = "x-breakwater-path"
ERROR_HEADER = "x-breakwater-error"
SOURCE_QUEUE_HEADER = "x-breakwater-queue"  # on a dead-letter copy: the queue it came from
CONTENT_TYPE = "application/json"
# What a producer-given id (message_id, correlation_id) may be: they become AMQP short strings
# (<= 255 bytes), and printable ASCII keeps them loggable.
ID_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")
# An event's extra AMQP headers, (name, value) in the order they are written.
Headers = tuple[tuple[str, str], ...]


def new_id() -> str:
    """A 32-hex-digit id that sorts by creation time (a millisecond clock, then 80 random bits).

    Time-ordered ids keep the store's unique index append-mostly: random uuid4 ids touch a
    different index page per row and halve the store's write rate.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def utc_now() -> datetime:
    # AMQP timestamps have one-second resolution on the wire; keep milliseconds for the store's order.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True, slots=True)
class Event:
    """A validated event: `body` is the normalised JSON of its channel's model.

    `headers` are AMQP headers the event carries to the exchange beside the gateway's own
    (`x-breakwater-path`): its CloudEvents attributes, for instance. They are fixed when the event
    is accepted, kept with it in the store and written on every publish, direct or replayed, so a
    replay after a restart carries exactly what a direct publish would have.
    """

    channel: str
    body: bytes
    message_id: str
    correlation_id: str
    timestamp: datetime
    headers: Headers = ()

    @classmethod
    def accept(
        cls,
        channel: str,
        body: bytes,
        *,
        message_id: str | None = None,
        correlation_id: str | None = None,
        headers: Headers = (),
    ) -> Event:
        """Stamp a freshly validated payload; missing ids are generated here, once, so retries and
        replays carry the same ones."""
        return cls(
            channel=channel,
            body=body,
            message_id=message_id or new_id(),
            correlation_id=correlation_id or new_id(),
            timestamp=utc_now(),
            headers=headers,
        )
