"""Tracing on: the gateway's spans, named and described as OpenTelemetry's semantic conventions
for HTTP servers and for messaging (RabbitMQ) say.

| span | kind | parent | when |
|---|---|---|---|
| `POST /v1/events/{channel}` (and `.../batch`) | server | the request's `traceparent`, else a new trace | HTTP ingress: reading, validating, publishing or storing, the answer |
| `process breakwater.in.<channel>` | consumer | the inbound message's `traceparent`, else a new trace | AMQP ingress: the same for one delivery |
| `send breakwater.events` | producer | the accepting span | a direct publish, until the broker's confirm |
| `store <channel>` | internal | the accepting span | the event goes to the fallback store, until committed |
| `replay breakwater.events` | producer | the accepting span, and linked to it | a replayed publish, until the broker's confirm |

The accepting span is the first two, and its context is what an event keeps (see `app.tracing`).
A replay is a child of the span that accepted its event, maybe an hour and a restart earlier, so
the whole path stays one trace; the link says the same to tools that show a deferred continuation
apart from a call. Trace context travels as W3C Trace Context only, whatever `OTEL_PROPAGATORS`
says: it is what FastStream's telemetry middleware (and most AMQP instrumentations) read.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from aiormq.abc import DeliveredMessage
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Link, Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..broker.link import describe
from ..broker.topology import EVENTS_EXCHANGE
from ..catalog import Channel
from ..events import DeliveryPath, Event, Headers
from ..ingress.acks import AckWindow
from ..ingress.inbound import Consumer
from . import Rejected, Tracing
from .context import with_context

PROPAGATOR: Final = TraceContextTextMapPropagator()
# The event routes of the HTTP ingress; other paths (health, metrics, documents) make no spans.
_EVENT_ROUTE = re.compile(r"/v1/events/[^/]+(/batch)?")
ERROR_TYPE: Final = "error.type"
REJECTION: Final = "breakwater.rejection.reason"
_MESSAGING = {"messaging.system": "rabbitmq"}


class _Pairs(Getter[Iterable[tuple[str, str]]]):
    """Trace context from an event's headers, (name, value) pairs."""

    def get(self, carrier: Iterable[tuple[str, str]], key: str) -> list[str] | None:
        values = [value for name, value in carrier if name == key]
        return values or None

    def keys(self, carrier: Iterable[tuple[str, str]]) -> list[str]:
        return [name for name, _ in carrier]


class _AsgiHeaders(Getter[Iterable[tuple[bytes, bytes]]]):
    """From an HTTP request's headers as ASGI has them: every field of a name (W3C lets a
    `tracestate` come in several)."""

    def get(self, carrier: Iterable[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.encode("latin-1")
        values = [value.decode("latin-1") for name, value in carrier if name.lower() == wanted]
        return values or None

    def keys(self, carrier: Iterable[tuple[bytes, bytes]]) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]


class _AmqpHeaders(Getter[Mapping[str, Any]]):
    """From an inbound message's header table, whose values can be of any AMQP type: only
    strings can be trace context."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier)


_EVENT_HEADERS = _Pairs()
_ASGI_HEADERS = _AsgiHeaders()
_AMQP_HEADERS = _AmqpHeaders()


def _headers_of(span: Span) -> Headers:
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return tuple(carrier.items())


def _defined(attributes: Mapping[str, AttributeValue | None]) -> dict[str, AttributeValue]:
    return {name: value for name, value in attributes.items() if value is not None}


@contextlib.contextmanager
def _ending(span: Span) -> Iterator[None]:
    """End `span` when the block does; a failure (a broker outage, a full store) is its error.
    Expected failures, so the type and reason, not an exception event with a traceback each."""
    try:
        yield
    except BaseException as exc:
        span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
        span.set_status(StatusCode.ERROR, describe(exc))
        raise
    finally:
        span.end()


class Traced(Tracing):
    """Tracing on: the accepting spans around the ingresses, and (as the publisher's
    PublishTracer) the publish, replay and store spans."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("breakwater", __version__)
        self.publish_tracer = self

    def http(self, app: ASGIApp) -> ASGIApp:
        async def traced(scope: Scope, receive: Receive, send: Send) -> None:
            route = _event_route(scope)
            if route is None:
                await app(scope, receive, send)
                return
            span = self._tracer.start_span(
                f"POST {route}",
                context=PROPAGATOR.extract(scope["headers"], getter=_ASGI_HEADERS),
                kind=SpanKind.SERVER,
                attributes=_defined(
                    {
                        "http.request.method": "POST",
                        "http.route": route,
                        "url.path": scope["path"],
                        "url.scheme": scope.get("scheme", "http"),
                        "network.protocol.version": scope.get("http_version"),
                        "client.address": (scope.get("client") or (None,))[0],
                    }
                ),
            )

            async def answer(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:  # a 4xx is the client's error, not the server span's
                        span.set_attribute(ERROR_TYPE, str(status))
                        span.set_status(StatusCode.ERROR)
                await send(message)

            with trace.use_span(span, end_on_exit=True):
                await app(scope, receive, answer)

        return traced

    def consuming(self, consumer: Consumer) -> Consumer:
        async def traced(
            channel: Channel, window: AckWindow, tag: int, message: DeliveredMessage
        ) -> None:
            # Nothing awaited before the consumer: it must take deliveries in delivery order.
            properties = message.header.properties
            span = self._tracer.start_span(
                f"process {channel.inbound_queue}",
                context=PROPAGATOR.extract(properties.headers or {}, getter=_AMQP_HEADERS),
                kind=SpanKind.CONSUMER,
                attributes=_defined(
                    {
                        **_MESSAGING,
                        "messaging.operation.type": "process",
                        "messaging.operation.name": "process",
                        "messaging.destination.name": message.exchange,
                        "messaging.rabbitmq.destination.routing_key": message.routing_key,
                        "messaging.rabbitmq.message.delivery_tag": tag,
                        "messaging.message.id": properties.message_id,
                        "messaging.message.conversation_id": properties.correlation_id,
                        "messaging.message.body.size": len(message.body),
                    }
                ),
            )
            with trace.use_span(span, end_on_exit=True):
                await consumer(channel, window, tag, message)

        return traced

    def context(self, carrier: Mapping[str, Any] | None) -> Headers:
        # The accepting span is the current one (http(), consuming()); the producer's context,
        # in `carrier`, is its parent already.
        return _headers_of(trace.get_current_span())

    def noting_rejections(self, rejected: Rejected, *, failure: bool) -> Rejected:
        def noted(channel: str, reason: str) -> None:
            rejected(channel, reason)
            span = trace.get_current_span()
            span.set_attribute(REJECTION, reason)
            if failure:
                span.set_attribute(ERROR_TYPE, reason)
                span.set_status(StatusCode.ERROR, f"rejected: {reason}")

        return noted

    @contextlib.contextmanager
    def publishing(self, event: Event, path: DeliveryPath) -> Iterator[Event]:
        """The publish (or replay) span of `event`, and the event as it goes out: with the
        span's trace context in place of the accepting span's."""
        accepted = PROPAGATOR.extract(event.headers, getter=_EVENT_HEADERS)
        links: list[Link] = []
        operation = "send"
        if path is DeliveryPath.replay:
            operation = "replay"
            stored = trace.get_current_span(accepted).get_span_context()
            if stored.is_valid:
                links.append(Link(stored))
        span = self._tracer.start_span(
            f"{operation} {EVENTS_EXCHANGE}",
            context=accepted,
            kind=SpanKind.PRODUCER,
            links=links,
            attributes={
                **_MESSAGING,
                "messaging.operation.type": "send",
                "messaging.operation.name": operation,
                "messaging.destination.name": EVENTS_EXCHANGE,
                "messaging.rabbitmq.destination.routing_key": event.channel,
                "messaging.message.id": event.message_id,
                "messaging.message.conversation_id": event.correlation_id,
                "messaging.message.body.size": len(event.body),
            },
        )
        outgoing = dataclasses.replace(
            event, headers=with_context(event.headers, _headers_of(span))
        )
        with _ending(span):
            yield outgoing

    @contextlib.contextmanager
    def storing(self, event: Event) -> Iterator[None]:
        span = self._tracer.start_span(
            f"store {event.channel}",
            context=PROPAGATOR.extract(event.headers, getter=_EVENT_HEADERS),
            kind=SpanKind.INTERNAL,
            attributes={
                "messaging.message.id": event.message_id,
                "messaging.message.body.size": len(event.body),
            },
        )
        with _ending(span):
            yield

    async def close(self) -> None:
        # Blocks until the batch processor has exported what it holds: not on the event loop.
        await asyncio.to_thread(self._provider.shutdown)


def _event_route(scope: Scope) -> str | None:
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    match = _EVENT_ROUTE.fullmatch(scope["path"])
    if match is None:
        return None
    return "/v1/events/{channel}/batch" if match.group(1) else "/v1/events/{channel}"
