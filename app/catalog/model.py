"""What payload models are built from: `EventModel`, exact money, currency codes, and the JSON parse
that keeps every digit of a number."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    ValidationError,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, InitErrorDetails

CurrencyCode = Annotated[
    str,
    Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code, three upper-case letters."),
]

# What a decimal looks like on the wire when the gateway writes it: plain notation, never `1E+2`.
DECIMAL_PATTERN = r"^-?[0-9]{1,18}(\.[0-9]{1,6})?$"


class _DecimalOnTheWire:
    """The JSON Schema of a decimal as it travels: producers may send a JSON number or a decimal
    string (one schema with both types, since simple validators misread a typeless `anyOf`);
    consumers always get a string in plain notation."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        generated = handler(core_schema)
        if handler.mode == "serialization":
            return {"type": "string", "pattern": DECIMAL_PATTERN}
        # pydantic says anyOf [number with its bounds, string]: keep the bounds (they apply to
        # numbers only) and describe strings by the pattern.
        branches: list[dict[str, Any]] = generated.get("anyOf", [])
        number = next((branch for branch in branches if branch.get("type") == "number"), {})
        bounds = {key: value for key, value in number.items() if key != "type"}
        return {"type": ["number", "string"], "pattern": DECIMAL_PATTERN, **bounds}


# Money travels as decimal strings (or JSON numbers in) and is never a float: `0.1 + 0.2` must
# total. NaN and Infinity are refused by `allow_inf_nan=False`.
Money = Annotated[
    Decimal,
    Field(allow_inf_nan=False, max_digits=18, decimal_places=6),
    _DecimalOnTheWire(),
    PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json"),
]


class EventModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=10_000)


class NotJson(ValueError):
    """A body that is not one JSON value in UTF-8."""


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not a number JSON allows")


def load_json(body: bytes) -> Any:
    """The JSON value of `body`, numbers with a fraction or exponent as Decimal, never through a
    float, so that every digit is kept; NotJson otherwise. NaN and Infinity literals are refused.
    Every channel, model or JSON Schema, reads its payloads through here."""
    try:
        # Strict UTF-8 first: json.loads on bytes would also take UTF-16/32 and skip a BOM.
        text = body.decode("utf-8")
        return json.loads(text, parse_float=Decimal, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, absurd nesting or ints
        raise NotJson(str(exc)[:200]) from None
    except ArithmeticError:  # decimal.InvalidOperation: `1e99999999999999999999`
        raise NotJson("a number beyond the range of a decimal") from None


def parse_payload(model: type[EventModel], body: bytes) -> EventModel:
    """Validate a JSON body against `model`; raises pydantic's ValidationError, JSON errors included.

    The body is read by `load_json` (pydantic's own JSON parser would read numbers as floats)."""
    try:
        data = load_json(body)
    except NotJson as exc:
        detail = InitErrorDetails(
            type="json_invalid", loc=(), input=body[:100], ctx={"error": str(exc)}
        )
        raise ValidationError.from_exception_data(model.__name__, [detail]) from None
    return model.model_validate(data)
