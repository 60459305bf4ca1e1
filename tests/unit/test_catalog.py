"""Catalogs users declare: a YAML/JSON file of JSON Schemas, or a Python object of models.

A catalog loads whole or not at all, with every problem named (channel, JSON Pointer, what); a
loaded channel validates exactly with its schema and keeps every digit of a number.
"""

from __future__ import annotations

import json
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from app.catalog import Catalog, CatalogError, Channel, EventModel, InvalidPayload, load_catalog
from app.catalog.default import DEFAULT_CATALOG
from app.operations.cli import cli

SHIPMENT = {
    "name": "shipments.dispatched",
    "summary": "A shipment left the warehouse.",
    "payload": {
        "type": "object",
        "additionalProperties": False,
        "required": ["shipment_id", "weight_kg", "lines"],
        "properties": {
            "shipment_id": {"type": "string", "minLength": 1},
            "weight_kg": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.001},
            "lines": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/line"}},
        },
        "$defs": {
            "line": {
                "type": "object",
                "required": ["sku"],
                "properties": {"sku": {"type": "string"}},
            }
        },
    },
    "examples": [{"shipment_id": "s-1", "weight_kg": 2.35, "lines": [{"sku": "A"}]}],
}


def write(tmp_path: Path, channels: list[dict[str, Any]], name: str = "catalog.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"channels": channels}, sort_keys=False))
    return path


def problems_of(path: Path | str) -> list[str]:
    with pytest.raises(CatalogError) as raised:
        load_catalog(str(path))
    return [str(problem) for problem in raised.value.problems]


def test_a_declared_channel_validates_with_its_schema_and_refs_are_inlined(tmp_path: Path) -> None:
    catalog = load_catalog(str(write(tmp_path, [SHIPMENT])))

    channel = catalog["shipments.dispatched"]
    assert list(catalog) == ["shipments.dispatched"]
    assert channel.inbound_queue == "breakwater.in.shipments.dispatched"
    assert channel.payload.title == "ShipmentsDispatched"
    schema = channel.payload.json_schema()
    assert schema["properties"]["lines"]["items"]["required"] == ["sku"]
    assert "$ref" not in json.dumps(schema)
    with pytest.raises(InvalidPayload) as raised:
        channel.payload.validate(b'{"shipment_id": "", "weight_kg": 0, "lines": [{}], "x": 1}')
    pointers = {error["pointer"] for error in raised.value.errors}
    assert pointers == {"", "/shipment_id", "/weight_kg", "/lines/0"}, raised.value.errors
    assert "/lines/0: " in raised.value.reason


def test_numbers_keep_every_digit_through_a_declared_channel(tmp_path: Path) -> None:
    channel = load_catalog(str(write(tmp_path, [SHIPMENT])))["shipments.dispatched"]
    body = b'{"shipment_id":"s","weight_kg":0.100,"lines":[{"sku":"A"}]}'

    out = channel.payload.validate(body)

    assert out == body
    assert json.loads(out, parse_float=Decimal)["weight_kg"] == Decimal("0.100")
    big = b'{"shipment_id":"s","weight_kg":12345678901234567890.123,"lines":[{"sku":"A"}]}'
    assert channel.payload.validate(big) == big
    with pytest.raises(InvalidPayload, match="multiple"):
        channel.payload.validate(b'{"shipment_id":"s","weight_kg":0.0001,"lines":[{"sku":"A"}]}')
    for bad in (b'{"weight_kg": NaN}', b"\xff", b"[", "{}".encode("utf-16")):
        with pytest.raises(InvalidPayload) as raised:
            channel.payload.validate(bad)
        assert raised.value.errors[0]["type"] == "json_invalid"


def test_formats_are_checked(tmp_path: Path) -> None:
    channel = {
        "name": "customers.registered",
        "summary": "A customer signed up.",
        "payload": {
            "type": "object",
            "properties": {"email": {"type": "string", "format": "email"}},
        },
        "examples": [{"email": "a@example.org"}],
    }
    payload = load_catalog(str(write(tmp_path, [channel])))["customers.registered"].payload

    with pytest.raises(InvalidPayload, match="email"):
        payload.validate(b'{"email": "not an address"}')


def test_every_problem_of_a_broken_catalog_is_named_with_its_pointer(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    channels = [
        {**SHIPMENT, "colour": "blue"},
        {**SHIPMENT, "name": "Orders Created"},
        {**SHIPMENT, "name": "bad.schema", "payload": {"type": "strnig"}},
        {**SHIPMENT, "name": "bad.example", "examples": [{"shipment_id": "s"}]},
        {**SHIPMENT, "name": "bad.ref", "payload": {"$ref": "schemas/missing.json"}},
        {**SHIPMENT, "name": "no.file", "payload": None, "payloadFile": "schemas/none.json"},
        {**SHIPMENT, "name": "outside", "payload": None, "payloadFile": "../x.json"},
        {
            **SHIPMENT,
            "name": "old.draft",
            "payload": {"$schema": "http://json-schema.org/draft-07/schema#"},
        },
        {"name": "no.summary", "payload": {}, "examples": [{}]},
        SHIPMENT,
        SHIPMENT,
    ]
    for channel in channels:
        if channel.get("payload", ...) is None:
            del channel["payload"]

    found = problems_of(write(tmp_path, channels))

    expected = [
        "shipments.dispatched: #/channels/0/colour: unknown key",
        "Orders Created: #/channels/1/name: invalid name",
        "bad.schema: #/channels/2/payload/type: invalid schema",
        "bad.example: #/channels/3/examples/0: fails its schema",
        "bad.ref: #/channels/4/payload: unresolvable $ref",
        "no.file: #/channels/5/payloadFile: cannot read",
        "outside: #/channels/6/payloadFile:",
        "old.draft: #/channels/7/payload/$schema: only JSON Schema draft 2020-12",
        "no.summary: #/channels/8/summary: Field required",
    ]
    for start in expected:
        assert any(line.startswith(start) for line in found), (start, found)
    # Each line once, and the example that misses two fields gets a line for each.
    assert len(found) == len(expected) + 1, found


def test_duplicate_names_are_a_problem_at_the_second_place(tmp_path: Path) -> None:
    found = problems_of(write(tmp_path, [SHIPMENT, SHIPMENT]))

    assert found == ["shipments.dispatched: #/channels/0/name: 2 channels have this name"]


def test_a_schema_file_beside_the_catalog_and_refs_between_files(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "common.json").write_text(
        json.dumps({"$defs": {"id": {"type": "string", "pattern": "^s-[0-9]+$"}}})
    )
    (tmp_path / "schemas" / "shipment.yaml").write_text(
        textwrap.dedent(
            """\
            type: object
            required: [shipment_id]
            properties:
              shipment_id: {$ref: "common.json#/$defs/id"}
            """
        )
    )
    channel = {
        "name": "shipments.dispatched",
        "summary": "A shipment left.",
        "payloadFile": "schemas/shipment.yaml",
        "examples": [{"shipment_id": "s-1"}],
    }
    payload = load_catalog(str(write(tmp_path, [channel])))["shipments.dispatched"].payload

    assert payload.json_schema()["properties"]["shipment_id"]["pattern"] == "^s-[0-9]+$"
    with pytest.raises(InvalidPayload, match="does not match"):
        payload.validate(b'{"shipment_id": "x"}')


def test_a_recursive_schema_is_refused_rather_than_half_documented(tmp_path: Path) -> None:
    tree = {
        "$defs": {"node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}}}},
        "$ref": "#/$defs/node",
    }
    found = problems_of(write(tmp_path, [{**SHIPMENT, "payload": tree, "examples": [{}]}]))

    assert found == [
        "shipments.dispatched: #/channels/0/payload: a recursive $ref cannot be inlined: not supported"
    ]


def test_a_json_catalog_and_unparseable_files(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"channels": [SHIPMENT]}))
    assert list(load_catalog(str(path))) == ["shipments.dispatched"]

    path.write_text("{")
    [problem] = problems_of(path)
    assert problem.startswith("-: #: catalog.json is not valid JSON")
    assert problems_of(tmp_path / "absent.yaml")[0].startswith("-: #: cannot read")
    (tmp_path / "empty.yaml").write_text("channels: []\n")
    assert problems_of(tmp_path / "empty.yaml") == [
        "-: #/channels: List should have at least 1 item after validation, not 0"
    ]


class Parcel(EventModel):
    parcel_id: str


PYTHON_CATALOG = Catalog(
    [Channel(name="parcels.sent", model=Parcel, summary="Sent.", examples=[{"parcel_id": "p"}])]
)
NOT_A_CATALOG = {"parcels.sent": Parcel}


def test_a_python_catalog_by_module_and_attribute() -> None:
    here = f"{__name__}:PYTHON_CATALOG"
    assert sys.modules[__name__]

    catalog = load_catalog(here)

    assert catalog is PYTHON_CATALOG
    assert catalog.source == here
    assert problems_of(f"{__name__}:NOT_A_CATALOG") == [
        f"-: #: {__name__}:NOT_A_CATALOG is a dict, not a breakwater Catalog"
    ]
    assert problems_of("no_such_module_here:catalog")[0].startswith("-: #: cannot load")
    assert problems_of("no-such-entry-point")[0].startswith(
        "-: #: no catalog file, module:attribute or entry point named 'no-such-entry-point'"
    )


def test_a_python_catalog_is_checked_like_a_file() -> None:
    with pytest.raises(CatalogError) as raised:
        Catalog(
            [
                Channel(name="parcels.sent", model=Parcel, summary="", examples=[{}]),
                Channel(name="x", schema={"type": "object"}, summary="x", examples=[{}]),
                Channel(name="x", schema={"type": "object"}, summary="x", examples=[{}]),
            ]
        )
    found = [str(problem) for problem in raised.value.problems]

    assert "parcels.sent: #/summary: a one-line summary is required" in found
    assert any(line.startswith("parcels.sent: #/examples/0/parcel_id: fails") for line in found)
    assert "x: #/name: 2 channels have this name" in found


def test_the_default_catalog_is_the_contract_and_loads_when_nothing_is_set() -> None:
    assert load_catalog(None) is DEFAULT_CATALOG
    assert load_catalog("default") is DEFAULT_CATALOG
    assert list(DEFAULT_CATALOG) == ["orders.created", "orders.cancelled", "payments.captured"]


def test_catalog_validate_prints_one_line_per_problem(tmp_path: Path) -> None:
    runner = CliRunner()
    good = write(tmp_path, [SHIPMENT])
    bad = write(tmp_path, [{**SHIPMENT, "examples": [{}]}, {**SHIPMENT, "name": "B"}], "bad.yaml")

    ok = runner.invoke(cli, ["catalog", "validate", str(good)])
    broken = runner.invoke(cli, ["catalog", "validate", str(bad)])

    assert ok.exit_code == 0, ok.output
    assert "1 channel, no problems (shipments.dispatched)" in ok.output
    assert broken.exit_code == 1
    lines = broken.output.splitlines()
    assert len(lines) == 4, lines  # three required fields missing in /examples/0, one bad name
    assert all(line.startswith(f"{bad}: ") for line in lines)


def test_asyncapi_command_documents_any_catalog(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"

    result = CliRunner().invoke(
        cli,
        ["asyncapi", "--catalog", str(write(tmp_path, [SHIPMENT])), "--out", str(out), "--json"],
    )

    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert list(document["channels"]) == [
        "shipmentsDispatched",
        "shipmentsDispatchedInbound",
        "deadLetters",
    ]
    schema = document["components"]["schemas"]["ShipmentsDispatched"]
    assert schema["properties"]["weight_kg"]["multipleOf"] == 0.001


def test_a_declared_catalogs_document_passes_the_reference_parser(tmp_path: Path) -> None:
    from tests.unit.test_asyncapi import validate

    out = tmp_path / "asyncapi.yaml"
    deprecated = {**SHIPMENT, "name": "shipments.dispatched.v0", "deprecated": True}
    catalog = write(tmp_path, [SHIPMENT, deprecated])
    generated = CliRunner().invoke(cli, ["asyncapi", "--catalog", str(catalog), "--out", str(out)])
    assert generated.exit_code == 0, generated.output

    result = validate(out)

    assert result.returncode == 0, result.stdout + result.stderr
    document = yaml.safe_load(out.read_text())
    operations = document["operations"].values()
    marked = [op for op in operations if op.get("x-deprecated")]
    assert len(marked) == 2  # the deprecated channel's send and receive
    assert all(op["description"].startswith("**Deprecated:**") for op in marked)


def test_a_python_catalog_can_hold_json_schema_channels_checked_the_same_way() -> None:
    local = {"$defs": {"id": {"type": "string"}}, "properties": {"id": {"$ref": "#/$defs/id"}}}
    remote = {"properties": {"id": {"$ref": "https://schemas.example.org/id.json"}}}

    catalog = Catalog(
        [Channel(name="ids.issued", schema=local, summary="s", examples=[{"id": "a"}])]
    )
    with pytest.raises(CatalogError) as raised:
        Catalog([Channel(name="ids.remote", schema=remote, summary="s", examples=[{"id": "a"}])])

    assert catalog["ids.issued"].payload.json_schema() == {"properties": {"id": {"type": "string"}}}
    [problem] = raised.value.problems
    assert str(problem).startswith("ids.remote: #/schema: unresolvable $ref")


def test_two_payloads_that_would_share_a_name_in_the_documents_are_a_problem() -> None:
    def channel(name: str, kind: str) -> Channel:
        return Channel(
            name=name, schema={"type": kind}, summary="s", examples=["x" if kind == "string" else 1]
        )

    with pytest.raises(CatalogError) as raised:
        Catalog([channel("parcels.sent", "string"), channel("parcels-sent", "integer")])

    assert [str(problem) for problem in raised.value.problems] == [
        "parcels-sent: #/name: its payload name 'ParcelsSent' is also that of parcels.sent;"
        " the documents need one name per payload"
    ]


def test_catalog_check_prints_every_break_with_its_reason(tmp_path: Path) -> None:
    old = write(tmp_path, [SHIPMENT], "old.yaml")
    payload = json.loads(json.dumps(SHIPMENT["payload"]))
    payload["required"].append("carrier")
    payload["properties"]["carrier"] = {"type": "string"}
    payload["properties"]["shipment_id"]["maxLength"] = 10
    example = {**SHIPMENT["examples"][0], "carrier": "dhl"}
    new = write(tmp_path, [{**SHIPMENT, "payload": payload, "examples": [example]}], "new.yaml")
    runner = CliRunner()

    broken = runner.invoke(cli, ["catalog", "check", str(old), str(new)])
    same = runner.invoke(cli, ["catalog", "check", str(old), str(old)])
    loosened = runner.invoke(cli, ["catalog", "check", str(new), str(old), "--mode", "BACKWARD"])
    forward = runner.invoke(cli, ["catalog", "check", str(new), str(old), "--mode", "FORWARD"])
    anything = runner.invoke(cli, ["catalog", "check", str(old), str(new), "--mode", "NONE"])

    assert broken.exit_code == 1, broken.output
    lines = broken.output.splitlines()
    assert any("#/required" in line and "carrier" in line for line in lines), lines
    assert any("maxLength" in line for line in lines), lines
    assert all(line.startswith("shipments.dispatched: BACKWARD: #") for line in lines)
    assert (same.exit_code, anything.exit_code) == (0, 0)
    # Back again: dropping `carrier` from a closed model refuses old events that had it.
    assert loosened.exit_code == 1
    assert "carrier" in loosened.output
    assert forward.exit_code == 1, forward.output


def test_catalog_check_against_a_previous_asyncapi_document_and_a_removed_channel(
    tmp_path: Path,
) -> None:
    committed = Path(__file__).resolve().parents[2] / "asyncapi.yaml"
    runner = CliRunner()

    unchanged = runner.invoke(cli, ["catalog", "check", str(committed), "default"])
    replaced = runner.invoke(cli, ["catalog", "check", "default", str(write(tmp_path, [SHIPMENT]))])

    assert unchanged.exit_code == 0, unchanged.output
    assert replaced.exit_code == 1
    removed = [line for line in replaced.output.splitlines() if "channel removed" in line]
    assert len(removed) == 3, replaced.output


HUGE_EXPONENT = b"1e99999999999999999999"


def test_a_number_beyond_a_decimals_range_is_invalid_json_on_both_kinds(tmp_path: Path) -> None:
    declared = load_catalog(str(write(tmp_path, [SHIPMENT])))["shipments.dispatched"]
    payment = DEFAULT_CATALOG["payments.captured"]
    bodies = [
        (declared, b'{"shipment_id":"s","weight_kg":' + HUGE_EXPONENT + b',"lines":[{"sku":"A"}]}'),
        (
            payment,
            b'{"payment_id":"p","order_id":"o","amount":' + HUGE_EXPONENT + b',"currency":"EUR"}',
        ),
    ]

    for channel, body in bodies:
        with pytest.raises(InvalidPayload) as raised:
            channel.payload.validate(body)
        [error] = raised.value.errors
        assert (error["type"], error["pointer"]) == ("json_invalid", ""), error
        assert "beyond the range" in error["msg"]


def test_a_lone_surrogate_is_refused_where_it_stands_and_the_answer_is_writable() -> None:
    anything = Catalog([Channel(name="any.thing", schema={}, summary="s", examples=[{}])])
    payload = anything["any.thing"].payload
    cases = {
        b'{"a":[1,{"b":"x\\ud800"}]}': "/a/1/b",
        b'{"ok":1,"\\udfff":1}': "",  # a key: the object that holds it
    }

    for body, where in cases.items():
        with pytest.raises(InvalidPayload) as raised:
            payload.validate(body)
        [error] = raised.value.errors
        assert (error["type"], error["pointer"]) == ("string_unicode", where)
        json.dumps(raised.value.errors, ensure_ascii=False).encode()  # the 422 can be sent
        raised.value.reason.encode()  # and the dead-letter header written
    cancelled = DEFAULT_CATALOG["orders.cancelled"].payload
    with pytest.raises(InvalidPayload, match="/reason"):
        cancelled.validate(b'{"order_id":"o","reason":"\\ud800"}')
