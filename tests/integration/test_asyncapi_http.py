"""The running gateway serves the AsyncAPI page, the committed document behind it, and the page's
renderer itself (no CDN: the page works without internet access)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin

import httpx
import yaml

from .gateway_process import ROOT, GatewayProcess

COMMITTED = ROOT / "asyncapi.yaml"


def _page_assets(html: str) -> tuple[str, str]:
    [script] = re.findall(r'<script src="([^"]+)"></script>', html)
    [stylesheet] = re.findall(r'<link rel="stylesheet" href="([^"]+)">', html)
    return script, stylesheet


def test_the_gateway_serves_the_committed_document_as_yaml_and_json(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gateway = start_gateway()

    as_yaml = httpx.get(f"{gateway.base_url}/docs/asyncapi.yaml")
    as_json = httpx.get(f"{gateway.base_url}/docs/asyncapi.json")

    assert as_yaml.status_code == 200
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert as_yaml.text == Path(COMMITTED).read_text(encoding="utf-8")
    assert as_json.status_code == 200
    assert as_json.headers["content-type"].startswith("application/json")
    assert as_json.json() == yaml.safe_load(as_yaml.text)


def test_the_asyncapi_page_renders_the_document_with_assets_the_gateway_serves(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gateway = start_gateway()
    page_url = f"{gateway.base_url}/docs/asyncapi"

    page = httpx.get(page_url)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "x-breakwater-error" in page.text  # the completed document, not FastStream's raw one
    script, stylesheet = _page_assets(page.text)
    for url, kind, marker in (
        (script, "javascript", "AsyncApiStandalone"),
        (stylesheet, "css", ".aui-root"),
    ):
        absolute = urljoin(page_url, url)
        assert absolute.startswith(gateway.base_url), f"{url} is not served by the gateway"
        asset = httpx.get(absolute)
        assert asset.status_code == 200, absolute
        assert kind in asset.headers["content-type"]
        assert marker in asset.text


def test_the_page_has_no_try_it_out_endpoint_that_would_bypass_the_ingress(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gateway = start_gateway(api_tokens="secret-token")
    attempt = {
        "channelName": "breakwater.in.orders.created",
        "message": {"message": {"order_id": "x"}},
        "options": {"sendToRealBroker": True},
    }

    response = httpx.post(f"{gateway.base_url}/docs/asyncapi/try", json=attempt)

    assert response.status_code == 404
