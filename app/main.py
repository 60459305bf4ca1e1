"""The ASGI application: `faststream run app.main:app`, `python -m app` and `breakwater` all serve it."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from faststream.asgi import AsgiFastStream, AsgiResponse, AsyncAPIRoute, get
from faststream.asgi.handlers import GetHandler
from faststream.asgi.types import ASGIApp, Receive, Scope, Send

from . import openapi, spec
from .catalog import Catalog, CatalogError, load_catalog
from .gateway import Gateway
from .logs import configure_logging
from .settings import Settings, get_settings

log = logging.getLogger("breakwater")

ASYNCAPI_PATH = "/docs/asyncapi"
ASYNCAPI_YAML_PATH = f"{ASYNCAPI_PATH}.yaml"
ASYNCAPI_JSON_PATH = f"{ASYNCAPI_PATH}.json"
ASSETS_PATH = "/docs/static/asyncapi"

# The AsyncAPI page's renderer: two files of npm @asyncapi/react-component (the version of
# package-lock.json). The gateway serves them itself so that the page works where there is no
# internet access. First found wins:
# - package data, app/static/asyncapi/: the container image puts them there before it installs the
#   project, `make install` copies them there from node_modules;
# - node_modules beside the repository (development, after `npm ci`);
# - neither: the page falls back to FastStream's default, a CDN, with a warning.
PACKAGED_ASSETS = Path(__file__).resolve().parent / "static/asyncapi"
REACT_COMPONENT = Path(__file__).resolve().parents[1] / "node_modules/@asyncapi/react-component"
ASSET_MEDIA_TYPES = {
    "index.js": "text/javascript; charset=utf-8",
    "default.min.css": "text/css; charset=utf-8",
}
ASSET_SOURCES: tuple[dict[str, Path], ...] = (
    {name: PACKAGED_ASSETS / name for name in ASSET_MEDIA_TYPES},
    {
        "index.js": REACT_COMPONENT / "browser/standalone/index.js",
        "default.min.css": REACT_COMPONENT / "styles/default.min.css",
    },
)


OPENAPI_PATH = "/docs/openapi"
OPENAPI_JSON_PATH = f"{OPENAPI_PATH}.json"
OPENAPI_ASSETS_PATH = "/docs/static/openapi"

# The OpenAPI page's renderer: two files of npm swagger-ui-dist, found as the AsyncAPI page's are
# (package data first, then node_modules). Without either the page says so and links the document:
# Swagger UI has no CDN fallback here, a page that loads code from the internet is not offline.
PACKAGED_OPENAPI_ASSETS = Path(__file__).resolve().parent / "static/openapi"
SWAGGER_UI = Path(__file__).resolve().parents[1] / "node_modules/swagger-ui-dist"
OPENAPI_ASSET_MEDIA_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
}
OPENAPI_ASSET_SOURCES: tuple[dict[str, Path], ...] = (
    {name: PACKAGED_OPENAPI_ASSETS / name for name in OPENAPI_ASSET_MEDIA_TYPES},
    {name: SWAGGER_UI / name for name in OPENAPI_ASSET_MEDIA_TYPES},
)


def page_assets(sources: Sequence[Mapping[str, Path]]) -> dict[str, Path] | None:
    """The page's assets by name, from the first source that has all of them; None: none has."""
    for source in sources:
        if all(path.is_file() for path in source.values()):
            return dict(source)
    return None


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


def _document(
    specification: spec.GatewayAsyncAPI,
    render: Callable[[spec.AsyncAPIDocument], str],
    media_type: str,
) -> GetHandler:
    """The document, generated on the first request only (generating takes tens of ms)."""

    @functools.cache
    def body() -> bytes:
        return render(specification.to_specification()).encode()

    @get(include_in_schema=False)
    async def document(scope: Scope) -> AsgiResponse:
        return AsgiResponse(body(), 200, {"Content-Type": media_type})

    return document


def _asset(path: Path, media_type: str) -> GetHandler:
    read = functools.cache(path.read_bytes)

    @get(include_in_schema=False)
    async def asset(scope: Scope) -> AsgiResponse:
        headers = {"Content-Type": media_type, "Cache-Control": "public, max-age=3600"}
        return AsgiResponse(read(), 200, headers)

    return asset


def _asyncapi_page() -> tuple[AsyncAPIRoute, list[tuple[str, ASGIApp]]]:
    """The page's route and the routes of its assets. No try-it-out: FastStream's would publish
    any payload to any queue of the inbound broker, without the HTTP ingress' token check."""
    found = page_assets(ASSET_SOURCES)
    if found is None:
        log.warning(
            "the AsyncAPI page's renderer is in neither %s nor %s (`make install` puts it there):"
            " the page at %s loads it from a CDN, which needs internet access",
            PACKAGED_ASSETS,
            REACT_COMPONENT,
            ASYNCAPI_PATH,
        )
        return AsyncAPIRoute(ASYNCAPI_PATH, asyncapi_json_path=None, try_it_out_path=None), []
    # Relative to the page, so that the page also works behind a proxy that adds a path prefix.
    base = ASSETS_PATH.removeprefix(ASYNCAPI_PATH.rsplit("/", 1)[0] + "/")
    route = AsyncAPIRoute(
        ASYNCAPI_PATH,
        asyncapi_json_path=None,  # served by `_document`, generated once
        try_it_out_path=None,
        asyncapi_js_url=f"{base}/index.js",
        asyncapi_css_url=f"{base}/default.min.css",
    )
    assets: list[tuple[str, ASGIApp]] = [
        (f"{ASSETS_PATH}/{name}", _asset(path, ASSET_MEDIA_TYPES[name]))
        for name, path in found.items()
    ]
    return route, assets


# Relative URLs (the page is /docs/openapi): it also works behind a proxy that adds a path prefix.
# `validatorUrl: null`: Swagger UI would otherwise send the document to validator.swagger.io.
# Try-it-out stays: it posts to the HTTP ingress itself, token check included.
_OPENAPI_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "{document}", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null
}});
</script>
</body>
</html>
"""

_OPENAPI_PAGE_WITHOUT_RENDERER = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title></head>
<body>
<p>The page's renderer (npm swagger-ui-dist) is not installed with this gateway
(<code>make install</code> puts it there). The document: <a href="{document}">{document}</a>.</p>
</body>
</html>
"""


def _html(text: str) -> GetHandler:
    body = text.encode()

    @get(include_in_schema=False)
    async def page(scope: Scope) -> AsgiResponse:
        return AsgiResponse(body, 200, {"Content-Type": "text/html; charset=utf-8"})

    return page


def _openapi_routes(catalog: Catalog, settings: Settings) -> list[tuple[str, ASGIApp]]:
    """The OpenAPI document (generated on the first request), its page and the page's assets."""

    @functools.cache
    def body() -> bytes:
        return openapi.to_json(openapi.document_for(catalog, settings)).encode()

    @get(include_in_schema=False)
    async def document(scope: Scope) -> AsgiResponse:
        return AsgiResponse(body(), 200, {"Content-Type": "application/json"})

    page_dir = OPENAPI_PATH.rsplit("/", 1)[0] + "/"
    names = {
        "title": f"{openapi.TITLE} (OpenAPI)",
        "document": OPENAPI_JSON_PATH.removeprefix(page_dir),
        "assets": OPENAPI_ASSETS_PATH.removeprefix(page_dir),
    }
    found = page_assets(OPENAPI_ASSET_SOURCES)
    if found is None:
        log.warning(
            "the OpenAPI page's renderer is in neither %s nor %s (`make install` puts it there):"
            " the page at %s only links the document",
            PACKAGED_OPENAPI_ASSETS,
            SWAGGER_UI,
            OPENAPI_PATH,
        )
        page = _html(_OPENAPI_PAGE_WITHOUT_RENDERER.format(**names))
        return [(OPENAPI_JSON_PATH, document), (OPENAPI_PATH, page)]
    assets: list[tuple[str, ASGIApp]] = [
        (f"{OPENAPI_ASSETS_PATH}/{name}", _asset(path, OPENAPI_ASSET_MEDIA_TYPES[name]))
        for name, path in found.items()
    ]
    page = _html(_OPENAPI_PAGE.format(**names))
    return [(OPENAPI_JSON_PATH, document), (OPENAPI_PATH, page), *assets]


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
    # catalog (app/spec.py); `asyncapi.yaml` is this document.
    specification = spec.specification(gateway.catalog, settings)
    to_yaml, to_json = spec.AsyncAPIDocument.to_yaml, spec.AsyncAPIDocument.to_json
    page, assets = _asyncapi_page()
    return GatewayApp(
        gateway,
        gateway.http.app,
        lifespan=lifespan,
        specification=specification,
        asyncapi_path=page,
        asgi_routes=[
            (ASYNCAPI_YAML_PATH, _document(specification, to_yaml, "application/yaml")),
            (ASYNCAPI_JSON_PATH, _document(specification, to_json, "application/json")),
            *assets,
            # The HTTP ingress' OpenAPI document (app/openapi.py); `openapi.json` is this document.
            *_openapi_routes(gateway.catalog, settings),
        ],
    )


app = create_app()
