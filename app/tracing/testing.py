"""Tracing on, with the spans kept in memory: for tests of a gateway run in-process.

`Gateway(settings, catalog, tracing=tracing)` with the `tracing` of `in_memory()`; every span is
in the exporter as soon as it ends (exported one by one, not in batches).
"""

from __future__ import annotations

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from .settings import DEFAULT_SERVICE_NAME
from .spans import Traced


def in_memory() -> tuple[Traced, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Traced(provider), exporter
