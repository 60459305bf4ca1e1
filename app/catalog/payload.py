"""How a channel validates its payload and describes it: a pydantic model, or a JSON Schema.

Both kinds answer the same three questions, so the ingress, the documents and the catalog checks
never ask which kind a channel is: is this body valid (and what is its normalised JSON), what is
wrong with it (every error, with its JSON Pointer), and which schema do the documents show.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import jsonschema_rs
import simplejson
from pydantic import ValidationError

from .model import EventModel, NotJson, load_json, parse_payload

# A dead-letter reason travels in one AMQP header (a long string), and people read it.
MAX_REASON_TEXT = 2000
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


def pointer(path: Sequence[str | int]) -> str:
    """The RFC 6901 JSON Pointer of a location in the payload ("" is the whole payload)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


class InvalidPayload(Exception):
    """A body its channel refuses. `errors` is the 422's `detail` list: one object per error with
    `type`, `loc` (the path as a list), `msg` and `pointer` (the same path as a JSON Pointer)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(self.describe(errors))
        self.errors = errors

    @property
    def reason(self) -> str:
        """The errors in one line, as the dead-letter header carries them."""
        return str(self)

    @staticmethod
    def describe(errors: Sequence[Mapping[str, Any]]) -> str:
        parts = [f"{error['pointer'] or '/'}: {error['msg']}" for error in errors]
        return "; ".join(parts)[:MAX_REASON_TEXT]


class PayloadSchema(Protocol):
    @property
    def title(self) -> str:
        """The payload's name in the documents (a model's class name)."""
        ...

    def validate(self, body: bytes) -> bytes:
        """The normalised JSON of a valid body; raises InvalidPayload with every error."""
        ...

    def validate_data(self, data: Any) -> bytes:
        """The same for a JSON value already read by `load_json` (an event of a batch)."""
        ...

    def json_schema(self) -> dict[str, Any]:
        """The schema the documents show: the one `validate` checks against."""
        ...


class ModelPayload:
    """A pydantic model: validators of its own, decimals normalised to strings."""

    def __init__(self, model: type[EventModel]) -> None:
        self.model = model

    @property
    def title(self) -> str:
        return self.model.__name__

    def validate(self, body: bytes) -> bytes:
        try:
            return parse_payload(self.model, body).model_dump_json().encode()
        except ValidationError as exc:
            raise InvalidPayload(pydantic_errors(exc)) from None

    def validate_data(self, data: Any) -> bytes:
        try:
            return self.model.model_validate(data).model_dump_json().encode()
        except ValidationError as exc:
            raise InvalidPayload(pydantic_errors(exc)) from None

    def json_schema(self) -> dict[str, Any]:
        return self.model.model_json_schema()


def pydantic_errors(exc: ValidationError) -> list[dict[str, Any]]:
    errors = json.loads(exc.json(include_url=False, include_input=False))
    for error in errors:
        error["pointer"] = pointer(error["loc"])
    return errors  # type: ignore[no-any-return]


class JsonSchemaPayload:
    """A JSON Schema (draft 2020-12) with every `$ref` already inlined (see `declarative`), so the
    schema the documents show is the one validated against, byte for byte.

    JSON numbers are parsed as Decimal and written back with every digit: a schema's `number` is
    never silently turned into a float on its way to the consumer.
    """

    def __init__(self, schema: Mapping[str, Any], *, title: str) -> None:
        self._schema = dict(schema)
        self._title = title
        # Formats (`email`, `date-time`, …) are checked: a catalog that says `format: email`
        # means it, and the documents promise it.
        self._validator = jsonschema_rs.validator_for(self._schema, validate_formats=True)

    @property
    def title(self) -> str:
        return self._title

    def validate(self, body: bytes) -> bytes:
        try:
            data = load_json(body)
        except NotJson as exc:
            error = {"type": "json_invalid", "loc": [], "msg": f"Invalid JSON: {exc}"}
            raise InvalidPayload([{**error, "pointer": ""}]) from None
        return self.validate_data(data)

    def validate_data(self, data: Any) -> bytes:
        if not self._validator.is_valid(data):
            raise InvalidPayload(self.errors(data))
        try:
            return dump(data)
        except UnicodeEncodeError:
            # JSON may escape a lone surrogate (`"\ud800"`): valid JSON, not Unicode text, so
            # it cannot be written on. (A model's strings refuse it while validating.)
            where = _lone_surrogate(data, []) or []
            message = "a lone surrogate is not text"
            unicode_error = {"type": "string_unicode", "loc": where, "msg": message}
            raise InvalidPayload([{**unicode_error, "pointer": pointer(where)}]) from None

    def errors(self, data: Any) -> list[dict[str, Any]]:
        return [
            {
                "type": error.kind.__class__.__name__.lower(),
                "loc": list(error.instance_path),
                "msg": error.message,
                "pointer": pointer(error.instance_path),
            }
            for error in self._validator.iter_errors(data)
        ]

    def json_schema(self) -> dict[str, Any]:
        return dict(self._schema)


class UnusableSchema(Exception):
    """A payload schema the gateway cannot validate with: where in it (a JSON Pointer), and why."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(f"{pointer or '/'}: {message}")
        self.pointer = pointer
        self.message = message


def inline_refs(
    schema: Any, *, base_uri: str | None = None, retriever: Callable[[str], Any] | None = None
) -> dict[str, Any]:
    """`schema` checked against the 2020-12 meta-schema, with every `$ref` inlined (external ones
    only through `retriever`), ready for `JsonSchemaPayload`; UnusableSchema otherwise.

    Inlined, the schema needs nothing beside it: the documents embed it as it is validated."""
    if not isinstance(schema, Mapping):
        raise UnusableSchema("", "a payload schema must be a JSON object")
    raw = dict(schema)
    if str(raw.get("$schema", DRAFT_2020_12)).rstrip("#") != DRAFT_2020_12:
        raise UnusableSchema("/$schema", f"only JSON Schema draft 2020-12 ({DRAFT_2020_12})")
    try:
        jsonschema_rs.meta.validate({**raw, "$schema": DRAFT_2020_12})
    except jsonschema_rs.ValidationError as exc:
        raise UnusableSchema(pointer(exc.instance_path), f"invalid schema: {exc.message}") from None
    try:
        inlined: dict[str, Any] = jsonschema_rs.dereference(
            raw,
            retriever=retriever,
            base_uri=base_uri,
            draft=jsonschema_rs.Draft202012,
            offline=retriever is None,
        )
    except (jsonschema_rs.ReferencingError, ValueError, OSError) as exc:
        raise UnusableSchema("", f"unresolvable $ref: {exc}") from None
    if _has_ref(inlined):
        raise UnusableSchema("", "a recursive $ref cannot be inlined: not supported")
    for key in ("$schema", "$id", "$defs"):  # `$defs` is inlined wherever it was used
        inlined.pop(key, None)
    return inlined


def _has_ref(node: Any) -> bool:
    if isinstance(node, dict):
        return "$ref" in node or any(_has_ref(value) for value in node.values())
    if isinstance(node, list):
        return any(_has_ref(item) for item in node)
    return False


def _lone_surrogate(data: Any, path: list[str | int]) -> list[str | int] | None:
    """Where in `data` the first string that UTF-8 cannot encode is: the string, or the object
    whose key it is (a path that named the key could not be written in the answer either)."""
    if isinstance(data, str):
        return None if _encodable(data) else path
    if isinstance(data, dict):
        if not all(_encodable(key) for key in data):
            return path
        children: list[tuple[str | int, Any]] = list(data.items())
    elif isinstance(data, list):
        children = list(enumerate(data))
    else:
        return None
    for key, value in children:
        found = _lone_surrogate(value, [*path, key])
        if found is not None:
            return found
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def dump(data: Any) -> bytes:
    """Compact JSON with Decimals written as the numbers they are (the stdlib would refuse them)."""
    text: str = simplejson.dumps(
        data, use_decimal=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode()
