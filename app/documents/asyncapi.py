"""The AsyncAPI document: what FastStream generates from the app's brokers, completed with what its
generator cannot say.

FastStream renders the inbound queues (the subscribers in `amqp_ingress`) and, from publishers
declared here on a broker that is never connected, the routing keys of `breakwater.events` and the
dead-letter queue. It cannot render message headers, AMQP properties, queue and exchange arguments,
examples or the payload of a subscriber that reads raw bytes: `GatewayAsyncAPI` adds those to the
generated document, driven by the channel catalog and the topology constants, and pins the parts
that would otherwise depend on the machine (broker URL, object order) so that the document is the
same wherever it is generated. `asyncapi.yaml` at the repository root is this document.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Mapping, Sequence
from io import StringIO
from typing import Any
from urllib.parse import quote, unquote

import yaml
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange
from faststream.specification import AsyncAPI
from pydantic import BaseModel, SecretStr
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from yarl import URL

from .. import __version__
from ..broker.topology import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    EVENTS_EXCHANGE,
    EVENTS_EXCHANGE_ARGUMENTS,
    UNROUTED,
)
from ..catalog import Catalog, Channel, InvalidPayload
from ..catalog.payload import MAX_REASON_TEXT
from ..cloudevents.attributes import SPECVERSION, CloudEventsMode
from ..cloudevents.stamping import SCHEMA_PATH, header
from ..events import CONTENT_TYPE, ERROR_HEADER, PATH_HEADER, SOURCE_QUEUE_HEADER, DeliveryPath
from ..ingress.amqp_ingress import (
    DEAD_LETTER,
    IDEMPOTENCY_CONFLICT,
    REQUEUE_DELAY_S,
    documented_broker,
    inbound_queue,
)
from ..ingress.idempotency import KEY_WRITE_DELAY_S
from ..settings import Settings
from ..tracing.context import TRACEPARENT, TRACESTATE

TITLE = "Breakwater"
AMQP_BINDING_VERSION = "0.3.0"
# Written by the AMQP ingress on every dead-lettered copy, beside `x-breakwater-error`.

PATH_MEANINGS: dict[DeliveryPath, str] = {
    DeliveryPath.direct: "published when it was accepted",
    DeliveryPath.replay: "published later from the fallback store, after a broker outage",
}

PATH_DESCRIPTION = (
    "; ".join(f"`{path.value}`: {meaning}" for path, meaning in PATH_MEANINGS.items()) + "."
)


def setting_name(field: str) -> str:
    """The environment variable of a setting: `BREAKWATER_IDEMPOTENCY_TTL_S`, or the standard
    name of an OpenTelemetry one (`OTEL_TRACES_EXPORTER`)."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, str):
        return alias
    return (str(Settings.model_config.get("env_prefix", "")) + field).upper()


def setting_default(field: str) -> Any:
    return Settings.model_fields[field].default


def duration(seconds: float) -> str:
    """`86400 s = 24 h`: a default as the setting takes it and as people read it."""
    hours = seconds / 3600
    return f"{seconds:g} s = {hours:g} h" if hours >= 1 and hours.is_integer() else f"{seconds:g} s"


IDEMPOTENCY_TTL_SETTING = setting_name("idempotency_ttl_s")
# The idempotency window, as the documents name it.
IDEMPOTENCY_WINDOW = (
    f"`{IDEMPOTENCY_TTL_SETTING}`, by default {duration(setting_default('idempotency_ttl_s'))}"
)
# Why consumers deduplicate by `message_id` although the gateway does not publish repeats.
REPUBLISHED = (
    "a retry that reaches another replica of the gateway, one after the window, or one after a"
    " crash before its key was written (a published event's key is written at most"
    f" {round(KEY_WRITE_DELAY_S * 1000)} ms after its answer or ack) is published again, with the"
    " same `message_id`"
)

# The envelope of every event on `breakwater.events`: (name, where it travels, what it means).
ENVELOPE: tuple[tuple[str, str, str], ...] = (
    (
        "message_id",
        "AMQP property",
        "The event's identity: the `Idempotency-Key` request header or the inbound message's"
        " `message_id` when given, else generated (32 hex digits, ordered by time). Retries and"
        " replays keep it. The gateway does not publish a repeat of a key within its idempotency"
        f" window (per replica), but {REPUBLISHED}: **deduplicate by `message_id`**.",
    ),
    (
        "correlation_id",
        "AMQP property",
        "Ties the event to what caused it: the `X-Correlation-Id` request header or the inbound"
        " message's `correlation_id` when given, else generated.",
    ),
    (
        "timestamp",
        "AMQP property",
        "When the gateway accepted the event (UTC, whole seconds); a replayed event keeps it.",
    ),
    ("type", "AMQP property", "The channel name, which is also the routing key."),
    (
        "content_type",
        "AMQP property",
        f"`{CONTENT_TYPE}`: the body is the payload, validated and normalised by the channel's"
        " model (decimals as strings).",
    ),
    ("delivery_mode", "AMQP property", "`2`: persistent."),
    (PATH_HEADER, "header", PATH_DESCRIPTION),
    (
        "cloudEvents_*",
        "headers",
        "Only on a channel with CloudEvents on (`BREAKWATER_CLOUDEVENTS=binary`, or"
        " `cloudevents: binary` in its catalog entry): the CloudEvents attributes in the binary"
        " content mode of the CloudEvents AMQP binding (`cloudEvents_id` = `message_id`,"
        " `cloudEvents_type` = the channel, `source`, `time`, `dataschema`, `specversion`, and a"
        " producer's `subject` and extensions; `content_type` is `datacontenttype`), read by the"
        " CloudEvents SDKs' AMQP bindings.",
    ),
    (
        TRACEPARENT,
        "header, optional",
        "W3C Trace Context, with `tracestate` beside it when there is one: with the gateway's"
        " tracing on, the span that published the event (the direct publish, or the replay),"
        " so a consumer's span continues the producer's trace as its child; off, the producer's"
        " own, as it sent it. FastStream's `RabbitTelemetryMiddleware` reads it as it is.",
    ),
)
TRACEPARENT_EXAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# The trace context headers of an outbound event (README: Tracing).
TRACE_HEADERS: dict[str, Any] = {
    TRACEPARENT: {
        "type": "string",
        "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$",
        "description": "W3C Trace Context: the span that sent the event (see the envelope).",
        "examples": [TRACEPARENT_EXAMPLE],
    },
    TRACESTATE: {
        "type": "string",
        "description": "W3C Trace Context: the trace's vendor data, beside `traceparent`.",
    },
}


def _envelope_table() -> str:
    rows = [
        "| field | where | meaning |",
        "|---|---|---|",
        *(f"| `{name}` | {where} | {meaning} |" for name, where, meaning in ENVELOPE),
    ]
    return "\n".join(rows)


DESCRIPTION = f"""\
A store-and-forward event gateway for RabbitMQ. Producers hand it typed events, over HTTP or by \
publishing to its inbound queues; it validates each against its channel's schema, stamps an \
envelope and publishes it to the durable topic exchange `{EVENTS_EXCHANGE}`, with the channel name \
as routing key. While the broker is unreachable, accepted events are stored durably and replayed \
once it is back.

## Delivery guarantees
- **At-least-once.** An accepted event is never lost and never silently dropped, but it may \
arrive more than once (after a producer's retry, or a replay after an outage). Duplicates carry \
the same `message_id`: **consumers deduplicate by `message_id`**.
- **A producer's retry is not published twice, within a window, per replica.** A request \
repeating an `Idempotency-Key` (HTTP), or an inbound message repeating a `message_id` (AMQP; \
the two share one set of keys), that this gateway replica accepted within its idempotency window \
({IDEMPOTENCY_WINDOW}) is not published again. That narrows duplicates; it does not end them: \
{REPUBLISHED}, and a replay may publish an event twice (a confirm lost with the connection). \
Consumers still deduplicate by `message_id`.
- **Order per channel.** Events of one channel reach `{EVENTS_EXCHANGE}` in the order they were \
accepted, across outages. There is no order between channels.
- Every event is persistent, publisher-confirmed and published `mandatory`. An event no queue is \
bound for is kept in the queue `{UNROUTED}` (the exchange's alternate exchange), not dropped.

## Consuming
Bind a queue to `{EVENTS_EXCHANGE}` with a channel name as binding key (`orders.created`) or a \
pattern (`orders.*`). Each `send` operation below is one routing key. Declare your own queue \
only: the gateway declares `{EVENTS_EXCHANGE}` (topic, durable, `alternate-exchange: {UNROUTED}`). \
If your client must declare the exchange, declare it passively or with exactly those arguments: \
RabbitMQ keeps an exchange's first arguments, and one declared without the alternate exchange \
makes the gateway refuse events nobody is bound for instead of parking them (it says so on \
`/readyz`). Deduplicate by `message_id`.

## Producing
- **HTTP:** `POST /v1/events/{{channel}}` with the JSON payload as the body. `202` \
`{{"message_id": "…", "status": "published" | "stored"}}`: `published` when the broker confirmed \
it, `stored` when it is durably in the fallback store and will be replayed. Request headers: \
`Idempotency-Key` (becomes `message_id`), `X-Correlation-Id` (becomes `correlation_id`), \
`Authorization: Bearer <token>` when tokens are configured, `traceparent`/`tracestate` (the \
producer's trace, continued). A repeat of an `Idempotency-Key` \
within the window is answered `202` with the first request's `message_id` and `status` and \
`Idempotent-Replayed: true`, and not published again. Errors: `404` unknown channel, `422` \
invalid payload or an `Idempotency-Key` already used for another body or channel, `409` with \
`Retry-After` while the first request with the key is still in flight, `413` body too large, \
`401` missing or wrong token, `503` with `Retry-After` when neither the broker nor the store can \
take the event. `POST /v1/events/{{channel}}/batch` takes many events of one channel (a JSON array, or NDJSON), each validated and answered on its own, in array order (`?atomic=true`: all or nothing; `Idempotency-Key: <base>` keys event i as `<base>:<i>`). The OpenAPI document (`/docs/openapi`) has every answer.
- **AMQP:** publish the JSON payload to the queue `breakwater.in.<channel>` (each `receive` \
operation below). A message is acked once its event is published or stored; an invalid one is \
moved to `{DEAD_LETTER_QUEUE}` with the reason in `{ERROR_HEADER}`. A message whose `message_id` \
this replica accepted within the window is acked without a second publish; one that reuses such a \
`message_id` for another body is dead-lettered (`{ERROR_HEADER}: {IDEMPOTENCY_CONFLICT} …`).

## Envelope
{_envelope_table()}

Money amounts are decimals: producers may send them as JSON strings or numbers; events carry \
them as strings (`"25.00"`), never as floats.
"""


def _default_broker() -> URL:
    default = Settings.model_fields["broker_url"].default
    assert isinstance(default, SecretStr)
    return URL(default.get_secret_value())


def _vhost(url: URL) -> str:
    return unquote(url.path[1:]) or "/"


def _spec_broker(catalog: Sequence[Channel]) -> RabbitBroker:
    """A broker that is never connected: its publishers only describe, for the document, what the
    gateway publishes (it publishes through `outbound.OutboundLink`, not through FastStream). On
    the app's own broker they would declare their exchanges when it starts."""
    url = _default_broker().with_user(None)
    broker = RabbitBroker(str(url))
    events = RabbitExchange(
        EVENTS_EXCHANGE,
        type=ExchangeType.TOPIC,
        durable=True,
        arguments=EVENTS_EXCHANGE_ARGUMENTS,
    )
    for channel in catalog:
        broker.publisher(
            exchange=events,
            routing_key=channel.name,
            # A JSON Schema channel's payload is added by `complete`: FastStream renders models.
            schema=channel.model,
            persist=True,
            mandatory=True,
            title=f"{channel.name}:publish",
            description=(
                f"{channel.summary} Routing key `{channel.name}` on the durable topic exchange"
                f" `{EVENTS_EXCHANGE}`."
            ),
        )
    broker.publisher(
        exchange=DEAD_LETTER,
        persist=True,
        title=f"{DEAD_LETTER_EXCHANGE}:publish",
        description=(
            f"Inbound messages the gateway could not take: the fanout exchange"
            f" `{DEAD_LETTER_EXCHANGE}` on the inbound broker, which the gateway binds to the"
            f" durable queue `{DEAD_LETTER_QUEUE}`. Read that queue, or bind one of your own."
        ),
    )
    return broker


class AsyncAPIDocument:
    """A finished AsyncAPI document; FastStream's page, `faststream docs gen` and the
    `/docs/asyncapi.{json,yaml}` routes all render this one."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    @property
    def title(self) -> str:
        return str(self._data["info"]["title"])

    def to_jsonable(self) -> dict[str, Any]:
        return copy.deepcopy(self._data)

    def to_json(self) -> str:
        return json.dumps(self._data, ensure_ascii=False, indent=2) + "\n"

    def to_yaml(self) -> str:
        out = StringIO()
        yaml.dump(self._data, out, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
        return out.getvalue()


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the Markdown descriptions) as literal blocks, readable in review; no
    anchors and aliases, which some AsyncAPI tools do not follow."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


class GatewayAsyncAPI(AsyncAPI):
    """FastStream's AsyncAPI 3.0 generator, with its output completed from the catalog."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        single_active_consumer: bool = True,
        cloudevents: CloudEventsMode = CloudEventsMode.off,
    ) -> None:
        self.catalog = tuple(catalog.values())
        self.single_active_consumer = single_active_consumer
        self.cloudevents = cloudevents
        super().__init__(
            _spec_broker(self.catalog),
            title=TITLE,
            version=__version__,
            description=DESCRIPTION,
        )

    def to_specification(self) -> AsyncAPIDocument:
        generated = super().to_specification().to_jsonable()
        return AsyncAPIDocument(
            complete(
                generated,
                self.catalog,
                single_active_consumer=self.single_active_consumer,
                cloudevents=self.cloudevents,
            )
        )


def specification(catalog: Catalog, settings: Settings | None = None) -> GatewayAsyncAPI:
    """The app's specification factory; the app adds its inbound broker to it. The inbound queues'
    arguments follow `settings` (default: the settings' defaults, as in `asyncapi.yaml`)."""
    if settings is None:
        return GatewayAsyncAPI(catalog)
    return GatewayAsyncAPI(
        catalog,
        single_active_consumer=settings.inbound_single_active_consumer,
        cloudevents=settings.cloudevents,
    )


def document_for(catalog: Catalog, settings: Settings) -> AsyncAPIDocument:
    """The document a gateway with `catalog` serves (`breakwater asyncapi`)."""
    factory = specification(catalog, settings)
    broker = documented_broker(
        settings.inbound_urls[0],
        catalog,
        settings.inbound_prefetch,
        single_active_consumer=settings.inbound_single_active_consumer,
    )
    factory.add_broker(broker)
    return factory.to_specification()


def differences(committed: str, generated: str) -> str:
    """A unified diff from the committed document to the generated one; empty when they match."""
    return "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            fromfile="asyncapi.yaml (committed)",
            tofile="asyncapi.yaml (generated from the code)",
        )
    )


# --- completing FastStream's output ---------------------------------------------------------


def complete(
    generated: dict[str, Any],
    catalog: Sequence[Channel],
    *,
    single_active_consumer: bool = True,
    cloudevents: CloudEventsMode = CloudEventsMode.off,
) -> dict[str, Any]:
    """The generated document with headers, properties, arguments, payloads and examples added,
    servers and vhosts pinned to the default broker, and everything in catalog order."""
    doc = copy.deepcopy(generated)
    url = _default_broker()
    for channel_obj in doc["channels"].values():
        for binding in channel_obj.get("bindings", {}).get("amqp", {}).values():
            if isinstance(binding, dict) and "vhost" in binding:
                binding["vhost"] = _vhost(url)

    schemas, payload_refs = payload_schemas(catalog)
    doc["components"]["schemas"] = schemas
    outbound: list[str] = []
    inbound: list[str] = []
    for channel in catalog:
        out_key = _channel_key(doc, exchange=EVENTS_EXCHANGE, address=channel.name)
        in_key = _channel_key(doc, queue=channel.inbound_queue)
        sent, accepted = payload_refs[channel.name]
        stamped = (channel.cloudevents or cloudevents) is CloudEventsMode.binary
        _complete_outbound(doc, out_key, channel, payload={"$ref": sent}, stamped=stamped)
        _complete_inbound(
            doc,
            in_key,
            channel,
            {"$ref": accepted},
            single_active_consumer=single_active_consumer,
            stamped=stamped,
        )
        outbound.append(out_key)
        inbound.append(in_key)
    dead_key = _channel_key(doc, exchange=DEAD_LETTER_EXCHANGE)
    _complete_dead_letter(doc, dead_key, catalog)

    doc["servers"] = {
        "outbound": _server(
            url,
            f"The broker the gateway publishes to (`BREAKWATER_BROKER_URL`): it holds"
            f" `{EVENTS_EXCHANGE}`. The default is shown, without credentials.",
        ),
        "inbound": _server(
            url,
            "The broker holding the inbound queues and the dead-letter queue"
            " (`BREAKWATER_INBOUND_BROKER_URL`, by default the outbound broker).",
        ),
    }
    for key in outbound:
        doc["channels"][key]["servers"] = [{"$ref": "#/servers/outbound"}]
    for key in [*inbound, dead_key]:
        doc["channels"][key]["servers"] = [{"$ref": "#/servers/inbound"}]

    order = [*outbound, *inbound, dead_key]
    doc["channels"] = _ordered(doc["channels"], order)
    doc["operations"] = {
        key: _ordered(operation, OPERATION_FIELDS)
        for key, operation in _ordered(
            doc["operations"], [_operation_key(doc, key) for key in order]
        ).items()
    }
    doc["components"]["messages"] = _ordered(
        doc["components"]["messages"], [_message_key(doc, key) for key in order]
    )
    doc["components"]["schemas"] = dict(sorted(doc["components"]["schemas"].items()))
    doc = rename(doc, catalog, outbound=outbound, inbound=inbound, dead_letter=dead_key)
    head = ("asyncapi", "info", "defaultContentType", "servers", "channels", "operations")
    return _ordered(doc, head)


# The order of an object's fields in the document: the order the AsyncAPI spec lists them in.
CHANNEL_FIELDS = ("address", "title", "summary", "description", "servers", "messages", "bindings")
OPERATION_FIELDS = ("action", "title", "summary", "description", "channel", "messages", "bindings")
MESSAGE_FIELDS = (
    "title",
    "name",
    "summary",
    "description",
    "contentType",
    "correlationId",
    "headers",
    "payload",
    "bindings",
    "examples",
)


def _complete_outbound(
    doc: dict[str, Any], key: str, channel: Channel, payload: dict[str, Any], *, stamped: bool
) -> None:
    _set_arguments(_amqp(doc["channels"][key])["exchange"], EVENTS_EXCHANGE_ARGUMENTS)
    operation = doc["operations"][_operation_key(doc, key)]
    operation["title"] = f"{channel.name} events"
    operation["summary"] = channel.summary
    operation["description"] = _with_catalog_text(
        channel,
        f"The gateway publishes every accepted `{channel.name}` event to `{EVENTS_EXCHANGE}` with"
        f" routing key `{channel.name}`: persistent, publisher-confirmed and `mandatory`. Bind a"
        f" queue with binding key `{channel.name}` to receive them. At-least-once: deduplicate by"
        f" `message_id` (the gateway does not publish a producer's repeat within its idempotency"
        f" window, per replica; {REPUBLISHED}). Events of this channel arrive in the order they"
        f" were accepted.",
    )
    _mark_deprecated(operation, channel)
    operation["bindings"]["amqp"]["timestamp"] = True
    example = json.loads(channel.payload.validate(json.dumps(channel.example).encode()))
    _replace_message(
        doc,
        key,
        payload=payload,
        title=channel.payload.title,
        name=channel.payload.title,
        summary=channel.summary,
        description=f"One `{channel.name}` event. Its envelope:\n\n{_envelope_table()}\n",
        correlationId={
            "description": "The AMQP `correlation_id` property: see the envelope.",
            "location": "$message.header#/correlation_id",
        },
        headers={
            "type": "object",
            "properties": {
                PATH_HEADER: {
                    "type": "string",
                    "enum": [path.value for path in DeliveryPath],
                    "description": PATH_DESCRIPTION,
                },
                **cloudevents_headers(channel, stamped=stamped),
                **TRACE_HEADERS,
            },
            "required": [PATH_HEADER, *(CLOUDEVENTS_ALWAYS if stamped else ())],
        },
        bindings={"amqp": {"messageType": channel.name, "bindingVersion": AMQP_BINDING_VERSION}},
        examples=[
            {
                "name": f"{channel.name}.direct",
                "summary": "As consumers receive it: the payload normalised by its model.",
                "headers": {PATH_HEADER: DeliveryPath.direct.value},
                "payload": example,
            }
        ],
    )


CLOUDEVENTS_SETTING = setting_name("cloudevents")
PUBLIC_URL_SETTING = setting_name("public_url")
# The CloudEvents headers every event of a channel with CloudEvents on has.
CLOUDEVENTS_ALWAYS = tuple(
    header(name) for name in ("specversion", "id", "source", "type", "time", "dataschema")
)


INBOUND_CLOUDEVENTS = (
    "\n\nCloudEvents are on for this channel: a message with `cloudEvents_*` (or `cloudEvents:*`)"
    " headers is a CloudEvent in binary mode (CloudEvents AMQP binding; `content_type` is its"
    " `datacontenttype`, which must be JSON). Its `id` is the event's `message_id` and"
    " idempotency key, whatever the `message_id` property says; its `source`, `time`, `subject`"
    " and extensions go out with the event; its `type` must be the channel name. A malformed one"
    f" is dead-lettered with `{ERROR_HEADER}: invalid CloudEvent: …`."
)


def cloudevents_headers(channel: Channel, *, stamped: bool) -> dict[str, Any]:
    """The headers of CloudEvents' binary content mode (AMQP binding) on `channel`'s events."""
    when = (
        "Present: CloudEvents is on for this channel."
        if stamped
        else f"Present only when CloudEvents is on for this channel (`{CLOUDEVENTS_SETTING}=binary`,"
        " or `cloudevents: binary` in its catalog entry)."
    )
    schema_url = f"<{PUBLIC_URL_SETTING}>{SCHEMA_PATH}{channel.payload.title}"
    described = {
        "specversion": ({"const": SPECVERSION}, "The CloudEvents specification version."),
        "id": (
            {},
            "The event's `message_id`: a producer's CloudEvent `id`, else as the envelope says.",
        ),
        "source": (
            {},
            "A URI-reference: a producer's CloudEvent keeps its own; else"
            f" `{setting_name('cloudevents_source')}` (default: `{PUBLIC_URL_SETTING}`).",
        ),
        "type": ({"const": channel.name}, "The channel name, as the routing key."),
        "time": (
            {"format": "date-time"},
            "RFC 3339: a producer's CloudEvent keeps its own; else when the gateway accepted the"
            " event, with milliseconds.",
        ),
        "dataschema": (
            {"format": "uri"},
            f"`{schema_url}`: this payload's schema in the document the gateway serves.",
        ),
        "subject": ({}, "A producer's CloudEvent `subject`, when it had one."),
    }
    headers = {
        header(name): {"type": "string", **extra, "description": f"{text} {when}"}
        for name, (extra, text) in described.items()
    }
    return headers


def _set_arguments(declared: dict[str, Any], arguments: Mapping[str, Any]) -> None:
    """The arguments an exchange or queue is declared with, under two names. The AMQP binding
    (0.3.0) has no field for them: `x-arguments` is this document's extension, which it has always
    carried; `arguments` is the name generated clients read (asyncapi-python declares the exchange
    with them; without them its declaration is refused as inequivalent to the gateway's). The
    binding's exchange and queue objects allow fields it does not define, so both validate."""
    declared["x-arguments"] = dict(arguments)
    declared["arguments"] = dict(arguments)


def _complete_inbound(
    doc: dict[str, Any],
    key: str,
    channel: Channel,
    payload: dict[str, Any],
    *,
    single_active_consumer: bool,
    stamped: bool,
) -> None:
    queue = inbound_queue(channel, single_active_consumer=single_active_consumer)
    _set_arguments(_amqp(doc["channels"][key])["queue"], queue.arguments)
    operation = doc["operations"][_operation_key(doc, key)]
    # `cc` is the routing keys of a publish; the gateway publishes nothing here, it consumes.
    operation["bindings"]["amqp"].pop("cc", None)
    operation["title"] = f"{channel.name} from producers"
    operation["summary"] = f"Producers publish `{channel.name}` payloads to this queue."
    _mark_deprecated(operation, channel)
    operation["description"] = _with_catalog_text(
        channel,
        f"Publish the JSON payload to the queue `{channel.inbound_queue}` (default exchange,"
        f" routing key `{channel.inbound_queue}`). The gateway acks a message once its event is"
        f" published (confirmed) or durably stored. When neither the broker nor the store can"
        f" take it, the message is requeued after {REQUEUE_DELAY_S:g} s. An invalid message is"
        f" moved to `{DEAD_LETTER_QUEUE}` with the reason in `{ERROR_HEADER}`; a valid message"
        f" is never dead-lettered for an outage, however long it lasts.\n\n"
        f"A message with a `message_id` that this replica accepted within its idempotency window"
        f" ({IDEMPOTENCY_WINDOW}; HTTP's `Idempotency-Key`s count too), with the same body once"
        f" normalised, is a repeat (a producer's retried publish, a redelivery): it is acked"
        f" without a second publish (while the first is still being forwarded, it waits for it)."
        f" One that reuses such a `message_id` for another body, or on another channel, is"
        f" dead-lettered with `{ERROR_HEADER}: {IDEMPOTENCY_CONFLICT} …`. The window is per"
        f" replica, so consumers still deduplicate by `message_id`: {REPUBLISHED}."
        + (INBOUND_CLOUDEVENTS if stamped else ""),
    )
    _replace_message(
        doc,
        key,
        title=f"{channel.payload.title}{INBOUND_SUFFIX}",
        name=f"{channel.payload.title}{INBOUND_SUFFIX}",
        summary=channel.summary,
        description=(
            f"The payload of one `{channel.name}` event as JSON; no envelope is needed. Optional"
            f" AMQP properties: `message_id` becomes the event's `message_id` (keep it when"
            f" retrying a publish: a repeat within the gateway's idempotency window is acked, not"
            f" published again, and consumers deduplicate by it; a new event needs a new one),"
            f" `correlation_id` is kept; both are generated when absent. A W3C `traceparent`"
            f" (and `tracestate`) header continues the producer's trace through the gateway."
        ),
        correlationId={
            "description": "The AMQP `correlation_id` property, kept on the outbound event.",
            "location": "$message.header#/correlation_id",
        },
        payload=payload,
        examples=[
            {
                "name": channel.name,
                "summary": channel.summary,
                "payload": copy.deepcopy(channel.example),
            }
        ],
    )


def _complete_dead_letter(doc: dict[str, Any], key: str, catalog: Sequence[Channel]) -> None:
    # A fanout exchange has no routing key to address: `null`, in the spec's own terms.
    doc["channels"][key] = _ordered({**doc["channels"][key], "address": None}, CHANNEL_FIELDS)
    operation = doc["operations"][_operation_key(doc, key)]
    operation["title"] = "Dead letters"
    operation["summary"] = "Inbound messages the gateway rejected."
    operation["description"] = (
        f"The gateway copies every inbound message it rejects (not JSON, not matching its"
        f" channel's schema, unroutable, or reusing a `message_id` of the idempotency window for"
        f" another body: `{IDEMPOTENCY_CONFLICT} …`) to the fanout exchange"
        f" `{DEAD_LETTER_EXCHANGE}`, with"
        f" the inbound queue's name as routing key and the reason in `{ERROR_HEADER}`, then acks"
        f" the original. `{DEAD_LETTER_EXCHANGE}` is bound to `{DEAD_LETTER_QUEUE}`."
    )
    # A fanout exchange ignores routing keys: no `cc` to read meaning into.
    operation["bindings"]["amqp"].pop("cc", None)
    first = catalog[0]
    rejected, reason = _invalid_example(first)
    _replace_message(
        doc,
        key,
        content_type="application/octet-stream",
        title="DeadLetter",
        name="DeadLetter",
        summary="An inbound message the gateway could not take, with the reason.",
        description=(
            "The rejected message as it arrived: its body byte for byte, its headers and its"
            " `message_id`, `correlation_id` and `content_type` properties; `type` is the"
            " channel name."
        ),
        headers={
            "type": "object",
            "properties": {
                ERROR_HEADER: {
                    "type": "string",
                    "maxLength": MAX_REASON_TEXT,
                    "description": "Why the gateway rejected the message, e.g. each error with"
                    " the JSON Pointer of its place in the payload (`/items/0/quantity: message;"
                    f" …`), or `{IDEMPOTENCY_CONFLICT} …` for a `message_id` already used for"
                    " another body.",
                },
                SOURCE_QUEUE_HEADER: {
                    "type": "string",
                    "enum": [channel.inbound_queue for channel in catalog],
                    "description": "The inbound queue the message was taken from.",
                },
            },
            "required": [ERROR_HEADER, SOURCE_QUEUE_HEADER],
            "additionalProperties": True,
        },
        correlationId={
            "description": "The rejected message's `correlation_id` property, if it had one.",
            "location": "$message.header#/correlation_id",
        },
        payload={
            "type": "string",
            "format": "binary",
            "description": "The rejected body, byte for byte: it may not be JSON at all (its"
            " original content type, if any, is kept in the `content_type` property).",
        },
        examples=[
            {
                "name": f"{first.name}.invalid",
                "summary": f"The `{first.name}` example without a required field.",
                "headers": {ERROR_HEADER: reason, SOURCE_QUEUE_HEADER: first.inbound_queue},
                "payload": json.dumps(rejected),
            }
        ],
    )


def _invalid_example(channel: Channel) -> tuple[dict[str, Any], str]:
    """The channel's example without its first field the schema requires, and the reason the
    ingress gives."""
    example = channel.example
    candidates: list[Any] = []
    if isinstance(example, dict):
        candidates = [{k: v for k, v in example.items() if k != missing} for missing in example]
    for rejected in [*candidates, {"unexpected": [None]}]:
        try:
            channel.payload.validate(json.dumps(rejected).encode())
        except InvalidPayload as exc:
            return rejected, exc.reason
    raise AssertionError(f"{channel.name}: no invalid example found for the dead-letter message")


def payload_schemas(
    catalog: Sequence[Channel],
) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """The payload schemas of the document, and per channel the references of what it sends
    (outbound events) and what it accepts (inbound messages).

    A model is described twice where the two differ: as the gateway writes it (`OrderCreated`:
    decimals as plain strings) and as producers may send it (`OrderCreatedInput`: decimals as
    numbers or strings). A JSON Schema channel forwards what it validated: one schema for both.
    """
    models = list(dict.fromkeys(c.model for c in catalog if c.model is not None))
    modes: tuple[JsonSchemaMode, ...] = ("serialization", "validation")
    keys: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (m, mode) for mode in modes for m in models
    ]
    refs, definitions = models_json_schema(keys, ref_template=_SCHEMA_REF + "{model}")
    # pydantic names the two forms `X-Output` and `X-Input` when they differ: not identifiers.
    renamed = json.loads(
        re.sub(
            r'(#/components/schemas/)?([A-Za-z0-9_]+)-(Output|Input)"',
            lambda m: f'{m[1] or ""}{m[2]}{"Input" if m[3] == "Input" else ""}"',
            json.dumps(definitions.get("$defs", {})),
        )
    )
    schemas: dict[str, Any] = dict(renamed)
    # Both forms carry the model's title, and code generators name classes by title: one of the
    # two would come out as `OrderCreated1` (asyncapi-python). The accepted form is titled by its
    # key, `OrderCreatedInput`.
    for key in definitions.get("$defs", {}):
        if key.endswith("-Input"):
            schemas[_renamed_ref(key)]["title"] = _renamed_ref(key)
    found: dict[str, tuple[str, str]] = {}
    for channel in catalog:
        if channel.model is not None:
            sent = _renamed_ref(refs[(channel.model, "serialization")]["$ref"])
            accepted = _renamed_ref(refs[(channel.model, "validation")]["$ref"])
        else:
            title = channel.payload.title
            schemas[title] = {"title": title, **channel.payload.json_schema()}
            sent = accepted = _SCHEMA_REF + title
        found[channel.name] = (sent, accepted)
    return schemas, found


_SCHEMA_REF = "#/components/schemas/"


def _renamed_ref(ref: str) -> str:
    return re.sub(r"-Output$", "", re.sub(r"-Input$", "Input", ref))


INBOUND_SUFFIX = "Inbound"


def rename(
    doc: dict[str, Any],
    catalog: Sequence[Channel],
    *,
    outbound: Sequence[str],
    inbound: Sequence[str],
    dead_letter: str,
) -> dict[str, Any]:
    """Keys that are identifiers in common languages, for the clients generated from the
    document: `ordersCreated` (channel), `sendOrdersCreated` (operation), `OrderCreated`
    (message); FastStream's keys (`orders.created:publish`, `...:Message`) are neither, and the
    `in` of `breakwater.in.<channel>` is a keyword in Python and JavaScript."""
    channels: dict[str, str] = {}
    operations: dict[str, str] = {}
    messages: dict[str, str] = {}
    for channel, out_key, in_key in zip(catalog, outbound, inbound, strict=True):
        name = _camel(channel.name)
        channels[out_key] = name
        channels[in_key] = name + INBOUND_SUFFIX
        operations[_operation_key(doc, out_key)] = "send" + name[0].upper() + name[1:]
        operations[_operation_key(doc, in_key)] = "receive" + name[0].upper() + name[1:]
        messages[_message_key(doc, out_key)] = channel.payload.title
        messages[_message_key(doc, in_key)] = channel.payload.title + INBOUND_SUFFIX
    channels[dead_letter] = "deadLetters"
    operations[_operation_key(doc, dead_letter)] = "sendDeadLetter"
    messages[_message_key(doc, dead_letter)] = "DeadLetter"

    out = copy.deepcopy(doc)
    out["channels"] = {}
    for key, channel_obj in doc["channels"].items():
        message = messages[_message_key(doc, key)]
        renamed = {
            **channel_obj,
            "messages": {message: {"$ref": _pointer("components", "messages", message)}},
        }
        out["channels"][channels[key]] = renamed
    out["operations"] = {}
    for key, operation in doc["operations"].items():
        channel_key = _channel_of(operation)
        message = messages[_message_key(doc, channel_key)]
        out["operations"][operations[key]] = {
            **operation,
            "channel": {"$ref": _pointer("channels", channels[channel_key])},
            "messages": [
                {"$ref": _pointer("channels", channels[channel_key], "messages", message)}
            ],
        }
    out["components"]["messages"] = {
        messages[key]: message for key, message in doc["components"]["messages"].items()
    }
    return out


def _channel_of(operation: dict[str, Any]) -> str:
    ref = str(operation["channel"]["$ref"]).removeprefix("#/channels/")
    return unquote(ref).replace("~1", "/").replace("~0", "~")


def _camel(name: str) -> str:
    """`orders.created.v2` → `ordersCreatedV2`."""
    first, *rest = re.split(r"[._-]", name)
    return first + "".join(word.capitalize() for word in rest)


def _with_catalog_text(channel: Channel, text: str) -> str:
    parts = ["**Deprecated:** still accepted; plan to move off it." if channel.deprecated else ""]
    parts += [channel.description.strip(), text]
    return "\n\n".join(part for part in parts if part)


def _mark_deprecated(operation: dict[str, Any], channel: Channel) -> None:
    if channel.deprecated:
        operation["x-deprecated"] = True


def _replace_message(
    doc: dict[str, Any],
    channel_key: str,
    *,
    payload: dict[str, Any] | None = None,
    content_type: str = CONTENT_TYPE,
    **fields: Any,
) -> None:
    message_key = _message_key(doc, channel_key)
    generated = doc["components"]["messages"][message_key]
    merged = {
        **generated,
        **fields,
        "contentType": content_type,
        "payload": generated["payload"] if payload is None else payload,
    }
    doc["components"]["messages"][message_key] = _ordered(merged, MESSAGE_FIELDS)


def _server(url: URL, description: str) -> dict[str, Any]:
    return {
        "host": f"{url.host}:{url.port}",
        "pathname": url.path or "/",
        "protocol": url.scheme,
        "protocolVersion": "0.9.1",
        "description": description,
    }


def _amqp(channel_obj: dict[str, Any]) -> dict[str, Any]:
    amqp: dict[str, Any] = channel_obj.get("bindings", {}).get("amqp", {})
    return amqp


def _channel_key(
    doc: dict[str, Any],
    *,
    queue: str | None = None,
    exchange: str | None = None,
    address: str | None = None,
) -> str:
    """The key of the one generated channel on `queue`, or on `exchange` with `address`."""

    def matches(channel_obj: dict[str, Any]) -> bool:
        binding = _amqp(channel_obj)
        return (
            (queue is None or binding.get("queue", {}).get("name") == queue)
            and (exchange is None or binding.get("exchange", {}).get("name") == exchange)
            and (address is None or channel_obj.get("address") == address)
        )

    keys = [str(key) for key, channel_obj in doc["channels"].items() if matches(channel_obj)]
    if len(keys) != 1:
        raise LookupError(f"expected one generated channel to complete, found {keys}")
    return keys[0]


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(
        quote(p.replace("~", "~0").replace("/", "~1"), safe="~:._-") for p in parts
    )


def _operation_key(doc: dict[str, Any], channel_key: str) -> str:
    ref = _pointer("channels", channel_key)
    keys = [str(key) for key, op in doc["operations"].items() if op["channel"]["$ref"] == ref]
    if len(keys) != 1:
        raise LookupError(f"expected one operation on channel {channel_key}, found {keys}")
    return keys[0]


def _message_key(doc: dict[str, Any], channel_key: str) -> str:
    [message_ref] = doc["channels"][channel_key]["messages"].values()
    prefix = "#/components/messages/"
    ref = str(message_ref["$ref"])
    assert ref.startswith(prefix), ref
    return unquote(ref.removeprefix(prefix)).replace("~1", "/").replace("~0", "~")


def _ordered(mapping: dict[str, Any], first: Sequence[str]) -> dict[str, Any]:
    """`mapping` with its keys that are in `first` first, in that order, and the others sorted."""
    head = [key for key in first if key in mapping]
    rest = sorted(key for key in mapping if key not in first)
    return {key: mapping[key] for key in [*head, *rest]}
