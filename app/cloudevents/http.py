"""CloudEvents over HTTP ingress (the CloudEvents HTTP binding), for channels with CloudEvents on.

A request is a CloudEvent in
- structured mode: `Content-Type: application/cloudevents+json`, the body one JSON event with its
  attributes and the payload in `data` (or `data_base64`);
- binary mode: any `ce-*` header; the attributes are those headers (percent-decoded), the payload
  is the body and `Content-Type` is its `datacontenttype`.
Anything else is a plain request, the payload as the body. The batch mode
(`application/cloudevents-batch+json`) is refused with the reason: a batch's events go to
`/v1/events/{channel}/batch` as payloads.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from ..catalog import Channel, InvalidPayload
from ..catalog.model import NotJson, load_json
from ..catalog.payload import pointer
from .attributes import Attributes, InvalidCloudEvent, read_attributes

STRUCTURED: Final = "application/cloudevents+json"
BATCH: Final = "application/cloudevents-batch+json"
HTTP_PREFIX: Final = "ce-"
BATCH_REFUSED: Final = (
    f"{BATCH} (the CloudEvents batch mode) is not taken: send each event on its own"
    f" (structured or binary mode), or the payloads to /v1/events/<channel>/batch as a JSON"
    " array or NDJSON, each of which gets its CloudEvents attributes from the gateway"
)


@dataclass(frozen=True, slots=True)
class Received:
    """A CloudEvent request, read and checked: its attributes and its payload, normalised."""

    attributes: Attributes
    body: bytes


def media_type(content_type: str | None) -> str:
    return (content_type or "").partition(";")[0].strip().lower()


def batch_refusal(headers: Iterable[tuple[str, str]], content_type: str | None) -> str | None:
    """Why a batch request for a channel with CloudEvents on is refused: it is the CloudEvents
    batch mode, or one CloudEvent (whose attributes would fit one event of the batch only)."""
    kind = media_type(content_type)
    if kind == BATCH:
        return BATCH_REFUSED
    if kind.startswith("application/cloudevents") or any(
        name.lower().startswith(HTTP_PREFIX) for name, _ in headers
    ):
        return (
            "a batch takes the channel's payloads (a JSON array or NDJSON), not a CloudEvent:"
            " send a CloudEvent to /v1/events/<channel>, one per request"
        )
    return None


def read(
    headers: Iterable[tuple[str, str]], content_type: str | None, body: bytes, channel: Channel
) -> Received | None:
    """The CloudEvent a request for `channel` carries, or None for a plain request. Raises
    InvalidCloudEvent (its attributes, or the event as a whole) or InvalidPayload (its data,
    located in the body)."""
    kind = media_type(content_type)
    if kind == BATCH:
        raise InvalidCloudEvent([BATCH_REFUSED])
    if kind.startswith("application/cloudevents"):
        if kind != STRUCTURED:
            raise InvalidCloudEvent(
                [f"{kind} is not taken: structured CloudEvents are JSON ({STRUCTURED})"]
            )
        return _structured(body, channel)
    raw: dict[str, object] = {}
    problems: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if not lowered.startswith(HTTP_PREFIX):
            continue
        attribute = lowered.removeprefix(HTTP_PREFIX)
        if attribute in raw:
            problems.append(f"{lowered} is given more than once")
        raw[attribute] = _percent_decoded(lowered, value, problems)
    if not raw:
        return None
    if content_type is not None:
        raw["datacontenttype"] = content_type
    attributes = _checked(raw, channel, problems)
    return Received(attributes, channel.payload.validate(body))


def _percent_decoded(name: str, value: str, problems: list[str]) -> str | None:
    # The binding percent-encodes what a header cannot carry (non-ASCII, `%`, `"`, spaces).
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        problems.append(f"{name} is not percent-encoded UTF-8")
        return None


def _checked(raw: dict[str, object], channel: Channel, problems: list[str]) -> Attributes:
    try:
        attributes = read_attributes(raw, channel.name)
    except InvalidCloudEvent as exc:
        raise InvalidCloudEvent([*problems, *exc.problems]) from None
    if problems:
        raise InvalidCloudEvent(problems)
    return attributes


def _structured(body: bytes, channel: Channel) -> Received:
    try:
        event = load_json(body)
    except NotJson as exc:
        raise InvalidCloudEvent([f"the body is not JSON: {exc}"]) from None
    if not isinstance(event, dict):
        raise InvalidCloudEvent(["a structured CloudEvent is a JSON object"])
    problems: list[str] = []
    data = event.pop("data", None)
    encoded = event.pop("data_base64", None)
    if data is not None and encoded is not None:
        problems.append("data and data_base64 are both given; a CloudEvent has one")
    elif data is None and encoded is None:
        problems.append(f"data is missing: it holds the {channel.name} payload")
    attributes = _checked(event, channel, problems)
    if encoded is not None:
        return Received(attributes, channel.payload.validate(_decoded(encoded)))
    try:
        return Received(attributes, channel.payload.validate_data(data))
    except InvalidPayload as exc:
        raise InvalidPayload([_in_data(error) for error in exc.errors]) from None


def _decoded(encoded: Any) -> bytes:
    try:
        if isinstance(encoded, str):
            return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        pass
    raise InvalidCloudEvent(["data_base64 must be a base64 string"])


def _in_data(error: dict[str, Any]) -> dict[str, Any]:
    """A payload error located in the structured body: under `data`."""
    loc = ["data", *error["loc"]]
    return {**error, "loc": loc, "pointer": pointer(loc)}
