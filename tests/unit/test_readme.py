"""The README and docs/contract.md: their settings tables are the settings class, rendered; their
examples are the files the tests run; their links stay inside the repository."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path

import pytest
from pydantic import SecretStr

from app.documents.asyncapi import setting_name
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CONTRACT = ROOT / "docs/contract.md"
SPECIAL_DEFAULTS = {
    "inbound_broker_url": "the broker URL",
    "api_tokens": "none",
    "catalog": "the installed catalog, else the three built-in channels",
    "cloudevents_source": "the public URL",
    "otel_exporter_otlp_endpoint": "`http://localhost:4318`",
    "otel_exporter_otlp_traces_endpoint": "`<endpoint>/v1/traces`",
    "otel_service_name": "`breakwater`",
    "otel_traces_sampler_arg": "`1`",
}


def _default(name: str) -> str:
    if name in SPECIAL_DEFAULTS:
        return SPECIAL_DEFAULTS[name]
    value = Settings.model_fields[name].default
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, Enum):
        value = value.value
    return f"`{value}`"


def render_settings_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    # The gateway's own settings, then the OpenTelemetry ones it honours.
    fields = sorted(Settings.model_fields.items(), key=lambda item: item[0].startswith("otel_"))
    for name, field in fields:
        assert field.description, f"setting {name} needs a description"
        rows.append(f"| `{setting_name(name)}` | {_default(name)} | {field.description} |")
    return "\n".join(rows)


@pytest.mark.parametrize("document", [README, CONTRACT], ids=lambda path: path.name)
def test_settings_table_matches_the_settings_class(document: Path) -> None:
    text = document.read_text()
    start = text.index("<!-- settings-table:start -->\n") + len("<!-- settings-table:start -->\n")
    end = text.index("<!-- settings-table:end -->")
    assert text[start:end].strip() == render_settings_table(), (
        f"{document.name}: settings table is stale; replace it with:\n" + render_settings_table()
    )


def test_readme_consumer_example_is_the_example_the_tests_run() -> None:
    text = README.read_text()
    start = text.index("<!-- consumer-example:start -->\n```python\n") + len(
        "<!-- consumer-example:start -->\n```python\n"
    )
    end = text.index("```\n<!-- consumer-example:end -->")
    example = README.parent / "examples/consumer/billing.py"
    assert text[start:end] == example.read_text(), "README consumer example differs from the file"


# Public documentation the project's documents may link to; everything else stays in the repository.
PUBLIC_DOCUMENTATION = ("https://pypi.org/project/", "https://www.rabbitmq.com/docs/")
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCUMENTS = [README, CONTRACT, *sorted((ROOT / "examples").glob("*/README.md"))]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_links_stay_in_the_repository_or_go_to_public_documentation(document: Path) -> None:
    for target in LINK.findall(document.read_text()):
        if target.startswith(("http://localhost:", "http://127.0.0.1:")):
            continue  # a running gateway's own pages
        if "://" in target:
            assert target.startswith(PUBLIC_DOCUMENTATION), f"{document.name} links out: {target}"
            continue
        linked = (document.parent / target.split("#")[0]).resolve()
        assert linked.is_relative_to(ROOT), (
            f"{document.name} links outside the repository: {target}"
        )
        assert linked.exists(), f"{document.name} links to a missing file: {target}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_documents_speak_of_the_project_not_of_where_it_was_built(document: Path) -> None:
    text = document.read_text()
    for phrase in ("python-svc", "../shared", "our machines"):
        assert phrase not in text, f"{document.name} mentions {phrase!r}"


def test_the_quick_starts_refused_event_is_answered_as_the_readme_shows(tmp_path: Path) -> None:
    """The second curl of the quick start: its body, and the 422 the gateway answers, verbatim."""
    import asyncio

    import httpx

    from app.main import create_app
    from app.settings import Settings as GatewaySettings

    text = README.read_text()
    quick_start = text[text.index("```console\n$ curl") :]
    second = quick_start.split("$ curl", 3)[2]
    body = re.search(r"-d '([^']*)'", second)
    assert body, "no -d body in the quick start's second curl"
    shown = second.split("\n")[3]  # the line after the command's three lines
    app = create_app(GatewaySettings(store_path=tmp_path / "store.db"))

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.post("/v1/events/orders.created", content=body[1].encode())

    answer = asyncio.run(post())
    assert answer.status_code == 422
    assert answer.text == shown
