"""Breakwater's public API for catalog authors: what a Python catalog is built from.

```python
from breakwater import Catalog, Channel, EventModel, Money

class ParcelSent(EventModel):
    parcel_id: str
    postage: Money

catalog = Catalog([Channel(name="parcels.sent", model=ParcelSent, summary="A parcel left.",
                           examples=[{"parcel_id": "p-1", "postage": "4.50"}])])
```
Register it as an entry point in the group `breakwater.catalogs`, or name it in
`BREAKWATER_CATALOG=package.module:catalog` (README: Your own events).
"""

from app.catalog import (
    Catalog,
    CatalogError,
    Channel,
    Compatibility,
    CurrencyCode,
    EventModel,
    Money,
)

__all__ = [
    "Catalog",
    "CatalogError",
    "Channel",
    "Compatibility",
    "CurrencyCode",
    "EventModel",
    "Money",
]
