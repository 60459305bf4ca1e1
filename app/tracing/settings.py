"""The OpenTelemetry variables the gateway honours, as settings: read, checked and documented with
the gateway's own (`app.settings.Settings` has these fields), under their standard names.

Tracing is off unless `OTEL_TRACES_EXPORTER` names an exporter: the specification's default is
`otlp`, but a gateway that starts exporting to localhost:4318 because nobody said otherwise would
be tracing on by default. The values are handed to the SDK explicitly, so a `.env` file works for
them as for every other setting; what the SDK and its OTLP exporter read beyond these (headers,
certificates, timeout, compression, resource attributes, the batch processor's `OTEL_BSP_*`) they
read from the environment themselves, as the specification says (`OTEL_SDK_DISABLED=true` too:
the SDK then makes no spans).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SERVICE_NAME = "breakwater"
TRACES_PATH = "/v1/traces"
DEFAULT_TRACES_ENDPOINT = "http://localhost:4318" + TRACES_PATH
# The only OTLP transport shipped: HTTP with protobuf bodies (the gRPC exporter needs grpcio).
OtlpProtocol = Literal["http/protobuf"]


class TracesExporter(StrEnum):
    none = "none"
    otlp = "otlp"
    console = "console"


class Sampler(StrEnum):
    always_on = "always_on"
    always_off = "always_off"
    traceidratio = "traceidratio"
    parentbased_always_on = "parentbased_always_on"
    parentbased_always_off = "parentbased_always_off"
    parentbased_traceidratio = "parentbased_traceidratio"


class TracingSettings(BaseSettings):
    # The fields are read under their aliases, the standard names; by name in code and tests.
    model_config = SettingsConfigDict(populate_by_name=True)

    otel_traces_exporter: TracesExporter = Field(
        default=TracesExporter.none,
        validation_alias="OTEL_TRACES_EXPORTER",
        description=(
            "Tracing (see Tracing): `otlp` exports spans over OTLP/HTTP, `console` prints them"
            " (to try it out); `none`, the default here, makes no spans, and a producer's"
            " `traceparent`/`tracestate` travel on to the consumers unchanged."
        ),
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description="Base URL of the OTLP/HTTP receiver (a collector); spans go to `<url>/v1/traces`.",
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        description="Full URL spans are posted to, used as it is; wins over the base URL.",
    )
    otel_exporter_otlp_protocol: OtlpProtocol = Field(
        default="http/protobuf",
        validation_alias="OTEL_EXPORTER_OTLP_PROTOCOL",
        description="`http/protobuf`, the only OTLP transport the gateway ships (no gRPC).",
    )
    otel_service_name: str | None = Field(
        default=None,
        validation_alias="OTEL_SERVICE_NAME",
        description=(
            "`service.name` of the spans; unset: the one `OTEL_RESOURCE_ATTRIBUTES` names, if any."
        ),
    )
    otel_traces_sampler: Sampler = Field(
        default=Sampler.parentbased_always_on,
        validation_alias="OTEL_TRACES_SAMPLER",
        description=(
            "Which traces are recorded: `parentbased_*` follow the producer's sampling decision"
            " (and the stored one, on replay), `traceidratio` keeps `OTEL_TRACES_SAMPLER_ARG` of"
            " them; `always_on`, `always_off`, `parentbased_always_off` as named."
        ),
    )
    otel_traces_sampler_arg: float | None = Field(
        default=None,
        ge=0,
        le=1,
        validation_alias="OTEL_TRACES_SAMPLER_ARG",
        description="The ratio of the `*traceidratio` samplers, 0 to 1.",
    )

    @field_validator("otel_exporter_otlp_endpoint", "otel_exporter_otlp_traces_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (OTLP over HTTP)")
        return value

    @property
    def tracing(self) -> bool:
        return self.otel_traces_exporter is not TracesExporter.none

    @property
    def traces_endpoint(self) -> str:
        """Where spans are posted, as the specification derives it from the two variables."""
        if self.otel_exporter_otlp_traces_endpoint is not None:
            return self.otel_exporter_otlp_traces_endpoint
        if self.otel_exporter_otlp_endpoint is not None:
            return self.otel_exporter_otlp_endpoint.rstrip("/") + TRACES_PATH
        return DEFAULT_TRACES_ENDPOINT
