"""The OpenTelemetry SDK set up from the settings: imported only when tracing is on.

The gateway keeps its tracer provider to itself instead of installing it as the process' global
one: nothing else in the process traces through it, and tests run a gateway and a traced consumer
side by side in one process, each with a provider of its own.
"""

from __future__ import annotations

from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from .. import __version__
from .settings import DEFAULT_SERVICE_NAME, TracesExporter, TracingSettings
from .settings import Sampler as SamplerName


def provider_for(settings: TracingSettings) -> TracerProvider:
    """A provider that samples, describes and exports as the settings say; spans are exported in
    batches from a thread of the SDK's (`OTEL_BSP_*`), off the event loop."""
    provider = TracerProvider(resource=_resource(settings), sampler=_sampler(settings))
    provider.add_span_processor(BatchSpanProcessor(_exporter(settings)))
    return provider


def _resource(settings: TracingSettings) -> Resource:
    # Resource.create adds OTEL_RESOURCE_ATTRIBUTES (and OTEL_SERVICE_NAME from the environment)
    # under what is given here.
    resource = Resource.create({SERVICE_VERSION: __version__})
    if settings.otel_service_name is not None:
        named = settings.otel_service_name
    elif str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        named = DEFAULT_SERVICE_NAME
    else:
        return resource
    return resource.merge(Resource({SERVICE_NAME: named}))


def _sampler(settings: TracingSettings) -> Sampler:
    ratio = 1.0 if settings.otel_traces_sampler_arg is None else settings.otel_traces_sampler_arg
    samplers: dict[SamplerName, Sampler] = {
        SamplerName.always_on: ALWAYS_ON,
        SamplerName.always_off: ALWAYS_OFF,
        SamplerName.traceidratio: TraceIdRatioBased(ratio),
        SamplerName.parentbased_always_on: ParentBased(ALWAYS_ON),
        SamplerName.parentbased_always_off: ParentBased(ALWAYS_OFF),
        SamplerName.parentbased_traceidratio: ParentBased(TraceIdRatioBased(ratio)),
    }
    return samplers[settings.otel_traces_sampler]


def _exporter(settings: TracingSettings) -> SpanExporter:
    if settings.otel_traces_exporter is TracesExporter.console:
        return ConsoleSpanExporter()
    # Imported here: `console` needs neither the exporter nor protobuf.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=settings.traces_endpoint)
