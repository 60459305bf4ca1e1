"""app.tracing without a broker: which trace context an event carries, the OTEL_* settings and the
SDK they set up, what tracing off imports, and the spans of a publish that fails over to the real
store (the publisher on the scripted link of test_publisher)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.trace import SpanKind, StatusCode

from app.events import Event
from app.outbound.breaker import Breaker
from app.outbound.publisher import Outcome, ResilientPublisher
from app.settings import SettingsError, load_settings
from app.store.fallback import FallbackStore
from app.tracing import Tracing, tracing_for
from app.tracing.context import producer_context, valid_traceparent, with_context
from app.tracing.sdk import provider_for
from app.tracing.settings import DEFAULT_TRACES_ENDPOINT, TracingSettings
from app.tracing.testing import in_memory

from .test_publisher import DEADLINE_S, ScriptedLink

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (PARENT, True),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later-field", True),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", False),  # 00 has 4 fields
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", False),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", False),
        ("", False),
    ],
)
def test_traceparents_are_checked_as_w3c_trace_context_says(value: str, valid: bool) -> None:
    assert valid_traceparent(value) is valid


def test_a_producers_valid_trace_context_is_carried_and_anything_else_dropped() -> None:
    assert producer_context(None) == ()
    assert producer_context({"idempotency-key": "k"}) == ()
    assert producer_context({"traceparent": PARENT}) == (("traceparent", PARENT),)
    assert producer_context({"traceparent": PARENT, "tracestate": "a=1,b=2"}) == (
        ("traceparent", PARENT),
        ("tracestate", "a=1,b=2"),
    )
    assert producer_context({"traceparent": "00-nonsense"}) == ()
    assert producer_context({"traceparent": PARENT.encode()}) == ()  # AMQP bytes: not a string
    assert producer_context({"tracestate": "a=1"}) == ()  # meaningless without its traceparent
    # A tracestate past the 512 characters receivers must pass on, or not printable, is dropped;
    # the traceparent stays.
    for state in ("a=" + "x" * 511, "a=1\n"):
        assert producer_context({"traceparent": PARENT, "tracestate": state}) == (
            ("traceparent", PARENT),
        )


def test_the_trace_context_of_headers_is_replaced_and_the_other_headers_kept() -> None:
    headers = (("cloudEvents_id", "1"), ("traceparent", "old"), ("tracestate", "s=old"))
    assert with_context(headers, (("traceparent", PARENT),)) == (
        ("cloudEvents_id", "1"),
        ("traceparent", PARENT),
    )


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> TracingSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return TracingSettings(_env_file=None)


def test_tracing_is_off_unless_an_exporter_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not settings(monkeypatch).tracing
    assert type(tracing_for(settings(monkeypatch))) is Tracing
    assert settings(monkeypatch, OTEL_TRACES_EXPORTER="otlp").tracing
    assert not settings(monkeypatch, OTEL_TRACES_EXPORTER="none").tracing


def test_spans_go_where_the_otlp_endpoint_variables_say(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings(monkeypatch).traces_endpoint == DEFAULT_TRACES_ENDPOINT
    base = settings(monkeypatch, OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318/")
    assert base.traces_endpoint == "http://collector:4318/v1/traces"
    full = settings(monkeypatch, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="https://c.example/in")
    assert full.traces_endpoint == "https://c.example/in"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_TRACES_EXPORTER", "jaeger"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
    ],
)
def test_a_wrong_otel_variable_stops_the_start_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert f"  {variable}: " in str(refused.value)


def test_the_sdk_samples_and_names_the_service_as_the_settings_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    provider = provider_for(
        settings(
            monkeypatch,
            OTEL_TRACES_EXPORTER="console",
            OTEL_TRACES_SAMPLER="parentbased_traceidratio",
            OTEL_TRACES_SAMPLER_ARG="0.25",
        )
    )
    assert provider.sampler.get_description() == (
        "ParentBased{root:TraceIdRatioBased{0.25},remoteParentSampled:AlwaysOnSampler,"
        "remoteParentNotSampled:AlwaysOffSampler,localParentSampled:AlwaysOnSampler,"
        "localParentNotSampled:AlwaysOffSampler}"
    )
    assert provider.resource.attributes[SERVICE_NAME] == "breakwater"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=orders-gateway,team=events")
    named = provider_for(settings(monkeypatch, OTEL_TRACES_EXPORTER="console"))
    assert named.resource.attributes[SERVICE_NAME] == "orders-gateway"
    assert named.resource.attributes["team"] == "events"
    explicit = provider_for(
        settings(monkeypatch, OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="gw-eu")
    )
    assert explicit.resource.attributes[SERVICE_NAME] == "gw-eu"


IMPORTED_SDK = """
import sys
from app.main import create_app
from app.settings import Settings
create_app(Settings(_env_file=None, store_path=sys.argv[1]))
print(sorted({m.split(".")[1] for m in sys.modules if m.startswith(("opentelemetry.sdk",
    "opentelemetry.exporter"))}))
"""


@pytest.mark.parametrize(
    ("exporter", "imported"), [("none", "[]"), ("otlp", "['exporter', 'sdk']")]
)
def test_tracing_off_never_imports_the_sdk(tmp_path: Path, exporter: str, imported: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "OTEL_TRACES_EXPORTER": exporter}
    ran = subprocess.run(
        [sys.executable, "-c", IMPORTED_SDK, str(tmp_path / "store.db")],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    assert ran.stdout.strip() == imported


def store_at(tmp_path: Path) -> FallbackStore:
    return FallbackStore(tmp_path / "fallback.db", max_bytes=10_000_000)


async def test_a_failed_publish_is_an_error_span_and_the_store_span_follows(
    tmp_path: Path,
) -> None:
    tracing, spans = in_memory()
    link = ScriptedLink()
    store = store_at(tmp_path)
    await store.open()
    publisher = ResilientPublisher(
        link,  # type: ignore[arg-type]
        Breaker(fail_max=1000, reset_timeout_s=60),
        store,
        deadline_s=DEADLINE_S,
        tracer=tracing.publish_tracer,
    )
    # Accepted with this trace context (the accepting span's, as an ingress stamps it).
    event = Event.accept("orders.created", b"{}", headers=(("traceparent", PARENT),))
    link.refuse(event.message_id)
    try:
        assert await publisher.submit(event) is Outcome.stored
    finally:
        await store.close()

    sent, stored = spans.get_finished_spans()
    assert (sent.name, sent.kind) == ("send breakwater.events", SpanKind.PRODUCER)
    assert sent.status.status_code is StatusCode.ERROR
    assert sent.attributes is not None
    assert sent.attributes["error.type"] == "BrokerUnavailable"
    assert (stored.name, stored.kind) == ("store orders.created", SpanKind.INTERNAL)
    assert stored.status.status_code is StatusCode.UNSET
    for span in (sent, stored):
        assert span.parent is not None
        assert (span.parent.trace_id, span.parent.span_id) == (
            0x4BF92F3577B34DA6A3CE929D0E0E4736,
            0x00F067AA0BA902B7,
        )
