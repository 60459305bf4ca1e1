"""CloudEvents on AMQP: the attributes an outbound event carries, and those an inbound message sent.

Binary content mode of the CloudEvents AMQP binding: every attribute but `datacontenttype` is an
AMQP header named `cloudEvents_<attribute>`, the data is the body and `datacontenttype` is the
`content_type` property (`application/json`, as on every event). The values are the canonical
strings of the specification (`time` as RFC 3339 with milliseconds): the binding allows them, and
an AMQP 0-9-1 timestamp would keep whole seconds only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

from ..catalog import Catalog, Channel
from ..events import Event
from ..settings import Settings
from .attributes import (
    SPECVERSION,
    Attributes,
    CloudEventsMode,
    read_attributes,
    rfc3339,
)

# The binding (1.0.2 on) allows `cloudEvents_` and `cloudEvents:` and asks senders for `_`: JMS
# 2.0 clients and message selectors cannot name a property with `:`, and consumers should read
# both. The Python SDK 2.x (`cloudevents.core.bindings.amqp`) writes `_` and reads both, as the
# tests check. Not `ce-`: that is the HTTP binding's prefix, which the SDK's separate `rabbitmq`
# binding (Knative's RabbitMQ broker's convention) also uses, not the CloudEvents AMQP binding's.
AMQP_PREFIX: Final = "cloudEvents_"
AMQP_PREFIXES: Final = (AMQP_PREFIX, "cloudEvents:")
# Where the served AsyncAPI document describes a payload: `dataschema` points there.
SCHEMA_PATH: Final = "/docs/asyncapi.json#/components/schemas/"


def header(attribute: str) -> str:
    return AMQP_PREFIX + attribute


class Stamper:
    """Which channels' events carry CloudEvents attributes, and the headers that carry them."""

    def __init__(
        self,
        catalog: Mapping[str, Channel],
        *,
        mode: CloudEventsMode,
        source: str,
        public_url: str,
    ) -> None:
        self.source = source
        self.channels = frozenset(
            name
            for name, channel in catalog.items()
            if (channel.cloudevents or mode) is CloudEventsMode.binary
        )
        self._schemas = {
            name: dataschema(public_url, catalog[name].payload.title) for name in self.channels
        }

    @classmethod
    def for_settings(cls, catalog: Catalog, settings: Settings) -> Stamper:
        return cls(
            catalog,
            mode=settings.cloudevents,
            source=settings.events_source,
            public_url=settings.public_url,
        )

    def applies_to(self, channel: str) -> bool:
        return channel in self.channels

    def stamp(self, event: Event, sent: Attributes | None = None) -> Event:
        """`event` with its CloudEvents headers after those it has (trace context, say): the
        producer's own attributes when it sent a CloudEvent (`sent`), else the gateway's
        (`source`, acceptance time)."""
        headers = [
            (header("specversion"), SPECVERSION),
            (header("id"), event.message_id),
            (header("source"), sent.source if sent is not None else self.source),
            (header("type"), event.channel),
            (header("time"), (sent and sent.time) or rfc3339(event.timestamp)),
            (header("dataschema"), self._schemas[event.channel]),
        ]
        if sent is not None:
            if sent.subject is not None:
                headers.append((header("subject"), sent.subject))
            headers += [(header(name), value) for name, value in sent.extensions]
        return dataclasses.replace(event, headers=(*event.headers, *headers))


# Stamps nothing: the ingresses' default where no catalog says otherwise (tests of other parts).
NO_CLOUDEVENTS: Final = Stamper({}, mode=CloudEventsMode.off, source="", public_url="")


def dataschema(public_url: str, payload_title: str) -> str:
    """The payload's schema in the AsyncAPI document the gateway at `public_url` serves."""
    return f"{public_url}{SCHEMA_PATH}{payload_title}"


def message_attributes(
    headers: Mapping[str, object] | None, content_type: str | None, channel: str
) -> Attributes | None:
    """The attributes of an inbound AMQP message that is a CloudEvent in binary mode (headers with
    either prefix), checked; None when it has no such header.

    Its `id` is the event's `message_id` and idempotency key, whatever the `message_id` property
    says: AMQP clients stamp a random one on every message that has none (aiormq, and so
    aio-pika and FastStream, do), so a producer that sends CloudEvents cannot be asked to repeat
    its id there."""
    raw: dict[str, object] = {}
    for name, value in (headers or {}).items():
        for prefix in AMQP_PREFIXES:
            if name.startswith(prefix):
                raw[name.removeprefix(prefix)] = value
    if not raw:
        return None
    if content_type is not None:
        raw["datacontenttype"] = content_type
    return read_attributes(raw, channel)
