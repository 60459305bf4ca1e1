"""The ASGI application: `faststream run app.main:app`, `python -m app` and `breakwater` all serve it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream.asgi import AsgiFastStream
from faststream.asgi.types import ASGIApp, Receive, Scope, Send

from .catalog import Catalog, CatalogError, load_catalog
from .documents import asyncapi, pages
from .gateway import Gateway
from .operations.logs import configure_logging
from .settings import Settings, get_settings

log = logging.getLogger("breakwater")


class GatewayApp(AsgiFastStream):
    """FastStream's ASGI app matches exact paths only; every other path goes to our Starlette app,
    which has the path-parameter routes (`/v1/events/{channel}`) and JSON errors."""

    def __init__(self, gateway: Gateway, http_app: ASGIApp, **kwargs: object) -> None:
        super().__init__(gateway.inbound, **kwargs)  # type: ignore[arg-type]
        self.gateway = gateway
        self._http_app = http_app

    async def not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http_app(scope, receive, send)
        else:
            await super().not_found(scope, receive, send)


def start_catalog(settings: Settings) -> Catalog:
    """The catalog to serve; with any problem in it the gateway does not start (exit 2), never
    serves a part of it."""
    try:
        catalog = load_catalog(settings.catalog)
    except CatalogError as exc:
        log.critical("cannot start: %s", exc)
        raise SystemExit(2) from None
    log.info("catalog %s: %d channels (%s)", catalog.source, len(catalog), ", ".join(catalog))
    return catalog


def create_app(settings: Settings | None = None) -> GatewayApp:
    settings = settings or get_settings()
    configure_logging(settings.log_format)
    gateway = Gateway(settings, start_catalog(settings))

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with gateway.running():
            yield

    # The document FastStream generates from the inbound broker's subscribers, completed from the
    # catalog (app/documents/asyncapi.py); `asyncapi.yaml` is this document.
    specification = asyncapi.specification(gateway.catalog, settings)
    to_yaml, to_json = asyncapi.AsyncAPIDocument.to_yaml, asyncapi.AsyncAPIDocument.to_json
    page, assets = pages.asyncapi_page()
    as_yaml = pages.document_route(specification, to_yaml, "application/yaml")
    as_json = pages.document_route(specification, to_json, "application/json")
    return GatewayApp(
        gateway,
        gateway.http_app,
        lifespan=lifespan,
        specification=specification,
        asyncapi_path=page,
        asgi_routes=[
            (pages.ASYNCAPI_YAML_PATH, as_yaml),
            (pages.ASYNCAPI_JSON_PATH, as_json),
            *assets,
            # The HTTP ingress' OpenAPI document (app/documents/openapi.py), as `openapi.json`.
            *pages.openapi_routes(gateway.catalog, settings),
        ],
    )


app = create_app()
