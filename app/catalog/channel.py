"""One event type of a catalog, and the catalog itself."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..cloudevents.attributes import CloudEventsMode
from .compatibility import Compatibility
from .model import EventModel
from .payload import (
    InvalidPayload,
    JsonSchemaPayload,
    ModelPayload,
    PayloadSchema,
    UnusableSchema,
    inline_refs,
)

# The name is the routing key and a path segment: lower case, dot-separated words, so that
# `orders.created.v2` is a versioned channel and `orders.*` binds every orders channel.
NAME_PATTERN = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*$")
MAX_NAME_LENGTH = 200  # the inbound queue `breakwater.in.<name>` must stay an AMQP short string


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a catalog: which channel (`-`: the file itself), where (a JSON Pointer
    into the catalog file, or into the channel for a Python catalog), and what."""

    channel: str
    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.channel}: #{self.pointer}: {self.message}"


class CatalogError(Exception):
    """A catalog that cannot be loaded: every problem found, one line each."""

    def __init__(self, problems: Sequence[Problem], source: str = "catalog") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}")


@dataclass(frozen=True)
class Channel:
    """One event type: its routing key on `breakwater.events`, its payload schema (a pydantic
    `model` or a JSON Schema `schema`, exactly one), and how the documents describe it."""

    name: str
    summary: str
    model: type[EventModel] | None = None
    schema: Mapping[str, Any] | None = None
    description: str = ""
    examples: Sequence[Any] = field(default=())  # JSON values, objects mostly; kept as a tuple
    deprecated: bool = False
    # How its schema may change (`breakwater catalog check`), in the schema-registry sense.
    compatibility: Compatibility = Compatibility.BACKWARD
    # Whether its events carry CloudEvents attributes; None: as BREAKWATER_CLOUDEVENTS says.
    cloudevents: CloudEventsMode | None = None

    def __post_init__(self) -> None:
        if (self.model is None) == (self.schema is None):
            raise CatalogError([Problem(self.name, "", "give exactly one of model= and schema=")])
        # Accept a list as well as a tuple: the dataclass stays hashable and frozen.
        object.__setattr__(self, "examples", tuple(self.examples))
        if self.cloudevents is not None:  # `cloudevents="binary"` works as well as the enum
            try:
                object.__setattr__(self, "cloudevents", CloudEventsMode(self.cloudevents))
            except ValueError:
                modes = " or ".join(mode.value for mode in CloudEventsMode)
                message = f"cloudevents must be {modes}, not {self.cloudevents!r}"
                raise CatalogError([Problem(self.name, "/cloudevents", message)]) from None

    @cached_property
    def payload(self) -> PayloadSchema:
        if self.model is not None:
            return ModelPayload(self.model)
        assert self.schema is not None
        # A declarative catalog has inlined its refs already: this is then a no-op check.
        return JsonSchemaPayload(inline_refs(self.schema), title=title_of(self.name))

    @property
    def example(self) -> Any:
        """The first example: what the documents show first."""
        return self.examples[0] if self.examples else {}

    @property
    def inbound_queue(self) -> str:
        return f"breakwater.in.{self.name}"

    def problems(self) -> list[Problem]:
        """What is wrong with this channel on its own (a name, an example that fails its schema)."""
        found: list[Problem] = []
        if not NAME_PATTERN.match(self.name) or len(self.name) > MAX_NAME_LENGTH:
            found.append(
                Problem(
                    self.name,
                    "/name",
                    f"invalid name {self.name!r}: lower-case letters and digits in dot-, dash- or"
                    f" underscore-separated words, at most {MAX_NAME_LENGTH} characters"
                    " (e.g. orders.created.v2)",
                )
            )
        if not self.summary.strip():
            found.append(Problem(self.name, "/summary", "a one-line summary is required"))
        if not self.examples:
            found.append(Problem(self.name, "/examples", "at least one example is required"))
        try:
            self.payload  # noqa: B018 (builds the validator, which checks the schema)
        except UnusableSchema as exc:
            return [*found, Problem(self.name, "/schema" + exc.pointer, exc.message)]
        for index, example in enumerate(self.examples):
            where = f"/examples/{index}"
            try:
                self.payload.validate(json.dumps(example).encode())
            except InvalidPayload as exc:
                found.extend(
                    Problem(
                        self.name, where + error["pointer"], f"fails its schema: {error['msg']}"
                    )
                    for error in exc.errors
                )
            except (TypeError, ValueError) as exc:
                found.append(Problem(self.name, where, f"not JSON: {exc}"))
        return found


def title_of(name: str) -> str:
    """A channel's payload name for the documents: `orders.created.v2` → `OrdersCreatedV2`."""
    return "".join(word.capitalize() for word in re.split(r"[._-]", name))


class Catalog(Mapping[str, Channel]):
    """The channels a gateway carries, by name, in the order they were declared.

    Built only when every channel is sound: a gateway never runs with part of a catalog.
    """

    def __init__(self, channels: Iterable[Channel], *, source: str = "python") -> None:
        self.channels = tuple(channels)
        self.source = source
        problems = [problem for channel in self.channels for problem in channel.problems()]
        names = [channel.name for channel in self.channels]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(Problem(name, "/name", f"{names.count(name)} channels have this name"))
        if not self.channels:
            problems.append(Problem("-", "/channels", "a catalog needs at least one channel"))
        if not problems:  # every payload is usable: their names can be compared
            problems = _shared_payload_names(self.channels)
        if problems:
            raise CatalogError(problems, source)
        self._by_name = {channel.name: channel for channel in self.channels}

    def __getitem__(self, name: str) -> Channel:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"Catalog({list(self)!r}, source={self.source!r})"


def _shared_payload_names(channels: Sequence[Channel]) -> list[Problem]:
    """Distinct channels whose different payloads would get one name in the documents
    (`orders.created` and `orders-created`); one model behind two channels is fine."""
    by_title: dict[str, dict[str, str]] = {}
    for channel in channels:
        schema = json.dumps(channel.payload.json_schema(), sort_keys=True, default=str)
        by_title.setdefault(channel.payload.title, {})[channel.name] = schema
    found = []
    for title, schemas in by_title.items():
        holders = list(schemas)
        if len(set(schemas.values())) > 1:
            message = (
                f"its payload name {title!r} is also that of {', '.join(holders[:-1])};"
                " the documents need one name per payload"
            )
            found.append(Problem(holders[-1], "/name", message))
    return found
