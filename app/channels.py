"""The channel catalog: the one list of event types that the HTTP routes, the AMQP queues and the
AsyncAPI spec are all built from. Adding a channel is adding one `Channel` to `CATALOG`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
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


class OrderLine(EventModel):
    """One line of an order: what, how many, at what unit price."""

    sku: str = Field(min_length=1, max_length=100, description="Stock keeping unit ordered.")
    quantity: int = Field(ge=1, le=1_000_000, description="Units ordered, at least 1.")
    unit_price: Annotated[Money, Field(ge=0, description="Price of one unit, in `currency`.")]


class OrderCreated(EventModel):
    """An order was placed."""

    order_id: str = Field(min_length=1, max_length=200, description="The order's identifier.")
    customer_id: str = Field(min_length=1, max_length=200, description="Who placed the order.")
    items: list[OrderLine] = Field(min_length=1, max_length=1000, description="The order lines.")
    currency: CurrencyCode
    total: Annotated[
        Money,
        Field(description="Sum of quantity × unit_price over all items."),  # noqa: RUF001
    ]

    @model_validator(mode="after")
    def _total_matches_lines(self) -> OrderCreated:
        expected = sum((line.quantity * line.unit_price for line in self.items), Decimal(0))
        if self.total != expected:
            raise ValueError(f"total {self.total} does not equal the sum of the lines ({expected})")
        return self


class OrderCancelled(EventModel):
    """An order was cancelled before it shipped."""

    order_id: str = Field(min_length=1, max_length=200, description="The cancelled order.")
    reason: str = Field(min_length=1, max_length=500, description="Why it was cancelled.")


class PaymentCaptured(EventModel):
    """The money for an order was captured."""

    payment_id: str = Field(min_length=1, max_length=200, description="The payment's identifier.")
    order_id: str = Field(min_length=1, max_length=200, description="The order it pays for.")
    amount: Annotated[Money, Field(gt=0, description="Amount captured, in `currency`.")]
    currency: CurrencyCode


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


@dataclass(frozen=True)
class Channel:
    """One event type: its routing key on `breakwater.events`, its model, and how to describe it."""

    name: str
    model: type[EventModel]
    summary: str
    example: dict[str, Any] = field(default_factory=dict)

    @property
    def inbound_queue(self) -> str:
        return f"breakwater.in.{self.name}"


CATALOG: tuple[Channel, ...] = (
    Channel(
        name="orders.created",
        model=OrderCreated,
        summary="An order was placed.",
        example={
            "order_id": "ord-1001",
            "customer_id": "cus-42",
            "items": [
                {"sku": "SKU-RED-MUG", "quantity": 2, "unit_price": "9.50"},
                {"sku": "SKU-TEA-250G", "quantity": 1, "unit_price": "6.00"},
            ],
            "currency": "EUR",
            "total": "25.00",
        },
    ),
    Channel(
        name="orders.cancelled",
        model=OrderCancelled,
        summary="An order was cancelled.",
        example={"order_id": "ord-1001", "reason": "customer changed their mind"},
    ),
    Channel(
        name="payments.captured",
        model=PaymentCaptured,
        summary="A payment for an order was captured.",
        example={
            "payment_id": "pay-77",
            "order_id": "ord-1001",
            "amount": "25.00",
            "currency": "EUR",
        },
    ),
)

CHANNELS: dict[str, Channel] = {channel.name: channel for channel in CATALOG}
