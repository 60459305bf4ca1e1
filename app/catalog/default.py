"""The default catalog: the three channels of the contract, used when no other catalog is loaded."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field, model_validator

from .channel import Catalog, Channel
from .model import CurrencyCode, EventModel, Money


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


DEFAULT_CATALOG = Catalog(
    (
        Channel(
            name="orders.created",
            model=OrderCreated,
            summary="An order was placed.",
            examples=(
                {
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
        ),
        Channel(
            name="orders.cancelled",
            model=OrderCancelled,
            summary="An order was cancelled.",
            examples=({"order_id": "ord-1001", "reason": "customer changed their mind"},),
        ),
        Channel(
            name="payments.captured",
            model=PaymentCaptured,
            summary="A payment for an order was captured.",
            examples=(
                {
                    "payment_id": "pay-77",
                    "order_id": "ord-1001",
                    "amount": "25.00",
                    "currency": "EUR",
                },
            ),
        ),
    ),
    source="default",
)
