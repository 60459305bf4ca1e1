"""Tracing: follow one event from the producer's request through the gateway to its consumers.

Off by default (`Tracing`): no span is made and the OpenTelemetry SDK is not even imported; a
producer's W3C `traceparent`/`tracestate` travel on unchanged in the event's headers (see
`context`). On (`OTEL_TRACES_EXPORTER`, see `settings`): `tracing_for` returns `spans.Traced`.

What travels with an event, on: at acceptance its headers get the trace context of the accepting
span (the HTTP server span, or the AMQP ingress' process span), and the store keeps it with the
event, so a replay, even after a restart, continues the same trace. The context published is the
publish (or replay) span's own, replacing the stored one at publish time: a consumer's span is a
child of the span that sent the event. That is the form FastStream's `RabbitTelemetryMiddleware`
reads: `traceparent`/`tracestate` AMQP headers, W3C Trace Context.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..events import Headers
from .context import producer_context

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from ..ingress.inbound import Consumer
    from ..outbound.publisher import PublishTracer
    from .settings import TracingSettings

# An ingress' `on_rejected(channel, reason)`.
Rejected = Callable[[str, str], None]


class Tracing:
    """Tracing off: the ways in and out as they are, and the producer's trace context carried."""

    # The publisher's spans; None keeps its way out free of any tracing code.
    publish_tracer: PublishTracer | None = None

    def http(self, app: ASGIApp) -> ASGIApp:
        """The HTTP ingress' app, with the accepting span around each event request."""
        return app

    def consuming(self, consumer: Consumer) -> Consumer:
        """AMQP ingress' consumer, with the accepting span around each delivery."""
        return consumer

    def context(self, carrier: Mapping[str, Any] | None) -> Headers:
        """The trace context an event accepted now carries, from its request's or message's
        headers (`carrier`)."""
        return producer_context(carrier)

    def noting_rejections(self, rejected: Rejected, *, failure: bool) -> Rejected:
        """An ingress' `on_rejected`, also noting the reason on the accepting span (`failure`:
        as its error)."""
        return rejected

    async def close(self) -> None:
        """Export what is still waiting (at stop)."""


def tracing_for(settings: TracingSettings) -> Tracing:
    if not settings.tracing:
        return Tracing()
    # Only now: with tracing off the SDK is never imported (nor its exporter, nor protobuf).
    from .sdk import provider_for
    from .spans import Traced

    return Traced(provider_for(settings))
