"""The OpenAPI 3.1 document of the HTTP ingress, generated from the channel catalog.

One `POST` operation per channel, whose request body is the schema the ingress validates against
(`app.documents.asyncapi.payload_schemas`' accepting form: decimals as numbers or strings), so that a client
generated from this document sends what the gateway takes; and one per channel for its batches
(`/v1/events/<channel>/batch`, `app.ingress.batch`: an array of that same schema, or NDJSON). Every answer `app.ingress.http_api` can give is
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
from ..catalog import Catalog, Channel
from ..catalog.channel import MAX_NAME_LENGTH, NAME_PATTERN, title_of
from ..cloudevents.attributes import CloudEventsMode
from ..cloudevents.http import STRUCTURED
from ..events import ID_PATTERN
from ..ingress.batch import longest_key_base
from ..ingress.http_api import REPLAYED_HEADER
from ..ingress.idempotency import (
    KEY_WRITE_DELAY_S,
    RETRY_AFTER_IN_FLIGHT_S,
    KeyConflict,
    KeyInFlight,
)
from ..ingress.refusals import RETRY_AFTER_STORE_BROKEN_S, RETRY_AFTER_STORE_FULL_S
from ..outbound.breaker import BreakerState
from ..outbound.publisher import Outcome
from ..settings import Settings
from ..tracing.context import TRACEPARENT, TRACESTATE
from . import openapi_cloudevents
from .asyncapi import (
    TRACEPARENT_EXAMPLE,
    duration,
    payload_schemas,
    setting_default,
    setting_name,
)

OPENAPI_VERSION = "3.1.0"
TITLE = "Breakwater HTTP ingress"
SCHEMAS = "#/components/schemas/"
BEARER = "bearerAuth"
# The headers whose values become the event's AMQP message_id / correlation_id.
IDEMPOTENCY_KEY = "Idempotency-Key"
CORRELATION_ID = "X-Correlation-ID"

TTL_SETTING = setting_name("idempotency_ttl_s")
MAX_BATCH_SETTING = setting_name("max_batch_events")
MAX_BATCH_EVENTS: int = setting_default("max_batch_events")
MAX_BODY_SETTING = setting_name("max_body_bytes")
# The longest `Idempotency-Key` base of any batch (one event: `<base>:0`); longer batches less.
LONGEST_KEY_BASE = longest_key_base(1)
ATOMIC = "atomic"
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

## Batches

`POST /v1/events/<channel>/batch` takes many events of one channel in one request: a JSON array \
of the channel's payloads, or NDJSON (`Content-Type: application/x-ndjson`, one payload per line, \
blank lines ignored), at most `{MAX_BATCH_SETTING}` events (by default {MAX_BATCH_EVENTS:,}) and \
`{MAX_BODY_SETTING}` bytes. Each event is validated and answered on its own, in array order: \
`202` as soon as one event is accepted, with one result per event (`message_id` and `status`, or \
the error a single request would have had); valid events are accepted beside invalid ones. \
`?{ATOMIC}=true` is all or nothing at the door: one invalid event, or one key used for another \
event or still in flight, and no event is accepted. When no event is accepted the answer is the \
status a retry should follow (`503`, `409`, `502`, then `422`; refused at the door of an \
atomic batch: `422`, then `409`), with every event's result.

`{IDEMPOTENCY_KEY}: <base>` keys event `i` as `<base>:<i>`: retrying the batch with the same base \
repeats the accepted events (nothing published again) and retries the others. \
`{CORRELATION_ID}` is every event's `correlation_id` (absent: one new id for the whole batch).

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
    " nothing was published; a retry must repeat the first request, a new event needs a new key."
    " On a channel with CloudEvents on, also: a malformed CloudEvent, its `type` naming another"
    " channel, or an `Idempotency-Key` that differs from its `id` (`detail`: a sentence naming"
    " every problem).",
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
    # `ID_PATTERN` is what the ingress checks; maxLength/minLength repeat it for generators.
    return {
        "type": "string",
        "pattern": ID_PATTERN.pattern,
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


# The sentences the gateway answers, for an example key: what `app.ingress.idempotency` raises.
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


def _trace_headers() -> list[dict[str, Any]]:
    """W3C Trace Context (README: Tracing): read, never refused."""
    return [
        {
            "name": TRACEPARENT,
            "in": "header",
            "required": False,
            "description": "The producer's span (W3C Trace Context). With tracing on, the"
            " gateway's spans continue its trace; off, the event carries it to the consumers"
            " unchanged. A malformed value is ignored (the event starts a trace), never refused.",
            "schema": {"type": "string", "examples": [TRACEPARENT_EXAMPLE]},
        },
        {
            "name": TRACESTATE,
            "in": "header",
            "required": False,
            "description": "Vendor data of the same trace, passed on with `traceparent`.",
            "schema": {"type": "string"},
        },
    ]


def _channel_operation(
    channel: Channel,
    accepted_ref: str,
    security: list[dict[str, list[str]]],
    *,
    cloudevents: bool,
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
            openapi_cloudevents.DESCRIPTION if cloudevents else "",
        )
        if part
    )
    operation: dict[str, Any] = {
        "tags": ["events"],
        "operationId": "post" + title_of(channel.name),
        "summary": channel.summary,
        "description": description,
        "parameters": [*_id_headers(), *_trace_headers()],
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
    if cloudevents:
        _take_cloudevents(operation, {"$ref": accepted_ref}, channel.name)
    if channel.deprecated:
        operation["deprecated"] = True
    return operation


def _take_cloudevents(operation: dict[str, Any], data: dict[str, Any], channel: str | None) -> None:
    """`operation` also takes a CloudEvent, in structured and binary mode."""
    operation["parameters"] += openapi_cloudevents.header_parameters(channel)
    content = operation["requestBody"]["content"]
    content[STRUCTURED] = openapi_cloudevents.structured_content(data, channel)


def _generic_operation(
    catalog: Catalog, security: list[dict[str, list[str]]], *, cloudevents: bool = False
) -> dict[str, Any]:
    # The route the ingress really has; documented so that its 404 is.
    operation = {
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
            *_trace_headers(),
        ],
        "requestBody": {
            "required": True,
            "description": "The channel's payload as JSON.",
            "content": {"application/json": {"schema": {}}},
        },
        "responses": _event_responses(None),
        "security": security,
    }
    if cloudevents:  # on some channels: a CloudEvent to another is its payload, often a 422
        _take_cloudevents(operation, {}, None)
    return operation


# --- batches (`app.ingress.batch`) ----------------------------------------------------------------

NDJSON = "application/x-ndjson"
BATCH_ERRORS: dict[str, str] = {
    "202": "At least one event was accepted (published or stored): `results` has one entry per"
    " event, in array order, with its `message_id` and `status`, or (`rejected` > 0: a partly"
    " accepted batch) the error a single request would have had (`error.status`, `detail`,"
    " `retry_after`). Without `atomic`, valid events are accepted beside invalid ones; with"
    " `atomic=true`, one can still be rejected after the door (the store full, the broker"
    " refusing it, its key taken meanwhile). Retrying the batch with the same"
    f" `{IDEMPOTENCY_KEY}` base repeats the accepted events (nothing published again) and"
    " retries the others.",
    "401": ERRORS["401"],
    "404": ERRORS["404"],
    "409": "No event was accepted, and a retry after `Retry-After` seconds"
    f" ({RETRY_AFTER_IN_FLIGHT_S}) may be: without `atomic`, no event was refused `503` and at"
    f" least one event's key (`<base>:<index>`) is still in flight for a request with the same"
    " body; with `atomic=true`, no event is invalid or in conflict, and at least one event's key"
    " is in flight (nothing was submitted). `detail` names the first such key; `results` has"
    " every event's answer.",
    "413": f"The batch's body is larger than `{MAX_BODY_SETTING}`. The gateway closes the"
    " connection after answering.",
    "422": "The request is not a batch the gateway takes (`Error`, `detail` a sentence): the"
    " body is not JSON, not an array, has no events (an empty array, or NDJSON with only blank"
    f" lines) or more than `{MAX_BATCH_SETTING}` ({MAX_BATCH_EVENTS:,} by default); `{ATOMIC}`"
    f" is neither `true` nor `false`; `{IDEMPOTENCY_KEY}` / `{CORRELATION_ID}` is not 1-200"
    f" printable ASCII characters, or the key base is too long for the batch (base, `:` and"
    " the last index at most 200 characters). Or no event was accepted (`BatchRefused`):"
    " without `atomic`, every event was invalid or its key already used for another event"
    " (and none refused `503`, `409` or `502`); with `atomic=true`, at least one event is"
    " invalid or its key already used for another event, so none was submitted. `detail`: every"
    " invalid event's errors, `loc` starting with the event's index and `pointer` into the"
    " batch (`/3/items/0/quantity`); without invalid events, a sentence naming the first"
    " key in conflict. On a channel with CloudEvents on, a request that is a CloudEvent (`ce-*`"
    " headers, `application/cloudevents+json`) or the CloudEvents batch mode"
    " (`application/cloudevents-batch+json`) is refused too (`detail` a sentence): a batch"
    " takes payloads, and each event gets its attributes from the gateway.",
    "502": "No event was accepted; none was refused `503` or `409`, and at least one could not"
    " be routed by the broker (the events exchange lost its alternate exchange): not retried by"
    " the gateway.",
    "503": "No event was accepted, and at least one because neither the broker nor the fallback"
    " store could take it (the store is full, or cannot be written): retry the batch after"
    f" `Retry-After` seconds ({RETRY_AFTER_STORE_FULL_S} when full,"
    f" {RETRY_AFTER_STORE_BROKEN_S} when unwritable).",
}


def _detail_schema(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"$ref": SCHEMAS + "PayloadError"}},
        ],
    }


def _index_schema() -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "description": "The event's place in the batch."}


def _batch_result_schemas() -> dict[str, Any]:
    # `app.ingress.batch.Outcomes.results`, `app.ingress.refusals.Refusal.as_json`.
    accepted = _accepted_schema()
    accepted["description"] = "An accepted event: published, or stored to be replayed."
    accepted["properties"] = {
        "index": _index_schema(),
        **accepted["properties"],
        "repeated": {
            "const": True,
            "description": f"Only on a repeat of a key (`{IDEMPOTENCY_KEY}` base and index)"
            " this replica accepted within its idempotency window: the first `message_id` and"
            " `status`; nothing was published again.",
        },
    }
    accepted["required"] = ["index", *accepted["required"]]
    rejected = {
        "type": "object",
        "description": "An event not accepted: the answer a single request would have had.",
        "properties": {
            "index": _index_schema(),
            "status": {"const": "rejected"},
            "error": {
                "type": "object",
                "properties": {
                    "status": {
                        "type": "integer",
                        "enum": [409, 422, 502, 503],
                        "description": "The status a single request would have been answered.",
                    },
                    "detail": _detail_schema(
                        "What is wrong: a sentence, or (an invalid payload) every error, located"
                        " in the event itself (`pointer` `/items/0/quantity`)."
                    ),
                    "retry_after": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "Seconds to wait before retrying it (`409`, `503`).",
                    },
                },
                "required": ["status", "detail"],
                "additionalProperties": False,
            },
        },
        "required": ["index", "status", "error"],
        "additionalProperties": False,
    }
    not_accepted = {
        "type": "object",
        "description": "A valid event of an `atomic=true` batch refused for the others.",
        "properties": {"index": _index_schema(), "status": {"const": "not_accepted"}},
        "required": ["index", "status"],
        "additionalProperties": False,
    }
    names = {
        "BatchResultAccepted": accepted,
        "BatchResultRejected": rejected,
        "BatchResultNotAccepted": not_accepted,
    }
    mapping = {outcome.value: SCHEMAS + "BatchResultAccepted" for outcome in Outcome}
    mapping |= {
        "rejected": SCHEMAS + "BatchResultRejected",
        "not_accepted": SCHEMAS + "BatchResultNotAccepted",
    }
    return {
        "BatchResult": {
            "description": "One event's answer, by its `status`.",
            "oneOf": [{"$ref": SCHEMAS + name} for name in names],
            "discriminator": {"propertyName": "status", "mapping": mapping},
        },
        **names,
    }


def _results_schema() -> dict[str, Any]:
    return {
        "type": "array",
        "minItems": 1,
        "items": {"$ref": SCHEMAS + "BatchResult"},
        "description": "One result per event, in array order (`index` 0, 1, ...).",
    }


def _batch_accepted_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A batch of which at least one event was accepted.",
        "properties": {
            "accepted": {"type": "integer", "minimum": 1, "description": "Events accepted."},
            "rejected": {"type": "integer", "minimum": 0, "description": "Events not accepted."},
            "results": _results_schema(),
        },
        "required": ["accepted", "rejected", "results"],
        "additionalProperties": False,
    }


def _batch_refused_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A batch of which no event was accepted: `Error`'s `detail` and every"
        " event's result.",
        "properties": {
            "detail": _detail_schema(
                "A sentence (the first refusal of the answer's status), or (`422` with invalid"
                " events) every invalid event's errors, each located in the batch: `loc` starts"
                " with the event's index, `pointer` points into the array (`/3/items/0/quantity`)."
            ),
            "accepted": {"const": 0},
            "rejected": {"type": "integer", "minimum": 1, "description": "Every event."},
            "results": _results_schema(),
        },
        "required": ["detail", "accepted", "rejected", "results"],
        "additionalProperties": False,
    }


def _batch_responses(channel: Channel | None) -> dict[str, Any]:
    single = _event_responses(channel)
    headers = dict(single["202"]["headers"])  # Deprecation on a deprecated channel
    headers[REPLAYED_HEADER] = _header(
        {"type": "string", "enum": ["true"]},
        "Only when every event of the batch repeats one this replica accepted within its"
        " idempotency window (same key base, index and body): nothing was published again.",
        required=False,
    )
    refused_or_error = {
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [{"$ref": SCHEMAS + "Error"}, {"$ref": SCHEMAS + "BatchRefused"}]
                }
            }
        }
    }
    responses: dict[str, Any] = {
        "202": {**_json("BatchAccepted"), "headers": headers},
        "401": _json("Error", headers=single["401"]["headers"]),
        "404": _json("Error"),
        "409": _json("BatchRefused", headers=single["409"]["headers"]),
        "413": _json("Error", headers=single["413"]["headers"]),
        "422": refused_or_error,
        "502": _json("BatchRefused"),
        "503": _json("BatchRefused", headers=single["503"]["headers"]),
    }
    if channel is not None:
        del responses["404"]  # as for one event: only the generic route names an unknown channel
    return {
        status: {"description": BATCH_ERRORS[status], **response}
        for status, response in responses.items()
    }


def _batch_headers() -> list[dict[str, Any]]:
    key, correlation = _id_headers()
    key["description"] = (
        "The base of the batch's keys: event `i` gets `<base>:<i>` as its `message_id` and"
        " idempotency key, so the base, `:` and the last index are at most 200 characters"
        f" together (a base of at most {LONGEST_KEY_BASE} characters for one event,"
        f" {longest_key_base(MAX_BATCH_EVENTS)} for {MAX_BATCH_EVENTS:,}); longer is refused"
        " `422`. Send the same base when retrying the same batch. Without it each event gets a"
        " new `message_id` (32 hex digits) and every request is new events.\n\n"
        "Each event's key is handled as a single request's (see the API description), and"
        " answered in its result: a repeat of an accepted event with the same channel and body"
        " is `repeated: true` with the first `message_id` and `status` (nothing published"
        " again; `Idempotent-Replayed: true` when every event repeats); one still in flight is"
        f" `error.status` `409` with `retry_after` ({RETRY_AFTER_IN_FLIGHT_S}); one used for"
        " another channel or body is `422`. " + IDEMPOTENCY_WINDOW
    )
    key["schema"] = {
        **_id_schema("Event `i`'s `message_id` is `<base>:<i>`."),
        "maxLength": LONGEST_KEY_BASE,
    }
    correlation["description"] = (
        "Every event's `correlation_id`. Default: one new id for the whole batch."
    )
    correlation["schema"] = _id_schema("Becomes every event's `correlation_id`.")
    atomic = {
        "name": ATOMIC,
        "in": "query",
        "required": False,
        "description": "`true`: all or nothing at the door. One invalid event, or one key used"
        " for another event or still in flight, and no event is accepted (`422`, `409`). A"
        " refusal after that (the store full, the broker refusing an event, a key taken"
        " meanwhile) is answered per event.",
        "schema": {"type": "string", "enum": ["true", "false"], "default": "false"},
    }
    return [atomic, key, correlation, *_trace_headers()]


def _batch_body(schema: dict[str, Any], examples: Iterable[Any] = ()) -> dict[str, Any]:
    items = [copy.deepcopy(example) for example in examples]
    array: dict[str, Any] = {
        "schema": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_BATCH_EVENTS,
            **({"items": schema} if schema else {}),
        }
    }
    ndjson: dict[str, Any] = {
        "schema": {
            "type": "string",
            "description": "One payload per line (JSON, no envelope); blank lines are ignored."
            " A line that is not JSON is that event's error, not the batch's.",
        }
    }
    if items:
        array["example"] = items
        ndjson["example"] = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    return {
        "required": True,
        "description": f"The events, in order: a JSON array, or NDJSON (`Content-Type: {NDJSON}`;"
        " `application/ndjson`, `application/jsonl` and `application/x-jsonlines` too). At most"
        f" `{MAX_BATCH_SETTING}` events (by default {MAX_BATCH_EVENTS:,}) and"
        f" `{MAX_BODY_SETTING}` bytes.",
        "content": {"application/json": array, NDJSON: ndjson},
    }


def _channel_batch_operation(
    channel: Channel, accepted_ref: str, security: list[dict[str, list[str]]]
) -> dict[str, Any]:
    description = "\n\n".join(
        part
        for part in (
            "**Deprecated:** still accepted; plan to move off it." if channel.deprecated else "",
            f"Publishes many `{channel.name}` events, in array order: each validated and"
            " answered on its own (`results`), valid ones accepted beside invalid ones unless"
            f" `{ATOMIC}=true`. Money amounts may be JSON numbers or decimal strings.",
        )
        if part
    )
    operation: dict[str, Any] = {
        "tags": ["events"],
        "operationId": "post" + title_of(channel.name) + "Batch",
        "summary": f"Publish a batch of `{channel.name}` events.",
        "description": description,
        "parameters": _batch_headers(),
        "requestBody": _batch_body({"$ref": accepted_ref}, channel.examples),
        "responses": _batch_responses(channel),
        "security": security,
    }
    if channel.deprecated:
        operation["deprecated"] = True
    return operation


def _generic_batch_operation(
    catalog: Catalog, security: list[dict[str, list[str]]]
) -> dict[str, Any]:
    generic = _generic_operation(catalog, security)
    return {
        "tags": ["events"],
        "operationId": "postEventBatch",
        "summary": "Publish a batch of events of any channel, by name.",
        "description": "The route behind the per-channel batch operations, which say what each"
        " channel's payload is. An unknown channel is answered `404`.",
        "parameters": [generic["parameters"][0], *_batch_headers()],
        "requestBody": _batch_body({}),
        "responses": _batch_responses(None),
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


def document(
    catalog: Catalog,
    *,
    tokens_required: bool = False,
    cloudevents: CloudEventsMode = CloudEventsMode.off,
) -> dict[str, Any]:
    """The OpenAPI document of a gateway with `catalog`. With `tokens_required` (the gateway has
    API tokens) the event operations need the bearer token; else it is optional, so that the
    document is true of both (and of the committed `openapi.json`). The channels with
    CloudEvents on (`cloudevents`, or their catalog entry) also take CloudEvents."""
    channels = list(catalog.values())
    stamped = {c.name for c in channels if (c.cloudevents or cloudevents) is CloudEventsMode.binary}
    all_schemas, refs = payload_schemas(channels)
    accepted = {channel.name: refs[channel.name][1] for channel in channels}
    security: list[dict[str, list[str]]] = [{BEARER: []}]
    if not tokens_required:
        security.append({})  # `{}`: no authentication is also accepted
    paths: dict[str, Any] = {
        f"/v1/events/{channel.name}": {
            "post": _channel_operation(
                channel, accepted[channel.name], security, cloudevents=channel.name in stamped
            )
        }
        for channel in channels
    }
    paths["/v1/events/{channel}"] = {
        "post": _generic_operation(catalog, security, cloudevents=bool(stamped))
    }
    for channel in channels:
        paths[f"/v1/events/{channel.name}/batch"] = {
            "post": _channel_batch_operation(channel, accepted[channel.name], security)
        }
    paths["/v1/events/{channel}/batch"] = {"post": _generic_batch_operation(catalog, security)}
    paths.update(_operations_paths())
    schemas = {
        **_referenced(all_schemas, accepted.values()),
        "Accepted": _accepted_schema(),
        "BatchAccepted": _batch_accepted_schema(),
        "BatchRefused": _batch_refused_schema(),
        **_batch_result_schemas(),
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
    return document(
        catalog, tokens_required=bool(settings.api_tokens), cloudevents=settings.cloudevents
    )


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
