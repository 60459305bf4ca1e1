"""The channel catalog: the one list of event types that the HTTP routes, the AMQP queues, the
documents and the metrics are all built from. A catalog is the user's: a YAML/JSON file of JSON
Schemas (`declarative`), or a Python object of pydantic models (`Catalog`, `Channel`,
`EventModel`); the three contract channels are the default one (`default`)."""

from .channel import Catalog, CatalogError, Channel, Problem
from .compatibility import Compatibility
from .loading import ENTRY_POINT_GROUP, load_catalog
from .model import CurrencyCode, EventModel, Money
from .payload import InvalidPayload

__all__ = [
    "ENTRY_POINT_GROUP",
    "Catalog",
    "CatalogError",
    "Channel",
    "Compatibility",
    "CurrencyCode",
    "EventModel",
    "InvalidPayload",
    "Money",
    "Problem",
    "load_catalog",
]
