"""What payload models are built from: `EventModel`, exact money, currency codes, and the JSON parse
that keeps every digit of a number."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails

CurrencyCode = Annotated[
    str,
    Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code, three upper-case letters."),
]

# Money travels as decimal strings (or JSON numbers) and is never a float: `0.1 + 0.2` must total.
# NaN and Infinity are refused by `allow_inf_nan=False`.
Money = Annotated[Decimal, Field(allow_inf_nan=False, max_digits=18, decimal_places=6)]


class EventModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=10_000)


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_payload(model: type[EventModel], body: bytes) -> EventModel:
    """Validate a JSON body against `model`; raises pydantic's ValidationError, JSON errors included.

    JSON numbers are read as Decimal, never through a float (pydantic's own JSON parser would),
    so money sent as a number keeps every digit. NaN and Infinity literals are refused.
    """
    try:
        # Strict UTF-8 first: json.loads on bytes would also take UTF-16/32 and skip a BOM.
        text = body.decode("utf-8")
        data = json.loads(text, parse_float=Decimal, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, absurd nesting or ints
        detail = InitErrorDetails(
            type="json_invalid", loc=(), input=body[:100], ctx={"error": str(exc)[:200]}
        )
        raise ValidationError.from_exception_data(model.__name__, [detail]) from None
    return model.model_validate(data)
