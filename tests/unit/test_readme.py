"""The README's configuration table is the settings class, rendered."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from pydantic import SecretStr

from app.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
SPECIAL_DEFAULTS = {
    "inbound_broker_url": "the broker URL",
    "api_tokens": "none",
    "catalog": "the installed catalog, else the three built-in channels",
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
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} needs a description"
        rows.append(f"| `BREAKWATER_{name.upper()}` | {_default(name)} | {field.description} |")
    return "\n".join(rows)


def test_readme_settings_table_matches_the_settings_class() -> None:
    text = README.read_text()
    start = text.index("<!-- settings-table:start -->\n") + len("<!-- settings-table:start -->\n")
    end = text.index("<!-- settings-table:end -->")
    assert text[start:end].strip() == render_settings_table(), (
        "README settings table is stale; replace it with:\n" + render_settings_table()
    )


def test_readme_consumer_example_is_the_example_the_tests_run() -> None:
    text = README.read_text()
    start = text.index("<!-- consumer-example:start -->\n```python\n") + len(
        "<!-- consumer-example:start -->\n```python\n"
    )
    end = text.index("```\n<!-- consumer-example:end -->")
    example = README.parent / "examples/consumer/billing.py"
    assert text[start:end] == example.read_text(), "README consumer example differs from the file"
