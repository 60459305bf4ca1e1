"""The OpenAPI 3.1 document of the HTTP ingress, generated from the channel catalog.

One `POST` operation per channel, whose request body is the schema the ingress validates against
(`app.documents.asyncapi.payload_schemas`' accepting form: decimals as numbers or strings), so that a client
generated from this document sends what the gateway takes. Every answer `app.http_api` can give is
listed with its body and headers; `tests/integration/test_openapi_schemathesis.py` holds the
running gateway to that, on a real broker. `openapi.json` at the repository root is this document
for the default catalog (a unit test checks that it has not drifted).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from typing import Any

from .. import __version__
from ..breaker import BreakerState
from ..catalog import Catalog, Channel
from ..catalog.channel import MAX_NAME_LENGTH, NAME_PATTERN, title_of
from ..http_api import _ID_PATTERN, REPLAYED_HEADER
from ..idempotency import KEY_WRITE_DELAY_S, RETRY_AFTER_IN_FLIGHT_S, KeyConflict, KeyInFlight
from ..publisher import Outcome
from ..refusals import RETRY_AFTER_STORE_BROKEN_S, RETRY_AFTER_STORE_FULL_S
from ..settings import Settings
from .asyncapi import duration, payload_schemas, setting_default, setting_name

OPENAPI_VERSION = "3.1.0"
TITLE = "Breakwater HTTP ingress"
SCHEMAS = "#/components/schemas/"
BEARER = "bearerAuth"
# The headers whose values become the event's AMQP message_id / correlation_id.
IDEMPOTENCY_KEY = "Idempotency-Key"
CORRELATION_ID = "X-Correlation-ID"

TTL_SETTING = setting_name("idempotency_ttl_s")
MAX_KEYS_SETTING = setting_name("idempotency_max_keys")
IDEMPOTENCY_WINDOW = (
    f"The idempotency window: `{TTL_SETTING}` (by default"
    f" {duration(setting_default('idempotency_ttl_s'))}, counted from the first request; `0` turns"
    f" it off), and at most the newest `{MAX_KEYS_SETTING}` keys (by default"
    f" {setting_default('idempotency_max_keys'):,})."
)

# What a request with an `Idempotency-Key` is answered, in the API description and the header's.
IDEMPOTENCY = f"""\
The key becomes the event's `message_id`. A request repeating a key that this gateway replica \
has already taken (accepted within its idempotency window, or still being published or stored) \
is:

- with the same channel and the same body (once validated and normalised: key order and spacing \
do not matter; `{CORRELATION_ID}` is not compared), the first accepted: answered `202` with the \
first request's `message_id` and `status` (as first answered: `stored` stays `stored` after its \
replay) and the header `{REPLAYED_HEADER}: true`. Nothing is published again;
- with the same channel and body, the first still in flight: answered `409` with \
`Retry-After: {RETRY_AFTER_IN_FLIGHT_S}`; retry then to get the first request's outcome;
- with another channel or another body: refused `422` (`detail` names the key). Keys are global \
to the replica, whatever the channel; a new event needs a new key.

{IDEMPOTENCY_WINDOW} A key is remembered once its event is accepted (published or \
stored), in the store's file: a restart does not forget it. A request refused for its own reasons \
(`503`, `502`, an invalid payload) leaves no key: its retry is handled as new. Beyond that, \
delivery stays at-least-once, with the same `message_id`: the window is **per replica** (a retry \
that reaches another replica is published again), a retry after the window is published again, \
and a crash before the key is written (a published event's key is written at most \
{round(KEY_WRITE_DELAY_S * 1000)} ms after its answer) loses the key, not the event (the retry is published again). Consumers therefore still deduplicate by `message_id`."""

DESCRIPTION = f"""\
Producers hand Breakwater typed events over HTTP: `POST /v1/events/<channel>` with the JSON \
payload as the body. The gateway validates it against the channel's schema and publishes it to \
RabbitMQ (answer `202`, `status: published`), or, while the broker is unreachable, stores it \
durably and replays it later (`202`, `status: stored`). Either way the event is accepted: it is \
delivered at least once, in acceptance order per channel.

## Retries and `{IDEMPOTENCY_KEY}`

Retrying is safe: send the same `{IDEMPOTENCY_KEY}` (semantics of the IETF HTTP APIs draft \
`draft-ietf-httpapi-idempotency-key-header`). {IDEMPOTENCY}

Retry a `503` or a `409` after its `Retry-After`; never retry another `4xx` unchanged.

The AsyncAPI document (`/docs/asyncapi`) describes the same channels as consumers receive them.
"""

# Why each error happens, per status: the text of the `description` of each response.
ERRORS: dict[str, str] = {
    "401": "No `Authorization: Bearer <token>` header, or not one of the configured tokens"
    " (only when the gateway has `BREAKWATER_API_TOKENS`). Checked before anything else.",
    "404": "No channel of this name in the gateway's catalog (`detail` lists the known ones),"
    " or no such path.",
    "409": f"A request with the same `{IDEMPOTENCY_KEY}` (same channel and body) is still being"
    " published or stored: nothing was done for this one. Retry after `Retry-After` seconds"
    f" ({RETRY_AFTER_IN_FLIGHT_S}) to get the first request's outcome: `202` with"
    f" `{REPLAYED_HEADER}: true` once it was accepted; if it was refused instead, the retry is"
    " handled as a new request.",
    "413": "The body is larger than `BREAKWATER_MAX_BODY_BYTES`. The gateway closes the"
    " connection after answering.",
    "422": "The body is not a valid payload of the channel (`detail`: every error, each with"
    f" the JSON Pointer of its place in the payload); or `{IDEMPOTENCY_KEY}` /"
    f" `{CORRELATION_ID}` is not 1-200 printable ASCII characters (`detail`: a string); or the"
    f" `{IDEMPOTENCY_KEY}` was already used, within the idempotency window or by a request still"
    " in flight, for another channel or another body (`detail`: a sentence naming the key):"
    " nothing was published; a retry must repeat the first request, a new event needs a new key.",
    "502": "The broker refused to route the event (the events exchange lost its alternate"
    " exchange): not retried by the gateway, the event was not accepted.",
    "503": "Neither the broker nor the fallback store can take the event (the store is full, or"
    f" cannot be written): retry after `Retry-After` seconds ({RETRY_AFTER_STORE_FULL_S} when"
    f" full, {RETRY_AFTER_STORE_BROKEN_S} when unwritable).",
}


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Every error the gateway answers has this body.",
        "properties": {
            "detail": {
                "description": "What is wrong: a sentence, or (invalid payload) every error.",
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"$ref": SCHEMAS + "PayloadError"}},
                ],
            }
        },
        "required": ["detail"],
    }


def _payload_error_schema() -> dict[str, Any]:
    # `app.catalog.payload.InvalidPayload.errors`; pydantic adds `ctx` on some errors.
    return {
        "type": "object",
        "properties": {
            "type": {"type": "string", "description": "The kind of error (`missing`, ...)."},
            "loc": {
                "type": "array",
                "items": {"type": ["string", "integer"]},
                "description": "Where in the payload, as a path of keys and indices.",
            },
            "msg": {"type": "string", "description": "What is wrong, for people."},
            "pointer": {
                "type": "string",
                "description": "The same place as a JSON Pointer (RFC 6901); `` is the payload.",
            },
        },
        "required": ["type", "loc", "msg", "pointer"],
        "additionalProperties": True,
    }


def _id_schema(description: str) -> dict[str, Any]:
    # `_ID_PATTERN` is what the ingress checks; maxLength/minLength repeat it for generators.
    return {
        "type": "string",
        "pattern": _ID_PATTERN.pattern,
        "minLength": 1,
        "maxLength": 200,
        "description": description,
    }


def _accepted_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "message_id": _id_schema(
                "The event's `message_id`: the `Idempotency-Key` when given, else generated."
            ),
            "status": {
                "type": "string",
                "enum": [outcome.value for outcome in Outcome],
                "description": "`published`: the broker confirmed it. `stored`: it is durably"
                " in the fallback store and will be replayed once the broker is back.",
            },
        },
        "required": ["message_id", "status"],
        "additionalProperties": False,
    }


def _readiness_schema() -> dict[str, Any]:
    # `Gateway.readiness`.
    return {
        "type": "object",
        "properties": {
            "ready": {"type": "boolean"},
            "breaker": {"type": "string", "enum": [state.value for state in BreakerState]},
            "broker_connected": {"type": "boolean"},
            "store_depth": {"type": "integer", "minimum": 0},
            "store_bytes": {"type": "integer", "minimum": 0},
            "topology_mismatches": {"type": "array", "items": {"type": "string"}},
            "stranded_channels": {
                "type": "object",
                "additionalProperties": {"type": "integer", "minimum": 0},
            },
        },
        "required": ["ready", "breaker", "broker_connected", "store_depth", "store_bytes"],
    }


def _json(ref: str, **extra: Any) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": SCHEMAS + ref}}}, **extra}


def _error(
    status: str,
    *,
    headers: dict[str, Any] | None = None,
    examples: dict[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """An error response; `examples`: name -> (summary, `detail`)."""
    response = {"description": ERRORS[status], **_json("Error")}
    if examples:
        response["content"]["application/json"]["examples"] = {
            name: {"summary": summary, "value": {"detail": detail}}
            for name, (summary, detail) in examples.items()
        }
    if headers:
        response["headers"] = headers
    return response


def _header(schema: dict[str, Any], description: str, *, required: bool = True) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


# The sentences the gateway answers, for an example key: what `app.idempotency` raises.
EXAMPLE_KEY = "order-1234-attempt"
IN_FLIGHT_EXAMPLE = str(KeyInFlight(EXAMPLE_KEY))
CONFLICT_EXAMPLE = str(KeyConflict(EXAMPLE_KEY, "orders.created", "orders.created"))


def _event_responses(channel: Channel | None) -> dict[str, Any]:
    accepted: dict[str, Any] = {
        "description": "Accepted: published, or stored to be replayed (`status`). With"
        f" `{REPLAYED_HEADER}: true`, the answer to a repeat of an earlier request's"
        f" `{IDEMPOTENCY_KEY}` within the idempotency window: that request's `message_id` and"
        " `status`, and nothing was published again.",
        **_json("Accepted"),
        "headers": {
            REPLAYED_HEADER: _header(
                {"type": "string", "enum": ["true"]},
                f"Only on the answer to a repeat of an `{IDEMPOTENCY_KEY}` this replica accepted"
                " within its idempotency window: the body is the first request's `message_id` and"
                " `status`; nothing was published again. Absent on a first request.",
                required=False,
            )
        },
    }
    if channel is not None and channel.deprecated:
        accepted["headers"]["Deprecation"] = _header(
            {"type": "string", "enum": ["true"]},
            "The channel is deprecated (RFC 9745): still accepted; plan to move off it.",
        )
    retry_after = _header({"type": "integer", "minimum": 1}, "Seconds to wait before retrying.")
    responses = {
        "202": accepted,
        "401": _error(
            "401",
            headers={"WWW-Authenticate": _header({"type": "string"}, "`Bearer`.")},
        ),
        "404": _error("404"),
        "409": _error(
            "409",
            headers={
                "Retry-After": _header(
                    {"type": "integer", "minimum": 1},
                    f"Seconds to wait before retrying ({RETRY_AFTER_IN_FLIGHT_S}).",
                )
            },
            examples={"keyInFlight": ("The first request is still in flight.", IN_FLIGHT_EXAMPLE)},
        ),
        "413": _error(
            "413",
            headers={"Connection": _header({"type": "string", "enum": ["close"]}, "`close`.")},
        ),
        "422": _error(
            "422",
            examples={
                "idempotencyConflict": (
                    f"The `{IDEMPOTENCY_KEY}` was used for another body.",
                    CONFLICT_EXAMPLE,
                )
            },
        ),
        "502": _error("502"),
        "503": _error("503", headers={"Retry-After": retry_after}),
    }
    if channel is not None:
        # A channel's own path always exists; only the generic one can name an unknown channel.
        del responses["404"]
    return responses


def _id_headers() -> list[dict[str, Any]]:
    return [
        {
            "name": IDEMPOTENCY_KEY,
            "in": "header",
            "required": False,
            "description": "Send the same key when retrying the same event; a new event needs a"
            " new key. Without it the event gets a new `message_id` (32 hex digits) and every"
            f" request is a new event.\n\n{IDEMPOTENCY}",
            "schema": _id_schema(
                "Becomes the event's `message_id`; a repeat within the idempotency window is not"
                " published again."
            ),
        },
        {
            "name": CORRELATION_ID,
            "in": "header",
            "required": False,
            "schema": _id_schema("Becomes the event's `correlation_id`. Default: a new id."),
        },
    ]


def _channel_operation(
    channel: Channel, accepted_ref: str, security: list[dict[str, list[str]]]
) -> dict[str, Any]:
    examples = {
        f"example{index}" if index else "example": {"value": copy.deepcopy(example)}
        for index, example in enumerate(channel.examples)
    }
    description = "\n\n".join(
        part
        for part in (
            "**Deprecated:** still accepted; plan to move off it." if channel.deprecated else "",
            channel.description.strip(),
            f"Publishes a `{channel.name}` event: routing key `{channel.name}` on the events"
            " exchange. Money amounts may be JSON numbers or decimal strings.",
        )
        if part
    )
    operation: dict[str, Any] = {
        "tags": ["events"],
        "operationId": "post" + title_of(channel.name),
        "summary": channel.summary,
        "description": description,
        "parameters": _id_headers(),
        "requestBody": {
            "required": True,
            "description": f"One `{channel.name}` payload; no envelope.",
            "content": {
                "application/json": {"schema": {"$ref": accepted_ref}, "examples": examples}
            },
        },
        "responses": _event_responses(channel),
        "security": security,
    }
    if channel.deprecated:
        operation["deprecated"] = True
    return operation


def _generic_operation(catalog: Catalog, security: list[dict[str, list[str]]]) -> dict[str, Any]:
    # The route the ingress really has; documented so that its 404 is.
    return {
        "tags": ["events"],
        "operationId": "postEvent",
        "summary": "Publish an event of any channel, by name.",
        "description": "The route behind the per-channel operations, which say what each"
        " channel's payload is. An unknown channel is answered `404`.",
        "parameters": [
            {
                "name": "channel",
                "in": "path",
                "required": True,
                "schema": {
                    "type": "string",
                    "pattern": NAME_PATTERN.pattern,
                    "maxLength": MAX_NAME_LENGTH,
                    "examples": list(catalog),
                },
            },
            *_id_headers(),
        ],
        "requestBody": {
            "required": True,
            "description": "The channel's payload as JSON.",
            "content": {"application/json": {"schema": {}}},
        },
        "responses": _event_responses(None),
        "security": security,
    }


def _operations_paths() -> dict[str, Any]:
    return {
        "/healthz": {
            "get": {
                "tags": ["operations"],
                "operationId": "getHealth",
                "summary": "Liveness: 200 while the process serves.",
                "responses": {"200": {"description": "Alive.", **_json("Health")}},
                "security": [],
            }
        },
        "/readyz": {
            "get": {
                "tags": ["operations"],
                "operationId": "getReadiness",
                "summary": "Readiness: can events be accepted (by the broker or the store)?",
                "responses": {
                    "200": {"description": "Ready.", **_json("Readiness")},
                    "503": {
                        "description": "Neither the broker nor the store takes events.",
                        **_json("Readiness"),
                    },
                },
                "security": [],
            }
        },
        "/metrics": {
            "get": {
                "tags": ["operations"],
                "operationId": "getMetrics",
                "summary": "Prometheus metrics (text exposition format).",
                "responses": {
                    "200": {
                        "description": "The metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                "security": [],
            }
        },
        "/": {
            "get": {
                "tags": ["operations"],
                "operationId": "getStatusPage",
                "summary": "The status page, for people.",
                "responses": {
                    "200": {
                        "description": "The page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
                "security": [],
            }
        },
    }


def _referenced(schemas: dict[str, Any], roots: Iterable[str]) -> dict[str, Any]:
    """`schemas` cut down to `roots` and what they reference: the payload schemas come with
    their sending forms too, which the ingress does not take."""
    keep: set[str] = set()
    todo = [root.removeprefix(SCHEMAS) for root in roots]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        found = re.findall(
            r'"\$ref": "' + re.escape(SCHEMAS) + r'([^"]+)"', json.dumps(schemas[name])
        )
        todo.extend(found)
    return {name: schemas[name] for name in sorted(keep)}


def document(catalog: Catalog, *, tokens_required: bool = False) -> dict[str, Any]:
    """The OpenAPI document of a gateway with `catalog`. With `tokens_required` (the gateway has
    API tokens) the event operations need the bearer token; else it is optional, so that the
    document is true of both (and of the committed `openapi.json`)."""
    channels = list(catalog.values())
    all_schemas, refs = payload_schemas(channels)
    accepted = {channel.name: refs[channel.name][1] for channel in channels}
    security: list[dict[str, list[str]]] = [{BEARER: []}]
    if not tokens_required:
        security.append({})  # `{}`: no authentication is also accepted
    paths: dict[str, Any] = {
        f"/v1/events/{channel.name}": {
            "post": _channel_operation(channel, accepted[channel.name], security)
        }
        for channel in channels
    }
    paths["/v1/events/{channel}"] = {"post": _generic_operation(catalog, security)}
    paths.update(_operations_paths())
    schemas = {
        **_referenced(all_schemas, accepted.values()),
        "Accepted": _accepted_schema(),
        "Error": _error_schema(),
        "PayloadError": _payload_error_schema(),
        "Health": {
            "type": "object",
            "properties": {"status": {"type": "string", "enum": ["ok"]}},
            "required": ["status"],
        },
        "Readiness": _readiness_schema(),
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": TITLE, "version": __version__, "description": DESCRIPTION},
        "servers": [{"url": "/", "description": "The gateway that serves this document."}],
        "tags": [
            {"name": "events", "description": "Hand events to the gateway."},
            {"name": "operations", "description": "Health, readiness, metrics."},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of `BREAKWATER_API_TOKENS`. Needed only when the"
                    " gateway has tokens configured; the document a gateway serves says"
                    " which.",
                }
            },
        },
    }


def document_for(catalog: Catalog, settings: Settings) -> dict[str, Any]:
    """The document a gateway with `catalog` and `settings` serves (`breakwater openapi`)."""
    return document(catalog, tokens_required=bool(settings.api_tokens))


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
