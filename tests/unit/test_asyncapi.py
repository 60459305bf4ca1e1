"""`asyncapi.yaml` is the document the code generates, it says what consumers and producers rely on,
and the reference AsyncAPI parser (npm @asyncapi/parser) accepts it."""

from __future__ import annotations

import dataclasses
import keyword
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import Field, create_model

from app.broker.topology import DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, EVENTS_EXCHANGE, UNROUTED
from app.catalog import Catalog
from app.catalog.default import DEFAULT_CATALOG, OrderCreated
from app.documents import asyncapi as spec
from app.events import ERROR_HEADER, PATH_HEADER, SOURCE_QUEUE_HEADER
from app.gateway import Gateway
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "asyncapi.yaml"
VALIDATOR = ROOT / "tools" / "asyncapi" / "validate.mjs"
REGENERATE = "regenerate it with `make asyncapi` and commit it"


CATALOG = DEFAULT_CATALOG.channels


def generate(catalog: Catalog, tmp_path: Path) -> str:
    """The document the app would serve with `catalog`: the app's factory plus its inbound broker."""
    gateway = Gateway(Settings(_env_file=None, store_path=tmp_path / "store.db"), catalog)
    factory = spec.specification(catalog)
    factory.add_broker(gateway.inbound)
    return factory.to_specification().to_yaml()


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    return loaded


def _message(document: dict[str, Any], channel_key: str) -> dict[str, Any]:
    [ref] = document["channels"][channel_key]["messages"].values()
    name = ref["$ref"].removeprefix("#/components/messages/")
    message: dict[str, Any] = document["components"]["messages"][name]
    return message


def _channels_on(document: dict[str, Any], **binding: str) -> dict[str, str]:
    """The keys of the channels whose AMQP binding has the given queue or exchange name, by
    address."""
    found = {}
    for key, channel in document["channels"].items():
        amqp = channel["bindings"]["amqp"]
        if all(amqp.get(kind, {}).get("name") == name for kind, name in binding.items()):
            found[channel.get("address")] = key
    return found


# --- drift --------------------------------------------------------------------------------------


def test_committed_asyncapi_yaml_is_what_make_asyncapi_generates(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.yaml"
    faststream = Path(sys.executable).with_name("faststream")
    # The same command as `make asyncapi`; settings of this machine must not leak into the file.
    env = {
        **os.environ,
        "BREAKWATER_BROKER_URL": "amqp://someone:secret@rabbit.internal:5671/prod",
        "BREAKWATER_STORE_PATH": str(tmp_path / "store.db"),
    }
    subprocess.run(
        [str(faststream), "docs", "gen", "app.main:app", "--yaml", "--out", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )

    diff = spec.differences(COMMITTED.read_text(encoding="utf-8"), out.read_text("utf-8"))
    assert not diff, f"asyncapi.yaml is stale: {REGENERATE}.\n{diff}"


def test_generating_in_process_gives_the_committed_document(tmp_path: Path) -> None:
    assert generate(DEFAULT_CATALOG, tmp_path) == COMMITTED.read_text(encoding="utf-8")


def test_a_model_field_added_without_regenerating_the_spec_is_reported(tmp_path: Path) -> None:
    extended = create_model(
        "OrderCreated",
        __base__=OrderCreated,
        coupon_code=(str | None, Field(default=None, description="A discount code.")),
    )
    changed = Catalog((dataclasses.replace(CATALOG[0], model=extended), *CATALOG[1:]))

    diff = spec.differences(COMMITTED.read_text(encoding="utf-8"), generate(changed, tmp_path))

    assert diff, "a new payload field must make the committed asyncapi.yaml stale"
    added = [line for line in diff.splitlines() if line.startswith("+") and "coupon_code" in line]
    assert added, diff


# --- what the document says -----------------------------------------------------------------------


def test_every_routing_key_of_the_outbound_exchange_is_a_channel(document: dict[str, Any]) -> None:
    outbound = _channels_on(document, exchange=EVENTS_EXCHANGE)

    assert list(outbound) == [channel.name for channel in CATALOG]
    for key in outbound.values():
        channel = document["channels"][key]
        exchange = channel["bindings"]["amqp"]["exchange"]
        assert exchange["type"] == "topic"
        assert exchange["durable"] is True
        assert exchange["x-arguments"] == {"alternate-exchange": UNROUTED}
        # What generated clients declare the exchange with (asyncapi-python reads `arguments`).
        assert exchange["arguments"] == exchange["x-arguments"]
        assert channel["servers"] == [{"$ref": "#/servers/outbound"}]


def test_outbound_operations_are_persistent_confirmed_sends(document: dict[str, Any]) -> None:
    outbound = _channels_on(document, exchange=EVENTS_EXCHANGE)
    sends = [
        op
        for op in document["operations"].values()
        if op["channel"]["$ref"] in {f"#/channels/{key}" for key in outbound.values()}
    ]

    assert [op["bindings"]["amqp"]["cc"] for op in sends] == [[c.name] for c in CATALOG]
    for op in sends:
        assert op["action"] == "send"
        assert op["bindings"]["amqp"]["deliveryMode"] == 2
        assert op["bindings"]["amqp"]["mandatory"] is True
        assert "message_id" in op["description"]


def test_outbound_messages_carry_schema_example_and_envelope(document: dict[str, Any]) -> None:
    outbound = _channels_on(document, exchange=EVENTS_EXCHANGE)
    for channel in CATALOG:
        message = _message(document, outbound[channel.name])
        schema_ref = message["payload"]["$ref"]
        assert schema_ref == f"#/components/schemas/{channel.model.__name__}"
        schema = document["components"]["schemas"][channel.model.__name__]
        assert set(schema["required"]) == {
            name for name, field in channel.model.model_fields.items() if field.is_required()
        }
        assert all(prop.get("description") for prop in schema["properties"].values())

        path = message["headers"]["properties"][PATH_HEADER]
        assert path["enum"] == ["direct", "replay"]
        assert message["headers"]["required"] == [PATH_HEADER]
        assert message["bindings"]["amqp"]["messageType"] == channel.name
        assert message["correlationId"]["location"] == "$message.header#/correlation_id"
        for name, _, meaning in spec.ENVELOPE:
            assert f"| `{name}` |" in message["description"]
            assert meaning in message["description"]

        assert message["examples"], channel.name
        for example in message["examples"]:
            channel.model.model_validate(example["payload"])
            assert example["headers"][PATH_HEADER] in path["enum"]


def test_inbound_queues_are_quorum_queues_with_the_channel_payload(
    document: dict[str, Any],
) -> None:
    for channel in CATALOG:
        [key] = _channels_on(document, queue=channel.inbound_queue).values()
        inbound = document["channels"][key]
        queue = inbound["bindings"]["amqp"]["queue"]
        assert queue["durable"] is True
        assert queue["x-arguments"]["x-queue-type"] == "quorum"
        assert queue["x-arguments"]["x-dead-letter-exchange"] == DEAD_LETTER_EXCHANGE
        assert queue["x-arguments"]["x-single-active-consumer"] is True
        assert queue["arguments"] == queue["x-arguments"]
        assert inbound["servers"] == [{"$ref": "#/servers/inbound"}]

        message = _message(document, key)
        accepted = message["payload"]["$ref"].removeprefix("#/components/schemas/")
        assert accepted.startswith(channel.model.__name__)
        schema = jsonschema.Draft202012Validator(
            {**document["components"]["schemas"][accepted], "components": document["components"]}
        )
        for example in message["examples"]:
            channel.model.model_validate(example["payload"])
            schema.validate(example["payload"])
        assert bool(operation_of(document, key)["bindings"]["amqp"].get("cc")) is False

    assert "EmptyPayload" not in document["components"]["schemas"]


def test_inbound_queues_without_single_active_consumer_are_documented_so() -> None:
    settings = Settings(inbound_single_active_consumer=False)
    document = spec.document_for(DEFAULT_CATALOG, settings).to_jsonable()
    for channel in CATALOG:
        [key] = _channels_on(document, queue=channel.inbound_queue).values()
        queue = document["channels"][key]["bindings"]["amqp"]["queue"]
        assert "x-single-active-consumer" not in queue["x-arguments"]
        assert queue["arguments"] == queue["x-arguments"]


def operation_of(document: dict[str, Any], channel_key: str) -> dict[str, Any]:
    [operation] = [
        op for op in document["operations"].values() if op["channel"]["$ref"].endswith(channel_key)
    ]
    return operation


def test_the_dead_letter_topology_reads_the_same_in_channel_operation_and_message(
    document: dict[str, Any],
) -> None:
    [key] = _channels_on(document, exchange=DEAD_LETTER_EXCHANGE).values()
    channel = document["channels"][key]
    message = _message(document, key)
    operation = operation_of(document, key)

    assert channel["bindings"]["amqp"]["is"] == "routingKey"
    assert channel["bindings"]["amqp"]["exchange"]["type"] == "fanout"
    assert DEAD_LETTER_QUEUE in channel["description"]
    assert operation["action"] == "send"
    assert "cc" not in operation["bindings"]["amqp"]
    assert message["contentType"] == "application/octet-stream"
    assert message["payload"]["type"] == "string"
    assert message["headers"]["required"] == [ERROR_HEADER, SOURCE_QUEUE_HEADER]
    [example] = message["examples"]
    assert example["headers"][ERROR_HEADER].startswith("/")  # a JSON Pointer, then the reason
    with pytest.raises(ValueError, match="Field required"):
        CATALOG[0].model.model_validate_json(example["payload"])


IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
KEYWORDS = set(keyword.kwlist) | {"in", "function", "class", "default", "new", "delete"}


def test_keys_are_identifiers_in_common_languages(document: dict[str, Any]) -> None:
    keys = [
        *document["channels"],
        *document["operations"],
        *document["components"]["messages"],
        *document["components"]["schemas"],
        *(m for c in document["channels"].values() for m in c["messages"]),
    ]

    assert all(IDENTIFIER.match(key) and key.lower() not in KEYWORDS for key in keys), keys
    assert set(document["components"]["messages"]) >= {c.model.__name__ for c in CATALOG}


def test_outbound_decimals_are_strings_with_a_pattern_and_inbound_takes_both(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    sent = schemas["OrderCreated"]["properties"]["total"]
    accepted = schemas["OrderCreatedInput"]["properties"]["total"]

    assert sent["type"] == "string"
    assert re.match(sent["pattern"], "25.00")
    assert not re.match(sent["pattern"], "1E+2")
    assert accepted["type"] == ["number", "string"]
    assert schemas["OrderLineInput"]["properties"]["unit_price"]["minimum"] == 0


def test_every_schema_is_titled_by_its_key(document: dict[str, Any]) -> None:
    """Generators name classes by title: two schemas titled alike become `X` and `X1`."""
    schemas = document["components"]["schemas"]

    assert {key: schema["title"] for key, schema in schemas.items()} == {
        key: key for key in schemas
    }


def test_info_states_the_guarantees_and_the_http_ingress(document: dict[str, Any]) -> None:
    info = document["info"]["description"]
    for promise in (
        "At-least-once",
        "deduplicate by `message_id`",
        "Order per channel",
        "POST /v1/events/{channel}",
        "`Idempotency-Key`",
    ):
        assert promise in info


def test_the_idempotency_window_is_stated_and_why_consumers_still_deduplicate(
    document: dict[str, Any],
) -> None:
    info = document["info"]["description"]
    for promise in (
        "is not published again",
        "per replica",
        "`BREAKWATER_IDEMPOTENCY_TTL_S`, by default 86400 s = 24 h",
        spec.REPUBLISHED,  # another replica, after the window, a crash before the key's commit
        "Consumers still deduplicate by `message_id`",
        "`Idempotent-Replayed: true`",  # the HTTP answer to a repeat
        "`409` with `Retry-After`",
        f"`{ERROR_HEADER}: {spec.IDEMPOTENCY_CONFLICT} …`",  # AMQP: a reused message_id
    ):
        assert promise in info, promise
    assert Settings.model_fields["idempotency_ttl_s"].default == 86_400
    [message_id] = [meaning for name, _, meaning in spec.ENVELOPE if name == "message_id"]
    assert "per replica" in message_id
    assert spec.REPUBLISHED in message_id
    for key in _channels_on(document, exchange=EVENTS_EXCHANGE).values():
        assert spec.REPUBLISHED in operation_of(document, key)["description"]


def test_inbound_repeats_are_acked_and_reused_message_ids_dead_lettered(
    document: dict[str, Any],
) -> None:
    for channel in CATALOG:
        [key] = _channels_on(document, queue=channel.inbound_queue).values()
        description = operation_of(document, key)["description"]
        assert "acked without a second publish" in description
        assert f"`{ERROR_HEADER}: {spec.IDEMPOTENCY_CONFLICT} …`" in description
        assert "per replica" in description
        assert "deduplicate by `message_id`" in description
        assert "idempotency window" in _message(document, key)["description"]
    [dead] = _channels_on(document, exchange=DEAD_LETTER_EXCHANGE).values()
    assert spec.IDEMPOTENCY_CONFLICT in operation_of(document, dead)["description"]
    error = _message(document, dead)["headers"]["properties"][ERROR_HEADER]
    assert spec.IDEMPOTENCY_CONFLICT in error["description"]


def test_servers_name_the_default_broker_without_credentials(document: dict[str, Any]) -> None:
    assert set(document["servers"]) == {"outbound", "inbound"}
    for server in document["servers"].values():
        assert server["host"] == "localhost:5672"
        assert "@" not in server["host"]
        assert server["protocol"] == "amqp"


# --- the reference parser -----------------------------------------------------------------------


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed; the AsyncAPI check needs Node.js (make install)")
    if not (ROOT / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.fail("@asyncapi/parser is not installed: run `make install` (npm ci)")
    return subprocess.run(
        [node, str(VALIDATOR), str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_reference_parser_accepts_asyncapi_yaml() -> None:
    result = validate(COMMITTED)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid AsyncAPI 3.0.0" in result.stdout


def test_the_parser_check_fails_on_an_invalid_document(
    document: dict[str, Any], tmp_path: Path
) -> None:
    broken = dict(document)
    broken["operations"] = {
        key: {**op, "action": "publish"} for key, op in document["operations"].items()
    }
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")

    result = validate(path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert " error " in result.stdout
