"""The catalog: two channels whose payloads are pydantic models with validators of their own.

Built from Breakwater's public classes (`from breakwater import ...`), as the gateway's default
catalog is. The gateway finds `catalog` through this package's entry point in the group
`breakwater.catalogs` (pyproject.toml), or through `BREAKWATER_CATALOG=my_events.catalog:catalog`.

Every example is written the way consumers receive it (amounts as decimal strings, dates as ISO
8601): the gateway forwards the payload normalised by its model, which leaves these unchanged.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

from pydantic import Field, model_validator

from breakwater import Catalog, Channel, CurrencyCode, EventModel, Money

Identifier = Annotated[str, Field(min_length=1, max_length=200)]


class InvoiceLine(EventModel):
    """One line of an invoice: what was billed, and for how much."""

    description: str = Field(min_length=1, max_length=500, description="What is billed.")
    amount: Annotated[Money, Field(ge=0, description="The line's amount, in `currency`.")]


class InvoiceIssued(EventModel):
    """An invoice was issued to a customer."""

    invoice_id: Identifier = Field(description="The invoice's identifier.")
    customer_id: Identifier = Field(description="Who is billed.")
    issued_on: date = Field(description="The day the invoice was issued (ISO 8601).")
    due_date: date = Field(description="The day it must be paid by; not before `issued_on`.")
    currency: CurrencyCode
    lines: list[InvoiceLine] = Field(min_length=1, max_length=1000, description="What is billed.")
    total: Annotated[Money, Field(description="The sum of the lines' amounts, in `currency`.")]

    @model_validator(mode="after")
    def _dates_and_total_agree(self) -> InvoiceIssued:
        if self.due_date < self.issued_on:
            raise ValueError(f"due_date {self.due_date} is before issued_on {self.issued_on}")
        expected = sum((line.amount for line in self.lines), Decimal(0))
        if self.total != expected:
            raise ValueError(f"total {self.total} does not equal the sum of the lines ({expected})")
        return self


class InvoicePaid(EventModel):
    """An invoice was paid, in full."""

    invoice_id: Identifier = Field(description="The invoice paid.")
    payment_id: Identifier = Field(description="The payment that settled it.")
    paid_on: date = Field(description="The day the money arrived (ISO 8601).")
    amount: Annotated[Money, Field(gt=0, description="The amount paid, in `currency`.")]
    currency: CurrencyCode


catalog = Catalog(
    (
        Channel(
            name="invoices.issued",
            model=InvoiceIssued,
            summary="An invoice was issued.",
            description="Raised by billing when an invoice is sent to the customer.",
            examples=(
                {
                    "invoice_id": "inv-2026-0042",
                    "customer_id": "cus-42",
                    "issued_on": "2026-03-01",
                    "due_date": "2026-03-31",
                    "currency": "EUR",
                    "lines": [
                        {"description": "Consulting, February", "amount": "1200.00"},
                        {"description": "Travel expenses", "amount": "86.40"},
                    ],
                    "total": "1286.40",
                },
            ),
        ),
        Channel(
            name="invoices.paid",
            model=InvoicePaid,
            summary="An invoice was paid.",
            examples=(
                {
                    "invoice_id": "inv-2026-0042",
                    "payment_id": "pay-9001",
                    "paid_on": "2026-03-20",
                    "amount": "1286.40",
                    "currency": "EUR",
                },
            ),
        ),
    )
)
