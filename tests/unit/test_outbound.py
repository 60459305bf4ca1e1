"""The AMQP properties every outbound event is published with (app/outbound/connection.py)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from app.events import PATH_HEADER, DeliveryPath, Event
from app.outbound.connection import event_properties

EVENT = Event(
    channel="orders.created",
    body=b"{}",
    message_id="m-1",
    correlation_id="c-1",
    timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
)


def test_an_event_without_extra_headers_has_only_the_path_header() -> None:
    for path in DeliveryPath:
        properties = event_properties(EVENT, path)
        assert properties.headers == {PATH_HEADER: path.value}
        assert properties.message_id == "m-1"
        assert properties.message_type == "orders.created"


def test_extra_headers_are_written_beside_the_path_header_which_they_cannot_replace() -> None:
    extra = (("cloudEvents_id", "m-1"), ("traceparent", "00-abc"), (PATH_HEADER, "forged"))
    event = dataclasses.replace(EVENT, headers=extra)

    properties = event_properties(event, DeliveryPath.replay)

    assert properties.headers == {
        "cloudEvents_id": "m-1",
        "traceparent": "00-abc",
        PATH_HEADER: "replay",
    }
    # The shared table of events without extra headers is left as it was.
    assert event_properties(EVENT, DeliveryPath.replay).headers == {PATH_HEADER: "replay"}
