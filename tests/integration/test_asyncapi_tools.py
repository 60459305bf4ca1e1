"""Other people's tools accept `asyncapi.yaml`, offline: the AsyncAPI CLI validates it with warnings
counted as failures, and the AsyncAPI HTML template renders every channel, operation and message of
it. Both run with no network (see `offline.py`); the versions are pinned in
tools/asyncapi-tools/package-lock.json."""

from __future__ import annotations

import html
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .offline import HTML_TEMPLATE, ROOT, asyncapi_cli, run_offline

DOCUMENT = ROOT / "asyncapi.yaml"
CLIENT_DOCUMENT = ROOT / "tests" / "consumers" / "asyncapi.yaml"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


def validate(path: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return run_offline([asyncapi_cli(), "validate", path, "--fail-severity", "warn"], home)


def _counts(output: str) -> dict[str, int]:
    """The CLI's summaries, one per group of diagnostics (`✖ 1 problem (0 errors, 0 warnings,
    1 info, 0 hints)`), added up: {"error": 0, "warning": 0, "info": 1, "hint": 0}."""
    summaries = re.findall(r"problems? \(([^)]*)\)", output)
    assert summaries, output
    counts = dict.fromkeys(("error", "warning", "info", "hint"), 0)
    for summary in summaries:
        for count, kind in re.findall(r"(\d+) (error|warning|info|hint)", summary):
            counts[kind] += int(count)
    return counts


def test_the_asyncapi_cli_validates_the_document_without_warnings(tmp_path: Path) -> None:
    result = validate(DOCUMENT, tmp_path)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"File {DOCUMENT} is valid" in result.stdout, output
    counts = _counts(result.stdout)
    assert counts["error"] == 0, output
    assert counts["warning"] == 0, output


def test_the_asyncapi_cli_validates_the_client_document(tmp_path: Path) -> None:
    """The generated consumer's document (test_generated_consumer.py), with its references into
    asyncapi.yaml resolved."""
    result = validate(CLIENT_DOCUMENT.relative_to(ROOT), tmp_path)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "is valid" in result.stdout, output
    assert _counts(result.stdout)["warning"] == 0, output


def test_the_cli_check_fails_on_an_invalid_document(
    document: dict[str, Any], tmp_path: Path
) -> None:
    broken = {
        **document,
        "operations": {
            key: {**op, "action": "publish"} for key, op in document["operations"].items()
        },
    }
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")

    result = validate(path, tmp_path / "home")

    assert result.returncode != 0, result.stdout + result.stderr
    assert _counts(result.stdout)["error"] > 0, result.stdout + result.stderr


@pytest.mark.timeout(300)  # ~13 s alone; four times that measured on a busy 2-core machine
def test_the_html_template_renders_the_document_offline(
    document: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "html"
    # The template by path (no install) and no registry URL (no reachability check).
    result = run_offline(
        [
            asyncapi_cli(),
            "generate",
            "fromTemplate",
            DOCUMENT,
            HTML_TEMPLATE,
            "--no-interactive",
            "--output",
            out,
            "--param",
            "singleFile=true",
            "--registry-url=",
        ],
        tmp_path / "home",
        timeout=280,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    page = (out / "index.html").read_text(encoding="utf-8")
    # Rendered, not only embedded: the page's HTML has an element for each part of the document.
    body = page[page.index("<body") :]
    ids = set(re.findall(r'\bid="([^"]+)"', body))
    for key, operation in document["operations"].items():
        assert f"operation-{operation['action']}-{key}" in ids, key
    for key in document["components"]["messages"]:
        assert f"message-{key}" in ids, key
    for key in document["components"]["schemas"]:
        assert f"schema-{key}" in ids, key
    for key in document["servers"]:
        assert f"server-{key}" in ids, key
    text = html.unescape(re.sub(r"<[^>]+>", " ", body))
    for channel in document["channels"].values():
        if channel["address"] is not None:
            assert channel["address"] in text, channel["address"]
    assert document["info"]["title"] in text
    # One self-contained file: no script, style sheet or image to fetch from anywhere (scripts'
    # own code, which builds such tags as strings, left out).
    markup = re.sub(r"(<script\b[^>]*>).*?</script>", r"\1", page, flags=re.DOTALL)
    tags = re.findall(r"<(?:script|link|img)\b[^>]*>", markup)
    assert tags, "no script, style sheet or image at all: not the page the template makes"
    fetched = [tag for tag in tags if re.search(r'\b(?:src|href)="(?!data:|#)', tag)]
    assert not fetched, fetched
