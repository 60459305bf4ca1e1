"""A catalog declared in a YAML or JSON file: the Helm path, no Python needed.

```yaml
channels:
  - name: shipments.dispatched          # routing key and path segment
    summary: A shipment left the warehouse.
    description: Markdown, optional.
    deprecated: false                   # optional: still accepted, marked in the documents
    compatibility: BACKWARD             # optional: BACKWARD | FORWARD | FULL | NONE
    cloudevents: binary                 # optional: binary | off; default BREAKWATER_CLOUDEVENTS
    payload: {type: object, ...}        # JSON Schema 2020-12; or payloadFile: schemas/x.json
    examples: [{...}]                   # at least one, each valid
```

Every problem is reported, each with the channel and a JSON Pointer into the file, and a file
with any problem loads nothing. `$ref`s are resolved once, here, against files beside the catalog
(never the network), and inlined: the schema the gateway validates with is the schema the
documents show.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..cloudevents.attributes import CloudEventsMode
from .channel import Catalog, CatalogError, Channel, Problem
from .compatibility import Compatibility
from .payload import UnusableSchema, inline_refs, pointer

CATALOG_SUFFIXES = (".yaml", ".yml", ".json")


class _ChannelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    summary: str = Field(min_length=1)
    description: str = ""
    deprecated: bool = False
    compatibility: Literal["BACKWARD", "FORWARD", "FULL", "NONE"] = "BACKWARD"
    cloudevents: Literal["binary", "off"] | None = None
    payload: dict[str, Any] | None = None
    payloadFile: str | None = None  # the key as users write it
    examples: list[Any] = Field(min_length=1)

    @field_validator("cloudevents", mode="before")
    @classmethod
    def _unquoted_off(cls, value: object) -> object:
        # YAML 1.1 (PyYAML's) reads an unquoted `off` as false: that is what was meant.
        if value is False:
            return "off"
        if value is True:
            raise ValueError("must be binary or off (an unquoted on/yes is read as a boolean)")
        return value


class _CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    channels: list[dict[str, Any]] = Field(min_length=1)


def read_document(path: Path) -> Any:
    """The parsed YAML or JSON of `path`; CatalogError when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError([Problem("-", "", f"cannot read {path}: {exc}")], str(path)) from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        problem = Problem("-", "", f"{path.name} is not valid {path.suffix[1:].upper()}: {exc}")
        raise CatalogError([problem], str(path)) from None


def load_file(path: Path) -> Catalog:
    """The catalog declared in `path`, or CatalogError with every problem in it."""
    source = str(path)  # as the user named it, in every message
    path = path.resolve()
    document = read_document(path)
    try:
        top = _CatalogFile.model_validate(document)
    except ValidationError as exc:
        raise CatalogError(_structure_problems(exc, "-", ""), source) from None
    problems: list[Problem] = []
    channels: list[Channel] = []
    for index, raw in enumerate(top.channels):
        where = f"/channels/{index}"
        label = str(raw.get("name", f"channels[{index}]"))
        try:
            entry = _ChannelEntry.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_structure_problems(exc, label, where))
            continue
        schema, schema_problems = _payload_schema(entry, path.parent, label, where)
        problems.extend(schema_problems)
        if schema is None:
            continue
        channel = Channel(
            name=entry.name,
            summary=entry.summary,
            schema=schema,
            description=entry.description,
            examples=tuple(entry.examples),
            deprecated=entry.deprecated,
            compatibility=Compatibility(entry.compatibility),
            cloudevents=None if entry.cloudevents is None else CloudEventsMode(entry.cloudevents),
        )
        problems.extend(_at(problem, where) for problem in channel.problems())
        channels.append(channel)
    if problems:
        raise CatalogError(problems, source)
    try:
        return Catalog(channels, source=source)
    except CatalogError as exc:  # problems between channels (duplicate names)
        places = {}
        for index, raw in reversed(list(enumerate(top.channels))):
            places[str(raw.get("name"))] = f"/channels/{index}"
        located = [_at(problem, places.get(problem.channel, "")) for problem in exc.problems]
        raise CatalogError(located, source) from None


def _at(problem: Problem, where: str) -> Problem:
    """A channel's own problem (pointer relative to the channel) with its place in the file."""
    return Problem(problem.channel, where + problem.pointer, problem.message)


def _structure_problems(exc: ValidationError, label: str, where: str) -> list[Problem]:
    found = []
    for error in exc.errors(include_url=False, include_input=False):
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        found.append(Problem(label, where + pointer(error["loc"]), message))
    return found


def _payload_schema(
    entry: _ChannelEntry, base: Path, label: str, where: str
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The channel's schema, checked against the 2020-12 meta-schema and with its `$ref`s
    inlined; or None and why not."""
    if (entry.payload is None) == (entry.payloadFile is None):
        return None, [Problem(label, where, "give exactly one of payload and payloadFile")]
    if entry.payloadFile is not None:
        file = (base / entry.payloadFile).resolve()
        if not file.is_relative_to(base):
            problem = Problem(label, f"{where}/payloadFile", f"{file} is not beside the catalog")
            return None, [problem]
        try:
            raw = read_document(file)
        except CatalogError as exc:
            return None, [Problem(label, f"{where}/payloadFile", p.message) for p in exc.problems]
        where, source = f"{where}/payloadFile", file
    else:
        raw, where, source = entry.payload, f"{where}/payload", base / "catalog"
    try:
        return inline_refs(raw, base_uri=source.as_uri(), retriever=_beside(base)), []
    except UnusableSchema as exc:
        return None, [Problem(label, where + exc.pointer, exc.message)]


def _beside(base: Path) -> Any:
    """A `$ref` retriever that reads files under the catalog's directory and nothing else."""

    def retrieve(uri: str) -> Any:
        if not uri.startswith("file://"):
            raise ValueError(f"{uri}: only files beside the catalog can be referenced")
        file = Path(uri.removeprefix("file://")).resolve()
        if not file.is_relative_to(base):
            raise ValueError(f"{uri}: outside the catalog's directory")
        try:
            return read_document(file)
        except CatalogError as exc:
            raise ValueError("; ".join(problem.message for problem in exc.problems)) from None

    return retrieve
