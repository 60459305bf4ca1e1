"""What the OpenAPI document says of a channel with CloudEvents on (`app.cloudevents.http`): the
structured mode's request body and the binary mode's `ce-*` headers, beside the plain payload."""

from __future__ import annotations

from typing import Any

from ..cloudevents.attributes import SPECVERSION
from ..cloudevents.http import BATCH, HTTP_PREFIX, STRUCTURED
from ..events import ID_PATTERN

DESCRIPTION = (
    "CloudEvents are on for this channel: besides the plain payload it takes one CloudEvent"
    f" (specversion {SPECVERSION}), in structured mode (`Content-Type: {STRUCTURED}`, the"
    f" payload in `data`) or binary mode (the `{HTTP_PREFIX}*` headers, the payload as the"
    " body). Its `id` becomes the event's `message_id` and is its idempotency key as an"
    " `Idempotency-Key` would be (one that differs from it is refused `422`); its `type` must be"
    " the channel name; its `source`, `time`, `subject` and extensions go out with the event;"
    " `datacontenttype` must be JSON. Malformed attributes are refused `422`, `detail` naming"
    f" each problem. The batch mode (`{BATCH}`) is refused `422`: use the batch operation."
)


def _attribute(description: str, **schema: Any) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, **schema, "description": description}


def _attributes(channel: str | None) -> dict[str, dict[str, Any]]:
    """The CloudEvents attributes the ingress reads, as JSON Schemas of their values."""
    type_schema: dict[str, Any] = {"const": channel} if channel is not None else {}
    return {
        "specversion": _attribute("The CloudEvents version.", const=SPECVERSION),
        "id": _attribute(
            "Becomes the event's `message_id` and idempotency key.",
            pattern=ID_PATTERN.pattern,
            maxLength=200,
        ),
        "source": _attribute("A URI-reference: where the event happened; kept."),
        "type": _attribute("The channel name.", **type_schema),
        "time": _attribute("RFC 3339; kept.", format="date-time"),
        "subject": _attribute("Kept."),
        "dataschema": _attribute(
            "An absolute URI; the event goes out with the gateway's own (the channel's schema).",
            format="uri",
        ),
    }


def header_parameters(channel: str | None) -> list[dict[str, Any]]:
    """The binary mode's headers (any one of them makes the request a CloudEvent)."""
    return [
        {
            "name": HTTP_PREFIX + name,
            "in": "header",
            "required": False,
            "description": f"Binary mode: the CloudEvent's `{name}`, percent-encoded."
            f" {schema['description']}",
            "schema": schema,
        }
        for name, schema in _attributes(channel).items()
    ]


def structured_content(data_schema: dict[str, Any], channel: str | None) -> dict[str, Any]:
    """The structured mode's body: the attributes, and the payload in `data`."""
    return {
        "schema": {
            "type": "object",
            "description": "One CloudEvent in the JSON event format; other lower-case names are"
            " extension attributes (a string, a boolean or an integer each).",
            "properties": {
                **_attributes(channel),
                "datacontenttype": _attribute(
                    "JSON: `application/json` or a `+json` type.",
                    pattern=r"^(application|text)/([a-zA-Z0-9\-.]+\+)?json(;.*)?$",
                ),
                "data": data_schema,
            },
            "required": ["specversion", "id", "source", "type", "data"],
            "additionalProperties": {"type": ["string", "boolean", "integer"]},
        }
    }
