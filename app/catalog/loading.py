"""Which catalog a gateway carries: `BREAKWATER_CATALOG`, an installed entry point, or the default.

`BREAKWATER_CATALOG` may name
- a file (`.yaml`, `.yml`, `.json`): a declarative catalog (see `declarative`);
- `package.module:attribute`: a `Catalog` object in an importable module;
- a name: the entry point of that name in the group `breakwater.catalogs`.
Unset: the one catalog an installed package registers in that group (the derived-image path:
`pip install my-events` is all it takes), else the default catalog; several installed and none
chosen is an error rather than a guess.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from .channel import Catalog, CatalogError, Problem
from .declarative import CATALOG_SUFFIXES, load_file
from .default import DEFAULT_CATALOG

ENTRY_POINT_GROUP = "breakwater.catalogs"
DEFAULT_NAME = "default"


def load_catalog(spec: str | None) -> Catalog:
    """The catalog `spec` names (see the module docstring); CatalogError with every problem."""
    if spec is None or not spec.strip():
        return _installed_catalog()
    spec = spec.strip()
    if spec.endswith(CATALOG_SUFFIXES) or Path(spec).is_file():
        return load_file(Path(spec))
    if ":" in spec:
        return _object_at(spec)
    if spec == DEFAULT_NAME:
        return DEFAULT_CATALOG
    points = _entry_points()
    if spec not in points:
        known = ", ".join(sorted({DEFAULT_NAME, *points}))
        message = f"no catalog file, module:attribute or entry point named {spec!r} ({known})"
        raise CatalogError([Problem("-", "", message)], spec)
    return _object_at(points[spec].value, origin=f"entry point {spec!r}")


def _installed_catalog() -> Catalog:
    points = _entry_points()
    if not points:
        return DEFAULT_CATALOG
    if len(points) > 1:
        message = (
            f"several catalogs are installed ({', '.join(sorted(points))}):"
            " choose one with BREAKWATER_CATALOG"
        )
        raise CatalogError([Problem("-", "", message)], ENTRY_POINT_GROUP)
    [(name, point)] = points.items()
    return _object_at(point.value, origin=f"entry point {name!r}")


def _entry_points() -> dict[str, EntryPoint]:
    """The installed catalogs, the gateway's own default left out."""
    found = entry_points(group=ENTRY_POINT_GROUP)
    return {point.name: point for point in found if point.name != DEFAULT_NAME}


def _object_at(target: str, *, origin: str | None = None) -> Catalog:
    module_name, _, attribute = target.partition(":")
    source = origin or target
    try:
        found: object = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except CatalogError:
        raise  # a catalog module whose channels are wrong: its own problems say more
    except (ImportError, AttributeError, ValueError) as exc:
        problem = Problem("-", "", f"cannot load {target}: {type(exc).__name__}: {exc}")
        raise CatalogError([problem], source) from None
    if not isinstance(found, Catalog):
        kind = type(found).__name__
        problem = Problem("-", "", f"{target} is a {kind}, not a breakwater Catalog")
        raise CatalogError([problem], source)
    if found.source == "python":
        found.source = source
    return found
