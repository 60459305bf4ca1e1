"""The CloudEvents attributes a producer sent, checked against the specification (1.0).

Every ingress reads them into the same `Attributes`, whatever carried them (a structured JSON
body, `ce-*` HTTP headers, `cloudEvents_*` AMQP headers), so the rules are the same everywhere:
what is wrong is reported all at once, each problem in one sentence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from ..events import ID_PATTERN


class CloudEventsMode(StrEnum):
    """Whether a channel's events carry their CloudEvents attributes: `binary` (as AMQP headers
    beside the data, the binding's binary content mode) or `off`."""

    binary = "binary"
    off = "off"


SPECVERSION: Final = "1.0"
# The attributes of the specification; any other lower-case name is an extension.
REQUIRED: Final = ("specversion", "id", "source", "type")
OPTIONAL: Final = ("datacontenttype", "dataschema", "subject", "time")
_NAME = re.compile(r"^[a-z0-9]+$")
# RFC 3986's characters (a URI-reference is made of nothing else) and an absolute URI's scheme.
_URI_REFERENCE = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)
# The media types whose data is JSON, as the CloudEvents SDKs recognise them.
_JSON_MEDIA_TYPE = re.compile(r"^(application|text)/([a-z0-9\-.]+\+)?json$")
# The specification's Integer: a signed 32-bit number.
_INTEGER_RANGE = range(-(2**31), 2**31)
# They travel as AMQP headers of every copy of the event: a producer must not be able to make a
# header frame the broker refuses (which would count against the breaker), nor a store row that
# is mostly attributes.
MAX_ATTRIBUTES_BYTES: Final = 4096


class InvalidCloudEvent(Exception):
    """A request or message that is a CloudEvent, but not a valid one for its channel: `str()`
    says every problem, for the 422 or the dead-letter reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid CloudEvent: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class Attributes:
    """A producer's CloudEvent attributes that its event keeps: `id` (its `message_id`), `source`,
    `time` and `subject` as sent, and its extensions in canonical string form. `type` is the
    channel and `datacontenttype` JSON (both checked); `dataschema` is the gateway's own (the
    data was validated against the channel's schema, not against the producer's)."""

    id: str
    source: str
    time: str | None = None
    subject: str | None = None
    extensions: tuple[tuple[str, str], ...] = ()


def is_json(media_type: str) -> bool:
    """Whether a media type (parameters allowed) says JSON: `application/json`, `…+json`."""
    return bool(_JSON_MEDIA_TYPE.match(media_type.partition(";")[0].strip().lower()))


def is_uri_reference(text: str) -> bool:
    return bool(_URI_REFERENCE.match(text))


def rfc3339(stamp: datetime) -> str:
    """`2026-12-04T10:11:12.345Z`: a UTC time as CloudEvents' `time` writes it."""
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_attributes(raw: Mapping[str, object], channel: str) -> Attributes:
    """The attributes in `raw` (by name; a `None` value is an absent attribute) checked for a
    CloudEvent of `channel`; InvalidCloudEvent with every problem otherwise."""
    given = {name: value for name, value in raw.items() if value is not None}
    problems: list[str] = []
    specversion = given.get("specversion")
    if specversion is None:
        problems.append(f"specversion is missing (it must be {SPECVERSION})")
    elif specversion != SPECVERSION:
        problems.append(f"specversion must be {SPECVERSION}, not {_shown(specversion)}")
    event_id = _required_text(given, "id", problems)
    if event_id is not None and not ID_PATTERN.match(event_id):
        problems.append(
            "id must be 1-200 printable ASCII characters (it becomes the event's message_id)"
        )
    source = _required_text(given, "source", problems)
    if source is not None and not is_uri_reference(source):
        problems.append(f"source must be a URI-reference, not {_shown(source)}")
    event_type = _required_text(given, "type", problems)
    if event_type is not None and event_type != channel:
        problems.append(
            f"type {_shown(event_type)} names another channel than the path's ({channel!r})"
        )
    time = _time(given.get("time"), problems)
    content_type = _optional_text(given, "datacontenttype", problems)
    if content_type is not None and not is_json(content_type):
        problems.append(
            f"datacontenttype must be JSON (application/json or a +json type), not"
            f" {_shown(content_type)}: the channel's data is JSON"
        )
    schema = _optional_text(given, "dataschema", problems)
    if schema is not None and not (_ABSOLUTE.match(schema) and is_uri_reference(schema)):
        problems.append(f"dataschema must be an absolute URI, not {_shown(schema)}")
    subject = _optional_text(given, "subject", problems)
    extensions = _extensions(given, problems)
    size = sum(len(name) + len(str(value).encode(errors="replace")) for name, value in raw.items())
    if size > MAX_ATTRIBUTES_BYTES:
        problems.append(f"the attributes take {size} bytes, more than {MAX_ATTRIBUTES_BYTES}")
    if problems:
        raise InvalidCloudEvent(problems)
    assert event_id is not None  # else a problem was reported
    assert source is not None
    return Attributes(event_id, source, time, subject, extensions)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(value: object) -> str | None:
    """`value` if it is a non-empty string that UTF-8 can carry (a JSON `"\\ud800"` cannot)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:
        return None
    return value


def _required_text(given: Mapping[str, object], name: str, problems: list[str]) -> str | None:
    if name not in given:
        problems.append(f"{name} is missing")
        return None
    return _optional_text(given, name, problems)


def _optional_text(given: Mapping[str, object], name: str, problems: list[str]) -> str | None:
    if name not in given:
        return None
    text = _text(given[name])
    if text is None:
        problems.append(f"{name} must be a non-empty string")
    return text


def _time(value: object, problems: list[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):  # an AMQP timestamp
        return rfc3339(value)
    if isinstance(value, str) and _RFC3339.match(value):
        try:
            datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        except ValueError:
            pass  # the shape of a timestamp, but not a day or time that exists
        else:
            return value
    problems.append(
        f"time must be an RFC 3339 timestamp (2026-12-04T10:11:12Z), not {_shown(value)}"
    )
    return None


def _extensions(given: Mapping[str, object], problems: list[str]) -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    for name, value in given.items():
        if name in REQUIRED or name in OPTIONAL:
            continue
        if not _NAME.match(name) or name == "data":
            problems.append(
                f"{_shown(name)} is not an attribute name (lower-case letters and digits;"
                " `data` is reserved)"
            )
            continue
        text = _canonical(value)
        if text is None:
            problems.append(
                f"extension {name} must be a string, a boolean or a 32-bit integer,"
                f" not {_shown(value)}"
            )
        else:
            found.append((name, text))
    return tuple(found)


def _canonical(value: object) -> str | None:
    """An extension's value in the canonical string form its headers carry."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value in _INTEGER_RANGE else None
    if isinstance(value, str):
        return value if value == "" or _text(value) is not None else None
    return None
