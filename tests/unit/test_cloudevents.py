"""CloudEvents attributes, per-channel opt-in and the outbound headers (app/cloudevents/), without
a broker; the integration tests (tests/integration/test_cloudevents.py) run them end to end."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.catalog import Catalog, CatalogError, Channel
from app.catalog.declarative import load_file
from app.catalog.default import DEFAULT_CATALOG, OrderCancelled
from app.cloudevents.attributes import (
    MAX_ATTRIBUTES_BYTES,
    CloudEventsMode,
    InvalidCloudEvent,
    read_attributes,
)
from app.cloudevents.stamping import Stamper
from app.documents.asyncapi import document_for
from app.events import Event
from app.settings import Settings

VALID = {"specversion": "1.0", "id": "e-1", "source": "/shop", "type": "orders.created"}


def problems(**changes: Any) -> list[str]:
    raw = {**VALID, **changes}
    with pytest.raises(InvalidCloudEvent) as refused:
        read_attributes({k: v for k, v in raw.items() if v is not ...}, "orders.created")
    return refused.value.problems


def test_extensions_keep_their_canonical_string_form() -> None:
    attributes = read_attributes(
        {**VALID, "flag": True, "count": -7, "note": "", "subject": "s", "time": None},
        "orders.created",
    )
    assert attributes.extensions == (("flag", "true"), ("count", "-7"), ("note", ""))
    assert attributes.subject == "s"
    assert attributes.time is None  # null is an absent attribute


def test_an_amqp_timestamp_becomes_an_rfc3339_time() -> None:
    stamp = datetime(2026, 12, 4, 10, 11, 12, tzinfo=UTC)
    assert read_attributes({**VALID, "time": stamp}, "orders.created").time == (
        "2026-12-04T10:11:12.000Z"
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"id": ...}, "id is missing"),
        ({"id": 7}, "id must be a non-empty string"),
        ({"source": "has space"}, "source must be a URI-reference"),
        ({"specversion": "0.3"}, "specversion must be 1.0, not '0.3'"),
        ({"time": "2026-12-04 10:11:12"}, "time must be an RFC 3339 timestamp"),
        ({"dataschema": "relative/path"}, "dataschema must be an absolute URI"),
        ({"count": 2**31}, "extension count must be a string, a boolean or a 32-bit integer"),
        ({"text": "\ud800"}, "extension text must be"),
        ({"data": "x"}, "'data' is not an attribute name"),
        ({"big": "x" * MAX_ATTRIBUTES_BYTES}, "more than 4096"),
    ],
)
def test_each_malformed_attribute_is_named(changes: dict[str, Any], expected: str) -> None:
    assert any(expected in problem for problem in problems(**changes)), problems(**changes)


def test_every_problem_is_reported_at_once() -> None:
    found = problems(id=..., source=..., type="orders.cancelled")
    assert found == [
        "id is missing",
        "source is missing",
        "type 'orders.cancelled' names another channel than the path's ('orders.created')",
    ]


def test_a_python_channel_opts_in_or_out_and_a_wrong_mode_is_a_catalog_problem() -> None:
    example = DEFAULT_CATALOG["orders.cancelled"].example
    channel = Channel("a.b", "A.", model=OrderCancelled, examples=[example], cloudevents="binary")
    assert channel.cloudevents is CloudEventsMode.binary
    with pytest.raises(CatalogError, match="cloudevents must be binary or off, not 'structured'"):
        Channel("a.b", "A.", model=OrderCancelled, examples=[example], cloudevents="structured")  # type: ignore[arg-type]


def write_catalog(tmp_path: Path, cloudevents: str) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "channels:\n"
        "  - name: parcels.sent\n"
        "    summary: A parcel left.\n"
        "    payload: {type: object}\n"
        "    examples: [{}]\n"
        f"    cloudevents: {cloudevents}\n"
    )
    return path


@pytest.mark.parametrize(
    ("written", "mode"), [("binary", CloudEventsMode.binary), ("off", CloudEventsMode.off)]
)
def test_a_catalog_file_opts_in_or_out_even_with_yamls_unquoted_off(
    tmp_path: Path, written: str, mode: CloudEventsMode
) -> None:
    catalog = load_file(write_catalog(tmp_path, written))
    assert catalog["parcels.sent"].cloudevents is mode


def test_a_catalog_file_with_another_mode_is_refused_with_its_place(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="/channels/0/cloudevents"):
        load_file(write_catalog(tmp_path, "structured"))


def test_the_stamper_follows_the_setting_unless_the_channel_says_otherwise() -> None:
    example = DEFAULT_CATALOG["orders.cancelled"].example
    catalog = Catalog(
        [
            Channel(name, "A.", model=OrderCancelled, examples=[example], cloudevents=mode)
            for name, mode in (("a.in", "binary"), ("a.out", "off"), ("a.default", None))
        ]
    )
    on = Stamper(catalog, mode=CloudEventsMode.binary, source="/s", public_url="http://gw")
    off = Stamper(catalog, mode=CloudEventsMode.off, source="/s", public_url="http://gw")
    assert on.channels == {"a.in", "a.default"}
    assert off.channels == {"a.in"}


def test_stamped_headers_carry_the_gateways_attributes_and_dataschema_resolves() -> None:
    stamper = Stamper(
        DEFAULT_CATALOG, mode=CloudEventsMode.binary, source="urn:gw", public_url="https://gw"
    )
    document = document_for(DEFAULT_CATALOG, Settings(_env_file=None)).to_jsonable()
    for name in DEFAULT_CATALOG:
        event = Event.accept(name, b"{}", message_id="m-1")
        headers = dict(stamper.stamp(event).headers)
        assert headers == {
            "cloudEvents_specversion": "1.0",
            "cloudEvents_id": "m-1",
            "cloudEvents_source": "urn:gw",
            "cloudEvents_type": name,
            "cloudEvents_time": headers["cloudEvents_time"],
            "cloudEvents_dataschema": headers["cloudEvents_dataschema"],
        }
        assert datetime.fromisoformat(headers["cloudEvents_time"]) == event.timestamp
        url, _, pointer = headers["cloudEvents_dataschema"].partition("#")
        assert url == "https://gw/docs/asyncapi.json"
        node: Any = document
        for part in pointer.strip("/").split("/"):
            node = node[part]
        assert json.dumps(node)  # the schema consumers receive, in the served document


@pytest.mark.parametrize("mode", list(CloudEventsMode))
def test_the_asyncapi_document_lists_the_headers_and_requires_them_when_on(
    mode: CloudEventsMode,
) -> None:
    document = document_for(DEFAULT_CATALOG, Settings(_env_file=None, cloudevents=mode))
    headers = document.to_jsonable()["components"]["messages"]["OrderCreated"]["headers"]
    names = {f"cloudEvents_{name}" for name in ("specversion", "id", "source", "type", "time")}
    assert names <= set(headers["properties"])
    assert headers["properties"]["cloudEvents_type"]["const"] == "orders.created"
    assert (names <= set(headers["required"])) is (mode is CloudEventsMode.binary)


def test_stamping_keeps_the_headers_an_event_has() -> None:
    stamper = Stamper(
        DEFAULT_CATALOG, mode=CloudEventsMode.binary, source="urn:gw", public_url="https://gw"
    )
    event = dataclasses.replace(
        Event.accept("orders.created", b"{}"), headers=(("traceparent", "00-1"),)
    )
    stamped = stamper.stamp(event)
    assert stamped.headers[0] == ("traceparent", "00-1")
    assert dict(stamped.headers)["cloudEvents_id"] == event.message_id
