"""Every knob of the gateway, read once from `BREAKWATER_*` variables (and an optional `.env`)."""

from __future__ import annotations

import json
import os
import re
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import (
    AmqpDsn,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode, SettingsConfigDict

from .cloudevents.attributes import CloudEventsMode, is_uri_reference
from .tracing.settings import TracingSettings


class LogFormat(StrEnum):
    console = "console"
    json = "json"


class EventLoop(StrEnum):
    uvloop = "uvloop"
    asyncio = "asyncio"


class StoreSync(StrEnum):
    """SQLite `synchronous` level of the fallback store (see README: what each risks)."""

    full = "FULL"
    normal = "NORMAL"


class Settings(TracingSettings):
    """The `BREAKWATER_*` settings; the `OTEL_*` ones it honours come from TracingSettings."""

    model_config = SettingsConfigDict(
        env_prefix="BREAKWATER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    broker_url: SecretStr = Field(
        default=SecretStr("amqp://guest:guest@localhost:5672/"),
        description="Outbound broker; events are published to `breakwater.events` there. Several comma-separated URLs: the first that answers is used, the next on failure.",
    )
    inbound_broker_url: SecretStr | None = Field(
        default=None,
        description="Broker holding the inbound queues `breakwater.in.<channel>` (one or several URLs, as above); default: broker_url.",
    )
    broker_ca_file: FilePath | None = Field(
        default=None,
        description="CA bundle (PEM) that `amqps://` brokers' certificates are verified against; default: the system's.",
    )
    broker_cert_file: FilePath | None = Field(
        default=None,
        description="Client certificate (PEM) for `amqps://` brokers that require one; needs BREAKWATER_BROKER_KEY_FILE.",
    )
    broker_key_file: FilePath | None = Field(
        default=None, description="Private key (PEM) of BREAKWATER_BROKER_CERT_FILE."
    )
    catalog: str | None = Field(
        default=None,
        description="The channels: a catalog file (`.yaml`, `.json`), `package.module:attribute` of a Python catalog, or the name of an installed `breakwater.catalogs` entry point (see Your own events).",
    )
    http_host: str = Field(default="0.0.0.0", description="Address the HTTP server binds.")
    http_port: int = Field(default=8000, ge=1, le=65535, description="HTTP port.")
    event_loop: EventLoop = Field(
        default=EventLoop.uvloop,
        description=(
            "`uvloop` (with uvicorn's httptools parser) or `asyncio` (the standard library's loop,"
            " for platforms without uvloop); `uvloop` falls back to `asyncio` when it is not"
            " installed."
        ),
    )

    store_path: Path = Field(
        default=Path("./data/fallback.db"), description="SQLite file of the fallback store."
    )
    store_max_bytes: int = Field(
        default=1024**3,
        gt=0,
        description="Bound of the store (bytes of stored events); when full, HTTP answers 503 and AMQP requeues.",
    )
    store_synchronous: StoreSync = Field(
        default=StoreSync.full,
        description="`FULL`: an answered event survives a power loss. `NORMAL`: faster; the last commits before a power loss (not a process crash) may be lost.",
    )

    publish_timeout_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Deadline of one publish: connection check, send and broker confirm.",
    )
    breaker_fail_max: int = Field(
        default=5, ge=1, description="Consecutive publish failures that open the breaker."
    )
    breaker_reset_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds an open breaker waits before a trial publish (doubles on failed trials, capped at 6x, with jitter).",
    )
    replay_rate: float = Field(
        default=1000.0, gt=0, description="Most stored events replayed in any one second."
    )
    replay_batch: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Stored events read and pipelined per replay round.",
    )

    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated bearer tokens; when set, HTTP ingress needs `Authorization: Bearer <token>`.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Largest HTTP body accepted (413 above)."
    )
    max_batch_events: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Most events in one `POST /v1/events/{channel}/batch` (422 above).",
    )
    log_format: LogFormat = Field(
        default=LogFormat.console, description="`console` or `json` (one JSON object per line)."
    )

    inbound_prefetch: int = Field(
        default=256,
        ge=1,
        description="Unacked inbound messages per queue (the forwarding pipeline depth).",
    )
    inbound_single_active_consumer: bool = Field(
        default=True,
        description=(
            "Declare the inbound queues with single active consumer: one replica consumes each"
            " queue, the others take over when it goes, so a channel's AMQP events keep their"
            " order across replicas. Off: all replicas share every queue (more throughput per"
            " channel, no order across replicas)."
        ),
    )
    idempotency_ttl_s: float = Field(
        default=86_400.0,
        ge=0,
        description=(
            "How long an `Idempotency-Key` (or an inbound `message_id`) is remembered: a repeat"
            " within it is answered with the first event's outcome and not published again."
            " 0 turns the window off. Per replica, kept in the store's file."
        ),
    )
    idempotency_max_keys: int = Field(
        default=100_000,
        ge=1,
        description=(
            "Most keys remembered (the oldest go first when more arrive): about 35 MB of memory"
            " per 100,000 keys. The window is whichever is shorter, the TTL or the newest this many."
        ),
    )
    cloudevents: CloudEventsMode = Field(
        default=CloudEventsMode.off,
        description=(
            "`binary`: every channel's outbound events carry their CloudEvents attributes as"
            " `cloudEvents_*` AMQP headers (the CloudEvents AMQP binding's binary content mode),"
            " and its HTTP ingress also takes CloudEvents (structured and binary mode); a"
            " channel's `cloudevents: off` in the catalog opts it out. `off`: only the channels"
            " whose catalog entry says `cloudevents: binary`."
        ),
    )
    cloudevents_source: str | None = Field(
        default=None,
        description=(
            "The CloudEvents `source` of the events that did not arrive as CloudEvents (a"
            " producer's CloudEvent keeps its own), a URI-reference; default: the public URL."
        ),
    )
    public_url: str = Field(
        default="http://localhost:8000",
        description=(
            "The gateway's HTTP address as producers and consumers reach it: the base of the"
            " CloudEvents `dataschema` (`<url>/docs/asyncapi.json#/components/schemas/<payload>`)"
            " and the default `source`."
        ),
    )
    shutdown_grace_s: float = Field(
        default=20.0, gt=0, description="How long SIGTERM waits for in-flight work to finish."
    )

    @field_validator("broker_url", "inbound_broker_url")
    @classmethod
    def _amqp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            urls = split_urls(value.get_secret_value())
            if not urls:
                raise ValueError("must name at least one amqp:// or amqps:// URL")
            for position, url in enumerate(urls, start=1):
                # Validate the shape without echoing the password into the error message.
                try:
                    AmqpDsn(url)
                except ValidationError:
                    raise ValueError(
                        f"URL #{position} must be an amqp:// or amqps:// URL"
                    ) from None
        return value

    @field_validator("cloudevents_source")
    @classmethod
    def _uri_reference(cls, value: str | None) -> str | None:
        if value is not None and not is_uri_reference(value):
            raise ValueError("must be a URI-reference (RFC 3986), e.g. https://events.example.com")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
            raise ValueError("must be an http:// or https:// URL without query or fragment")
        return value.rstrip("/")

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return [token.strip() for token in value.split(",") if token.strip()]
        return value

    @model_validator(mode="after")
    def _cert_with_key(self) -> Settings:
        if (self.broker_cert_file is None) != (self.broker_key_file is None):
            raise ValueError(
                "BREAKWATER_BROKER_CERT_FILE and BREAKWATER_BROKER_KEY_FILE go together"
            )
        return self

    @property
    def events_source(self) -> str:
        """The CloudEvents `source` of the events the gateway stamps itself."""
        return self.cloudevents_source or self.public_url

    @property
    def broker_urls(self) -> list[str]:
        return split_urls(self.broker_url.get_secret_value())

    @property
    def inbound_urls(self) -> list[str]:
        return split_urls((self.inbound_broker_url or self.broker_url).get_secret_value())


def split_urls(value: str) -> list[str]:
    return [url.strip() for url in value.split(",") if url.strip()]


class SettingsError(SystemExit):
    """Raised at start when a setting is wrong; its text names the variable and what is allowed."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = ["breakwater: invalid configuration"]
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper()
            if not name.startswith("OTEL_"):  # read under its standard name, not ours
                name = "BREAKWATER_" + name
            lines.append(f"  {name}: {error['msg']}")
        if os.environ.get("BREAKWATER_LOG_FORMAT", "").strip().lower() == LogFormat.json:
            # Logging is not set up yet (its format is a setting): keep "every line is JSON" anyway.
            message = json.dumps({"level": "critical", "message": "\n".join(lines)})
            raise SettingsError(message) from None
        raise SettingsError("\n".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
