"""`breakwater catalog check OLD NEW`: may NEW replace OLD without breaking anyone?

OLD and NEW are catalogs (anything `load_catalog` takes) or AsyncAPI documents the gateway
generated (a previous `asyncapi.yaml`, when the old catalog's source is gone). Per channel the
new catalog's compatibility mode applies (BACKWARD unless the channel says otherwise); a removed
channel breaks every mode but NONE.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema_rs

from ..broker.topology import EVENTS_EXCHANGE
from .channel import CatalogError, Problem
from .compatibility import Compatibility, compare
from .declarative import read_document
from .loading import load_catalog


@dataclass(frozen=True)
class ChannelSchema:
    schema: dict[str, Any]
    compatibility: Compatibility


def read_schemas(spec: str) -> dict[str, ChannelSchema]:
    """The payload schema and compatibility mode of every channel of a catalog or document."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        document = read_document(path)
        if isinstance(document, dict) and "asyncapi" in document:
            return _from_asyncapi(document, spec)
    catalog = load_catalog(spec)
    return {
        name: ChannelSchema(channel.payload.json_schema(), channel.compatibility)
        for name, channel in catalog.items()
    }


def check_catalogs(
    old: dict[str, ChannelSchema],
    new: dict[str, ChannelSchema],
    mode: Compatibility | None = None,
) -> list[str]:
    """One line per break: `channel: MODE: /pointer: what changed`."""
    breaks: list[str] = []
    for name, before in old.items():
        after = new.get(name)
        chosen = mode or (after.compatibility if after else before.compatibility)
        if after is None:
            if chosen != Compatibility.NONE:
                breaks.append(
                    f"{name}: {chosen}: channel removed: its producers would get 404 and its"
                    " consumers nothing more"
                )
            continue
        for reason in compare(before.schema, after.schema, chosen):
            breaks.append(f"{name}: {chosen}: #{reason.path}: {reason.message} ({reason.kind})")
    return breaks


def _from_asyncapi(document: dict[str, Any], source: str) -> dict[str, ChannelSchema]:
    """The outbound channels of a document the gateway generated: address = channel name, the
    message payload with every `$ref` into the document inlined."""
    found: dict[str, ChannelSchema] = {}
    components = document.get("components", {})
    for channel in document.get("channels", {}).values():
        exchange = channel.get("bindings", {}).get("amqp", {}).get("exchange", {})
        if exchange.get("name") != EVENTS_EXCHANGE:
            continue
        [message] = channel["messages"].values()
        resolved = _resolve(message, components)
        try:
            payload = jsonschema_rs.dereference(
                {**_resolve(resolved["payload"], components), "components": components}
            )
        except (jsonschema_rs.ReferencingError, KeyError) as exc:
            problem = Problem(str(channel.get("address")), "", f"cannot read its payload: {exc}")
            raise CatalogError([problem], source) from None
        payload.pop("components", None)
        found[str(channel["address"])] = ChannelSchema(payload, Compatibility.BACKWARD)
    if not found:
        problem = Problem(
            "-", "/channels", f"no channel on {EVENTS_EXCHANGE}: not a Breakwater document"
        )
        raise CatalogError([problem], source)
    return found


def _resolve(node: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """`node`, or what its local `#/components/...` reference points at."""
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return node
    target: Any = {"components": components}
    for part in ref.removeprefix("#/").split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return dict(target)
