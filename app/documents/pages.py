"""The documents' pages and routes: the AsyncAPI and OpenAPI documents as the gateway serves them,
and their renderers' files, which the gateway serves itself so that the pages work offline."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from faststream.asgi import AsgiResponse, AsyncAPIRoute, get
from faststream.asgi.handlers import GetHandler
from faststream.asgi.types import ASGIApp, Scope

from ..catalog import Catalog
from ..settings import Settings
from . import asyncapi, openapi

log = logging.getLogger("breakwater")

APP_DIR = Path(__file__).resolve().parents[1]
REPOSITORY = APP_DIR.parent

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
PACKAGED_ASSETS = APP_DIR / "static/asyncapi"
REACT_COMPONENT = REPOSITORY / "node_modules/@asyncapi/react-component"
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
PACKAGED_OPENAPI_ASSETS = APP_DIR / "static/openapi"
SWAGGER_UI = REPOSITORY / "node_modules/swagger-ui-dist"
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


def document_route(
    specification: asyncapi.GatewayAsyncAPI,
    render: Callable[[asyncapi.AsyncAPIDocument], str],
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


def asyncapi_page() -> tuple[AsyncAPIRoute, list[tuple[str, ASGIApp]]]:
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
        asyncapi_json_path=None,  # served by `document_route`, generated once
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


def openapi_routes(catalog: Catalog, settings: Settings) -> list[tuple[str, ASGIApp]]:
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
