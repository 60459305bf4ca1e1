"""The OpenAPI document of the HTTP ingress (app/documents/openapi.py): the committed `openapi.json` is what
the code generates for the default catalog, openapi-spec-validator takes it as OpenAPI 3.1, and
its request schemas are what the ingress accepts (the running gateway is held to the document by
tests/integration/test_openapi_schemathesis.py)."""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
from prometheus_client import CollectorRegistry

from app.catalog import Catalog, Channel, InvalidPayload
from app.catalog.default import DEFAULT_CATALOG
from app.cloudevents.attributes import CloudEventsMode
from app.cloudevents.stamping import Stamper
from app.documents import openapi, pages
from app.events import Event
from app.ingress.http_api import REPLAYED_HEADER, HttpApi
from app.ingress.idempotency import RETRY_AFTER_IN_FLIGHT_S, Accepted, KeyConflict, KeyInFlight
from app.outbound.connection import Unroutable
from app.outbound.publisher import Outcome
from app.settings import Settings
from app.store.fallback import StoreFull

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "openapi.json"
SHIPMENT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["shipment_id", "weight_kg"],
    "properties": {
        "shipment_id": {"type": "string", "minLength": 1},
        "weight_kg": {"type": "number", "exclusiveMinimum": 0},
    },
}
SHIPMENTS = Catalog(
    [
        Channel(
            name="shipments.dispatched",
            summary="A shipment left.",
            schema=SHIPMENT_SCHEMA,
            examples=[{"shipment_id": "s-1", "weight_kg": 2.5}],
        ),
        Channel(
            name="shipments.dispatched.v0",
            summary="The old form.",
            schema=SHIPMENT_SCHEMA,
            examples=[{"shipment_id": "s-1", "weight_kg": 2.5}],
            deprecated=True,
            description="Use shipments.dispatched.",
        ),
    ]
)


def request_schema(doc: dict[str, Any], channel: str) -> dict[str, Any]:
    """The request body schema of a channel's operation, with the document's components beside
    it so that its `$ref`s resolve."""
    operation = doc["paths"][f"/v1/events/{channel}"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    return {**schema, "components": doc["components"]}


def test_the_committed_openapi_json_is_what_the_code_generates() -> None:
    generated = openapi.to_json(openapi.document(DEFAULT_CATALOG))
    committed = COMMITTED.read_text(encoding="utf-8")
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            "openapi.json (committed)",
            "openapi.json (generated)",
        )
    )
    assert not diff, f"openapi.json is stale: run `make openapi` and commit it\n{diff}"


@pytest.mark.parametrize(
    ("catalog", "tokens_required"),
    [(DEFAULT_CATALOG, False), (DEFAULT_CATALOG, True), (SHIPMENTS, False)],
    ids=["default", "default-with-tokens", "json-schema-catalog"],
)
def test_openapi_spec_validator_takes_the_document_as_3_1(
    catalog: Catalog, tokens_required: bool
) -> None:
    doc = openapi.document(catalog, tokens_required=tokens_required)
    assert doc["openapi"].startswith("3.1.")
    validate(doc, cls=OpenAPIV31SpecValidator)


def test_a_document_with_cloudevents_is_valid_and_takes_them_on_those_channels_only() -> None:
    doc = openapi.document(DEFAULT_CATALOG, cloudevents=CloudEventsMode.binary)
    validate(doc, cls=OpenAPIV31SpecValidator)
    for name in DEFAULT_CATALOG:
        operation = doc["paths"][f"/v1/events/{name}"]["post"]
        body = operation["requestBody"]["content"]["application/cloudevents+json"]["schema"]
        assert body["properties"]["type"]["const"] == name
        assert {"ce-id", "ce-type", "ce-source", "ce-specversion"} <= {
            parameter["name"] for parameter in operation["parameters"]
        }
    plain = openapi.document(DEFAULT_CATALOG)
    for path in plain["paths"].values():
        for operation in path.values():
            content = operation.get("requestBody", {}).get("content", {})
            assert "application/cloudevents+json" not in content
            assert not [p for p in operation.get("parameters", []) if p["name"].startswith("ce-")]


STRUCTURED_EVENT = {
    "specversion": "1.0",
    "id": "ce-1",
    "source": "/shop",
    "type": "orders.created",
    "data": DEFAULT_CATALOG["orders.created"].example,
}


@pytest.mark.parametrize(
    ("event", "status"),
    [
        (STRUCTURED_EVENT, 202),
        ({**STRUCTURED_EVENT, "specversion": "0.3"}, 422),
        ({**STRUCTURED_EVENT, "data": {}}, 422),
    ],
    ids=["accepted", "malformed", "invalid-data"],
)
async def test_a_structured_cloudevent_is_answered_as_documented(
    event: dict[str, Any], status: int, tmp_path: Path
) -> None:
    doc = openapi.document(DEFAULT_CATALOG, cloudevents=CloudEventsMode.binary)
    publisher = _StubPublisher(Accepted(Outcome.published))
    async with _client(publisher, tmp_path, cloudevents="binary") as client:
        response = await client.post(
            "/v1/events/orders.created",
            content=json.dumps(event),
            headers={"Content-Type": "application/cloudevents+json"},
        )

    assert response.status_code == status, response.text
    assert_documented(doc, "/v1/events/orders.created", response)
    if status == 202:
        assert response.json()["message_id"] == "ce-1"
        assert publisher.keyed == [True]


def test_the_committed_document_is_valid_openapi_3_1() -> None:
    validate(json.loads(COMMITTED.read_text(encoding="utf-8")), cls=OpenAPIV31SpecValidator)


def test_one_operation_per_channel_with_ids_headers_and_every_answer() -> None:
    doc = openapi.document(DEFAULT_CATALOG)
    for name, channel in DEFAULT_CATALOG.items():
        operation = doc["paths"][f"/v1/events/{name}"]["post"]
        assert operation["summary"] == channel.summary
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert headers == {"Idempotency-Key", "X-Correlation-ID", "traceparent", "tracestate"}
        assert set(operation["responses"]) == {"202", "401", "409", "413", "422", "502", "503"}
        assert "Retry-After" in operation["responses"]["503"]["headers"]
        assert operation["responses"]["409"]["headers"]["Retry-After"]["required"] is True
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
        assert "deprecated" not in operation
    generic = doc["paths"]["/v1/events/{channel}"]["post"]
    assert "404" in generic["responses"]  # an unknown channel: only the generic route has one
    ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))


def test_bearer_auth_is_optional_unless_the_gateway_has_tokens() -> None:
    optional = openapi.document(DEFAULT_CATALOG)
    required = openapi.document(DEFAULT_CATALOG, tokens_required=True)
    scheme = optional["components"]["securitySchemes"][openapi.BEARER]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path in DEFAULT_CATALOG:
        assert optional["paths"][f"/v1/events/{path}"]["post"]["security"] == [
            {openapi.BEARER: []},
            {},
        ]
        assert required["paths"][f"/v1/events/{path}"]["post"]["security"] == [{openapi.BEARER: []}]
    assert optional["paths"]["/healthz"]["get"]["security"] == []


def test_request_schemas_are_what_the_ingress_accepts_decimals_as_numbers_too() -> None:
    doc = openapi.document(DEFAULT_CATALOG)
    for name, channel in DEFAULT_CATALOG.items():
        validator = jsonschema_rs.validator_for(request_schema(doc, name))
        for example in channel.examples:
            assert validator.is_valid(example), name
            channel.payload.validate(json.dumps(example).encode())
    # `Money` goes in as a JSON number as well as a string (the validation form of the model).
    order = copy.deepcopy(DEFAULT_CATALOG["orders.created"].example)
    order["total"] = 25
    order["items"][0]["unit_price"] = 9.5
    assert jsonschema_rs.validator_for(request_schema(doc, "orders.created")).is_valid(order)
    DEFAULT_CATALOG["orders.created"].payload.validate(json.dumps(order).encode())
    # Only what the ingress accepts is in the document: not the sending forms of the models.
    schemas = doc["components"]["schemas"]
    assert "OrderCreatedInput" in schemas
    assert "OrderCreated" not in schemas


def test_what_the_schema_refuses_the_ingress_refuses() -> None:
    doc = openapi.document(DEFAULT_CATALOG)
    validator = jsonschema_rs.validator_for(request_schema(doc, "payments.captured"))
    for bad in ({}, {"unexpected": 1}, [], "text", {"payment_id": ""}):
        assert not validator.is_valid(bad)
        with pytest.raises(InvalidPayload):
            DEFAULT_CATALOG["payments.captured"].payload.validate(json.dumps(bad).encode())


def test_a_json_schema_channel_is_documented_as_its_schema_and_deprecation_is_shown() -> None:
    doc = openapi.document(SHIPMENTS)
    current = doc["paths"]["/v1/events/shipments.dispatched"]["post"]
    old = doc["paths"]["/v1/events/shipments.dispatched.v0"]["post"]
    schema = current["requestBody"]["content"]["application/json"]["schema"]
    assert (
        doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]["properties"]
        == (SHIPMENT_SCHEMA["properties"])
    )
    assert old["deprecated"] is True
    assert old["description"].startswith("**Deprecated:**")
    deprecation = old["responses"]["202"]["headers"]["Deprecation"]
    assert deprecation["required"] is True
    assert "Deprecation" not in current["responses"]["202"]["headers"]
    # A repeat on a deprecated channel has both headers.
    assert set(old["responses"]["202"]["headers"]) == {"Deprecation", REPLAYED_HEADER}


# --- Idempotency-Key -------------------------------------------------------------------------


def test_the_idempotency_key_semantics_are_in_the_api_and_the_header_description() -> None:
    doc = openapi.document(DEFAULT_CATALOG)
    [header] = [
        p
        for p in doc["paths"]["/v1/events/orders.created"]["post"]["parameters"]
        if p["name"] == "Idempotency-Key"
    ]
    for text in (doc["info"]["description"], header["description"]):
        for promise in (
            f"`{REPLAYED_HEADER}: true`",  # a repeat: the first answer, nothing published
            "Nothing is published again",
            "`422`",  # another body or channel
            f"`409` with `Retry-After: {RETRY_AFTER_IN_FLIGHT_S}`",  # in flight
            "**per replica**",
            "at-least-once",
            "crash before the key is written",
            "`BREAKWATER_IDEMPOTENCY_TTL_S` (by default 86400 s = 24 h",
            "`BREAKWATER_IDEMPOTENCY_MAX_KEYS`",
            "deduplicate by `message_id`",
        ):
            assert promise in text, promise
    # The settings named are the gateway's, with the defaults said.
    assert Settings.model_fields["idempotency_ttl_s"].default == 86_400
    assert f"{Settings.model_fields['idempotency_max_keys'].default:,}" in header["description"]
    assert "Retries and `Idempotency-Key`" in doc["info"]["description"]


def test_the_replayed_header_409_and_the_conflict_are_documented_on_every_event_operation() -> None:
    doc = openapi.document(SHIPMENTS)
    for path in (*(f"/v1/events/{name}" for name in SHIPMENTS), "/v1/events/{channel}"):
        responses = doc["paths"][path]["post"]["responses"]
        replayed = responses["202"]["headers"][REPLAYED_HEADER]
        assert replayed["required"] is False  # absent on a first request
        assert replayed["schema"] == {"type": "string", "enum": ["true"]}
        conflict = responses["409"]
        assert conflict["headers"]["Retry-After"]["schema"]["type"] == "integer"
        assert conflict["content"]["application/json"]["schema"] == {
            "$ref": openapi.SCHEMAS + "Error"
        }
        assert "Idempotency-Key" in responses["422"]["description"]
        assert "another body" in responses["422"]["description"]


class _StubPublisher:
    """Answers every `submit` with `answer` (or raises it), and records what it was given."""

    def __init__(self, answer: Accepted | Exception) -> None:
        self.answer = answer
        self.keyed: list[bool] = []

    async def submit(self, event: Event, *, keyed: bool, in_flight: str = "refuse") -> Accepted:
        self.keyed.append(keyed)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@contextlib.asynccontextmanager
async def _client(
    publisher: object, tmp_path: Path, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the HTTP ingress in front of a stub publisher (no broker, no store)."""
    settings = Settings(_env_file=None, store_path=tmp_path / "store.db", **overrides)
    api = HttpApi(
        settings,
        DEFAULT_CATALOG,
        publisher,  # type: ignore[arg-type]
        lambda: (True, {}),
        CollectorRegistry(),
        status=lambda: pytest.fail("the status page is not asked for"),
        stamper=Stamper.for_settings(DEFAULT_CATALOG, settings),
    )
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        yield client


async def _post(
    answer: Accepted | Exception, tmp_path: Path, channel: str = "orders.created"
) -> tuple[httpx.Response, _StubPublisher]:
    publisher = _StubPublisher(answer)
    async with _client(publisher, tmp_path) as client:
        response = await client.post(
            f"/v1/events/{channel}",
            json=DEFAULT_CATALOG[channel].example,
            headers={"Idempotency-Key": openapi.EXAMPLE_KEY},
        )
    return response, publisher


def assert_documented(doc: dict[str, Any], path: str, response: httpx.Response) -> dict[str, Any]:
    """The answer is one the operation documents: its status, its required headers, every
    documented header's value and its body by their schemas. Returns the documented response."""
    documented: dict[str, Any] = doc["paths"][path]["post"]["responses"][str(response.status_code)]
    for name, header in documented.get("headers", {}).items():
        if header["required"]:
            assert name in response.headers, name
        if name in response.headers:
            value: Any = response.headers[name]
            if header["schema"]["type"] == "integer":
                value = int(value)
            assert jsonschema_rs.validator_for(header["schema"]).is_valid(value), (name, value)
    [(media, content)] = documented["content"].items()
    assert response.headers["content-type"].startswith(media)
    schema = {**content["schema"], "components": doc["components"]}
    jsonschema_rs.validator_for(schema).validate(response.json())
    return documented


@pytest.mark.parametrize("outcome", list(Outcome))
async def test_a_repeat_is_answered_as_documented(outcome: Outcome, tmp_path: Path) -> None:
    doc = openapi.document(DEFAULT_CATALOG)
    response, publisher = await _post(Accepted(outcome, repeat=True), tmp_path)

    assert response.status_code == 202
    assert response.headers[REPLAYED_HEADER] == "true"
    assert response.json() == {"message_id": openapi.EXAMPLE_KEY, "status": outcome.value}
    assert_documented(doc, "/v1/events/orders.created", response)
    assert publisher.keyed == [True]


async def test_a_first_request_has_no_replayed_header(tmp_path: Path) -> None:
    doc = openapi.document(DEFAULT_CATALOG)
    response, _ = await _post(Accepted(Outcome.published), tmp_path)

    assert response.status_code == 202
    assert REPLAYED_HEADER not in response.headers
    assert_documented(doc, "/v1/events/orders.created", response)


@pytest.mark.parametrize(
    ("refusal", "status", "example"),
    [
        (KeyInFlight(openapi.EXAMPLE_KEY), 409, "keyInFlight"),
        (
            KeyConflict(openapi.EXAMPLE_KEY, "orders.created", "orders.created"),
            422,
            "idempotencyConflict",
        ),
        (KeyConflict(openapi.EXAMPLE_KEY, "payments.captured", "orders.created"), 422, None),
    ],
    ids=["in-flight", "conflict-same-channel", "conflict-other-channel"],
)
async def test_a_key_in_flight_or_in_conflict_is_refused_as_documented(
    refusal: Exception, status: int, example: str | None, tmp_path: Path
) -> None:
    doc = openapi.document(DEFAULT_CATALOG)
    response, _ = await _post(refusal, tmp_path)

    assert response.status_code == status
    documented = assert_documented(doc, "/v1/events/orders.created", response)
    detail = response.json()["detail"]
    assert openapi.EXAMPLE_KEY in detail  # the sentence names the key
    if status == 409:
        assert response.headers["Retry-After"] == str(RETRY_AFTER_IN_FLIGHT_S)
    if example is not None:
        # The documented example is the gateway's own answer for that key.
        examples = documented["content"]["application/json"]["examples"]
        assert examples[example]["value"] == response.json()


def test_the_page_renderer_is_found_and_the_page_loads_it_from_the_gateway() -> None:
    found = pages.page_assets(pages.OPENAPI_ASSET_SOURCES)
    assert found is not None, "swagger-ui-dist missing: run `make install`"
    assert set(found) == {"swagger-ui-bundle.js", "swagger-ui.css"}
    assert "SwaggerUIBundle" in found["swagger-ui-bundle.js"].read_text(encoding="utf-8")
    page = pages._OPENAPI_PAGE
    assert "validatorUrl: null" in page  # no call to validator.swagger.io
    assert "http://" not in page  # nothing from elsewhere
    assert "https://" not in page


# --- batches ---------------------------------------------------------------------------------


def test_every_channel_has_its_batch_operation_with_the_single_operations_schema() -> None:
    doc = openapi.document(SHIPMENTS)
    max_events = Settings.model_fields["max_batch_events"].default
    for name in SHIPMENTS:
        single = doc["paths"][f"/v1/events/{name}"]["post"]
        operation = doc["paths"][f"/v1/events/{name}/batch"]["post"]
        assert operation["operationId"] == single["operationId"] + "Batch"
        content = operation["requestBody"]["content"]
        array = content["application/json"]["schema"]
        assert array["items"] == single["requestBody"]["content"]["application/json"]["schema"]
        assert (array["type"], array["minItems"], array["maxItems"]) == ("array", 1, max_events)
        assert content["application/json"]["example"] == list(SHIPMENTS[name].examples)
        assert content["application/x-ndjson"]["schema"]["type"] == "string"
        params = {p["name"]: p for p in operation["parameters"]}
        assert set(params) == {
            "atomic",
            "Idempotency-Key",
            "X-Correlation-ID",
            "traceparent",
            "tracestate",
        }
        assert params["atomic"]["in"] == "query"
        assert params["atomic"]["schema"]["enum"] == ["true", "false"]
        # `<base>:0` is at most 200 characters.
        assert params["Idempotency-Key"]["schema"]["maxLength"] == 198
        responses = operation["responses"]
        assert set(responses) == set(single["responses"])
        assert set(responses["202"]["headers"]) == set(single["responses"]["202"]["headers"])
        for status in ("409", "503"):
            assert responses[status]["headers"]["Retry-After"]["required"] is True
        assert operation.get("deprecated") == single.get("deprecated")
    assert doc["paths"]["/v1/events/shipments.dispatched/batch"]["post"]["operationId"] == (
        "postShipmentsDispatchedBatch"
    )
    generic = doc["paths"]["/v1/events/{channel}/batch"]["post"]
    assert generic["operationId"] == "postEventBatch"
    assert "404" in generic["responses"]
    assert "Batches" in doc["info"]["description"]
    ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))


def test_the_batch_request_schemas_take_the_examples_and_refuse_what_is_no_batch() -> None:
    doc = openapi.document(DEFAULT_CATALOG)
    for name, channel in DEFAULT_CATALOG.items():
        operation = doc["paths"][f"/v1/events/{name}/batch"]["post"]
        content = operation["requestBody"]["content"]["application/json"]
        validator = jsonschema_rs.validator_for(
            {**content["schema"], "components": doc["components"]}
        )
        assert validator.is_valid(content["example"])
        assert not validator.is_valid([])
        assert not validator.is_valid(channel.example)  # one payload is not a batch
        assert not validator.is_valid([channel.example] * (openapi.MAX_BATCH_EVENTS + 1))


class _BatchPublisher:
    """`submit` answers from `answers` in turn (an Exception is raised); `check` passes."""

    def __init__(self, *answers: Accepted | Exception) -> None:
        self.answers = list(answers)

    def check(self, event: Event) -> None:
        pass

    async def submit(self, event: Event, *, keyed: bool, in_flight: str = "refuse") -> Accepted:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def _post_batch(
    publisher: _BatchPublisher,
    tmp_path: Path,
    content: bytes,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    async with _client(publisher, tmp_path) as client:
        return await client.post(
            f"/v1/events/orders.created/batch{query}",
            content=content,
            headers={"Content-Type": "application/json", **(headers or {})},
        )


BATCH_PATH = "/v1/events/orders.created/batch"
ORDER = DEFAULT_CATALOG["orders.created"].example
BAD_ORDER = {**ORDER, "items": [{**ORDER["items"][0], "quantity": 0}]}


async def test_a_partly_accepted_batch_is_a_documented_202(tmp_path: Path) -> None:
    doc = openapi.document(DEFAULT_CATALOG)
    publisher = _BatchPublisher(Accepted(Outcome.published), Accepted(Outcome.stored, repeat=True))
    body = json.dumps([ORDER, BAD_ORDER, ORDER]).encode()
    response = await _post_batch(publisher, tmp_path, body, headers={"Idempotency-Key": "b"})

    assert response.status_code == 202
    assert REPLAYED_HEADER not in response.headers  # not every event repeats
    assert_documented(doc, BATCH_PATH, response)
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (2, 1)
    statuses = [r["status"] for r in answer["results"]]
    assert statuses == ["published", "rejected", "stored"]
    assert answer["results"][2]["repeated"] is True
    assert answer["results"][1]["error"]["status"] == 422


async def test_every_event_repeating_is_a_replayed_202(tmp_path: Path) -> None:
    doc = openapi.document(DEFAULT_CATALOG)
    publisher = _BatchPublisher(*[Accepted(Outcome.published, repeat=True)] * 2)
    body = json.dumps([ORDER, ORDER]).encode()
    response = await _post_batch(publisher, tmp_path, body, headers={"Idempotency-Key": "b"})

    assert response.status_code == 202
    assert response.headers[REPLAYED_HEADER] == "true"
    assert_documented(doc, BATCH_PATH, response)


@pytest.mark.parametrize(
    ("content", "query", "headers"),
    [
        (b"[", "", {}),
        (b"{}", "", {}),
        (b"[]", "", {}),
        (json.dumps([ORDER] * (openapi.MAX_BATCH_EVENTS + 1)).encode(), "", {}),
        (json.dumps([ORDER]).encode(), "?atomic=yes", {}),
        (json.dumps([ORDER] * 11).encode(), "", {"Idempotency-Key": "k" * 198}),
    ],
    ids=["not-json", "not-an-array", "no-events", "too-many", "bad-atomic", "key-too-long"],
)
async def test_a_malformed_batch_is_a_documented_422_error(
    content: bytes, query: str, headers: dict[str, str], tmp_path: Path
) -> None:
    doc = openapi.document(DEFAULT_CATALOG)
    response = await _post_batch(_BatchPublisher(), tmp_path, content, query=query, headers=headers)

    assert response.status_code == 422
    assert_documented(doc, BATCH_PATH, response)
    assert set(response.json()) == {"detail"}
    assert isinstance(response.json()["detail"], str)


async def test_an_atomic_batch_with_an_invalid_event_is_refused_with_pointers_into_it(
    tmp_path: Path,
) -> None:
    doc = openapi.document(DEFAULT_CATALOG)
    body = json.dumps([ORDER, BAD_ORDER]).encode()
    response = await _post_batch(_BatchPublisher(), tmp_path, body, query="?atomic=true")

    assert response.status_code == 422
    assert_documented(doc, BATCH_PATH, response)
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (0, 2)
    assert [r["status"] for r in answer["results"]] == ["not_accepted", "rejected"]
    assert [error["pointer"] for error in answer["detail"]] == ["/1/items/0/quantity"]


@pytest.mark.parametrize(
    ("answers", "status"),
    [
        ((StoreFull(10, 10), KeyInFlight("b:1"), Unroutable("no route")), 503),
        ((Unroutable("no route"), KeyInFlight("b:1"), Unroutable("no route")), 409),
        ((Unroutable("no route"), KeyConflict("b:1", "orders.created", "orders.created")), 502),
    ],
    ids=["store-full-first", "in-flight-before-unroutable", "unroutable-before-conflict"],
)
async def test_a_batch_of_which_nothing_was_accepted_is_a_documented_refusal(
    answers: tuple[Exception, ...], status: int, tmp_path: Path
) -> None:
    doc = openapi.document(DEFAULT_CATALOG)
    body = json.dumps([ORDER] * len(answers)).encode()
    publisher = _BatchPublisher(*answers)
    response = await _post_batch(publisher, tmp_path, body, headers={"Idempotency-Key": "b"})

    assert response.status_code == status
    documented = assert_documented(doc, BATCH_PATH, response)
    assert documented["content"]["application/json"]["schema"] == {
        "$ref": openapi.SCHEMAS + "BatchRefused"
    }
    answer = response.json()
    assert answer["accepted"] == 0
    assert {r["status"] for r in answer["results"]} == {"rejected"}
