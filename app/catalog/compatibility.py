"""JSON Schema compatibility in the schema-registry sense.

A schema is the set of JSON values it accepts. `accepts_everything(old, new)` tries to prove that
the set of `old` lies inside the set of `new` and, where it cannot, says why: each
`Incompatibility` points into `new` and names the kind of narrowing (`_MESSAGES` lists them). The
proof is structural, the way Confluent Schema Registry and Karapace reason about JSON Schema:

* Both schemas are *flattened* first: `$ref` (internal `#...` pointers) and `allOf` are
  conjunctions, so a schema stands for the list of nodes it reaches through them. Every constraint
  of a new node must follow from the old nodes, keyword group by keyword group (type, enum/const,
  string, number, array, object members, ...), each group from whichever old node proves it.
* A keyword that constrains one JSON type only (`maxLength`: strings) is checked only when the old
  schema admits that type at all, so adding `minimum` to a string field breaks nothing.
* `anyOf`/`oneOf` of the old schema are distributed: each old alternative must fit on its own. A
  new `anyOf` needs each old alternative inside some branch; a new `oneOf` also needs it kept out
  of every other branch, shown by disjoint types or constants (a discriminator property), or by
  that branch being no wider than another branch of an old `oneOf`.
* A pair of recursive `$ref`s already under comparison counts as compatible: the usual
  coinductive rule for recursive types.

Whatever cannot be proven is reported, never assumed: the checker may call a harmless change a
break, but not the reverse. `unsupported_change` marks an added or changed keyword it does not model
(`$dynamicRef`, vendor extensions, `unevaluated*` beside in-place applicators, ...). Patterns and
formats are compared as text: any new or changed one is a break. Annotations (`title`, `default`,
`examples`, ...) never matter. Numbers are compared as `Decimal` (floats through their shortest
repr, as the document spelled them), so `multipleOf: 0.1` divides `0.3`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

Node = Mapping[str, Any]

_ALL_ATOMS = frozenset({"null", "boolean", "object", "array", "string", "integer", "fraction"})
_NUMERIC = frozenset({"integer", "fraction"})  # "number" is both, so integer ⊂ number falls out
_ANNOTATIONS = frozenset(
    {
        *("$schema", "$id", "$anchor", "$comment", "$defs", "definitions", "$vocabulary"),
        *("title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"),
        *("contentEncoding", "contentMediaType", "contentSchema", "discriminator"),
    }
)
_MODELLED = frozenset(
    {
        *("$ref", "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "type", "enum", "const"),
        *("minLength", "maxLength", "pattern", "format", "multipleOf", "minimum", "maximum"),
        *("exclusiveMinimum", "exclusiveMaximum", "prefixItems", "items", "minItems", "maxItems"),
        *("uniqueItems", "contains", "minContains", "maxContains", "properties", "required"),
        *("patternProperties", "additionalProperties", "minProperties", "maxProperties"),
        *("propertyNames", "dependentRequired", "dependentSchemas"),
    }
)
# Keywords that apply other schemas to the same instance: their annotations feed `unevaluated*`.
_IN_PLACE = frozenset({"allOf", "anyOf", "oneOf", "if", "dependentSchemas", "$ref", "$dynamicRef"})
_LIMITS = {  # keyword: (the type it constrains, +1 when raising it tightens, -1 when lowering does)
    "minLength": ("string", 1),
    "maxLength": ("string", -1),
    "minItems": ("array", 1),
    "maxItems": ("array", -1),
    "minProperties": ("object", 1),
    "maxProperties": ("object", -1),
}
_BOUNDS = {True: ("minimum", "exclusiveMinimum"), False: ("maximum", "exclusiveMaximum")}
_ITEMS = frozenset({"prefixItems", "items", "unevaluatedItems"})
_MEMBERS = frozenset(
    {"properties", "patternProperties", "additionalProperties", "unevaluatedProperties"}
)
_EMPTY: Node = {}
_STRING: Node = {"type": "string"}  # what every property name already is
_MAX_DISJOINT_DEPTH = 8

# One sentence per kind: what the reader ({r}) schema changed, and why writer ({w}) data suffers.
# Keyword limits share the generic *_added / *_increased / *_decreased / *_changed sentences.
_MESSAGES = {
    "false_schema": "The {r} schema is `false` here, so it refuses every value the {w} one allowed.",
    "unresolvable_ref": "The {r} schema has $ref {ref}, which cannot be followed, so it may "
    "refuse {w} data.",
    "unsupported_change": "The {r} schema adds or changes `{kw}`, which this checker cannot "
    "reason about, so it may refuse {w} data.",
    "type_added": "The {r} schema adds type {type}, so {lost} values the {w} schema allowed are "
    "refused.",
    "type_narrowed": "The {r} schema narrows type to {type}, so {lost} values the {w} schema "
    "allowed are refused.",
    "enum_added": "The {r} schema adds `enum`, so other values the {w} schema allowed are refused.",
    "const_added": "The {r} schema adds `const`, so other values the {w} schema allowed are refused.",
    "enum_narrowed": "The {r} schema no longer allows {values}, so {w} data holding them is refused.",
    "const_changed": "The {r} schema no longer allows {values}, so {w} data holding them is refused.",
    "required_property_added": "The {r} schema requires property {name}, so {w} objects without "
    "it are refused.",
    "dependent_required_added": "The {r} schema requires {missing} whenever {key} is present, so "
    "{w} objects lacking them are refused.",
    "property_removed_from_closed_model": "The {r} schema drops property {name} and allows no "
    "undeclared properties, so {w} objects carrying it are refused.",
    "property_removed_not_covered": "The {r} schema drops property {name} and its {kw} does not "
    "accept every value the {w} schema allowed for it.",
    "property_added_to_open_model": "The {r} schema declares property {name} more narrowly than "
    "{kw} did, and {w} objects may already carry it with any value the open model allowed.",
    "property_added_not_covered": "The {r} schema declares property {name} more narrowly than the "
    "{w} schema's {kw}, which governed it before.",
    "pattern_properties_narrowed": "The {r} schema restricts properties matching {pattern} beyond "
    "what the {w} schema allowed for them.",
    "additional_properties_narrowed": "The {r} schema narrows {kw} to {value}, so {w} objects "
    "with other properties may be refused.",
    "any_of_narrowed": "The {r} schema has no anyOf branch that accepts every value of {what} of "
    "the {w} schema.",
    "one_of_narrowed": "The {r} schema has no oneOf branch that surely matches exactly one value "
    "of {what} of the {w} schema.",
    "not_added": "The {r} schema forbids, through `not`, values the {w} schema may allow.",
    "not_changed": "The {r} schema forbids, through `not`, values the {w} schema may allow.",
    "conditional_added": "The {r} schema adds an if/then/else that {w} data need not meet.",
    "conditional_changed": "The {r} schema changes an if/then/else that {w} data need not meet.",
    "*_added": "The {r} schema adds {kw} {value}, which {w} data never had to meet.",
    "*_tightened": "The {r} schema tightens {kw} from {old} to {value}, so some {w} values are "
    "refused.",
    "*_changed": "The {r} schema changes {kw} from {old} to {value}, which {w} data need not meet.",
}


class Compatibility(StrEnum):
    """Schema-registry compatibility modes."""

    BACKWARD = "BACKWARD"
    FORWARD = "FORWARD"
    FULL = "FULL"
    NONE = "NONE"


@dataclass(frozen=True)
class Incompatibility:
    """One reason why a schema may refuse data that another one accepted."""

    path: str  # JSON Pointer into the schema that must accept, "" for its root
    kind: str  # stable snake_case code, a key of _MESSAGES or a keyword's *_added/... code
    message: str


def accepts_everything(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Incompatibility]:
    """Reasons why `new` may reject an instance that `old` accepted (empty: new accepts all old accepted)."""
    return _Checker(old, new, "old", "new").run()


def compare(
    old: Mapping[str, Any], new: Mapping[str, Any], mode: Compatibility | str
) -> list[Incompatibility]:
    """BACKWARD: `new` reads all `old` data; FORWARD: `old` reads all `new` data; FULL: both, each
    message naming its direction; NONE: nothing. `mode` is matched by value, so another StrEnum
    with these four values works too."""
    mode = Compatibility(mode)
    backward = _Checker(old, new, "old", "new").run() if mode in ("BACKWARD", "FULL") else []
    forward = _Checker(new, old, "new", "old").run() if mode in ("FORWARD", "FULL") else []
    if mode is not Compatibility.FULL:
        return backward + forward
    return _labelled(backward, "Backward (new schema reading old data)") + _labelled(
        forward, "Forward (old schema reading new data)"
    )


def _labelled(reasons: list[Incompatibility], label: str) -> list[Incompatibility]:
    return [Incompatibility(r.path, r.kind, f"{label}: {r.message}") for r in reasons]


class _Unresolved(str):
    """A `$ref` this checker cannot follow: external, a plain-name anchor, or dangling."""


@dataclass(frozen=True, eq=False)
class _Old:
    """The schema data was written with, at one place: a conjunction of nodes, with the old
    unions already distributed (`expanded`) and the branch taken in each (`picked`)."""

    root: Any
    nodes: tuple[Node, ...] = ()
    empty: bool = False  # a `false` among the conjuncts: no value at all
    expanded: frozenset[tuple[int, str]] = frozenset()
    picked: tuple[tuple[Node, str, int], ...] = ()

    @classmethod
    def of(cls, root: Any, schemas: Iterable[Any]) -> _Old:
        seen: set[int] = set()
        found = [item for schema in schemas for item, _ in _flatten(root, schema, "", seen)]
        # An old conjunct that cannot be read (a dangling $ref) is left out: that only makes the
        # old side look wider, which can hide no break.
        nodes = tuple(item for item in found if isinstance(item, Mapping))
        return cls(root, nodes, any(item is False for item in found))

    def key(self) -> object:
        picked = tuple((id(union), kw, i) for union, kw, i in self.picked)
        return tuple(map(id, self.nodes)), self.empty, self.expanded, picked

    def rejects_all(self) -> bool:
        return self.empty or not _atoms(self.nodes)

    def next_union(self) -> tuple[Node, str] | None:
        for node in self.nodes:
            for kw in ("anyOf", "oneOf"):
                if kw in node and (id(node), kw) not in self.expanded:
                    return node, kw
        return None

    def branches(self, union: Node, kw: str) -> Iterator[_Old]:
        # A oneOf's values are among its anyOf's, so taking it as a union only widens the old side.
        for i, branch in enumerate(union[kw]):
            alt = _Old.of(self.root, [branch])
            expanded = self.expanded | {(id(union), kw)}
            picked = (*self.picked, (union, kw, i))
            yield _Old(self.root, self.nodes + alt.nodes, self.empty or alt.empty, expanded, picked)

    def leaves(self) -> Iterator[_Old]:
        if self.rejects_all():
            return
        union = self.next_union()
        if union is None:
            yield self
            return
        for branch in self.branches(*union):
            yield from branch.leaves()

    def describe(self) -> str:
        return " and ".join(f"{kw} branch {i}" for _, kw, i in self.picked) or "the schema"


class _Checker:
    """Proves old ⊆ new for one pair of documents; `writer`/`reader` name them in messages."""

    def __init__(self, old_root: Any, new_root: Any, writer: str, reader: str) -> None:
        self._old_root, self._new_root = old_root, new_root
        self._w, self._r = writer, reader
        self._active: set[tuple[object, int]] = set()
        self._mirror: _Checker | None = None

    def run(self) -> list[Incompatibility]:
        return self._descend([self._old_root], self._new_root, "")

    def _reverse(self) -> _Checker:
        """The same pair the other way round, for the few proofs that need new ⊆ old."""
        if self._mirror is None:
            self._mirror = _Checker(self._new_root, self._old_root, self._r, self._w)
            self._mirror._mirror = self
        return self._mirror

    def _say(self, path: str, kind: str, **fields: str) -> Incompatibility:
        suffix = kind.rsplit("_", 1)[-1]
        generic = "*_tightened" if suffix in ("increased", "decreased") else f"*_{suffix}"
        template = _MESSAGES.get(kind) or _MESSAGES[generic]
        return Incompatibility(path, kind, template.format(w=self._w, r=self._r, **fields))

    def _descend(self, olds: Iterable[Any], new: Any, path: str) -> list[Incompatibility]:
        return self._implies(_Old.of(self._old_root, olds), new, path)

    def _equivalent(self, old: Any, new: Any) -> bool:
        return not self._descend([old], new, "") and not self._reverse()._descend([new], old, "")

    def _implies(self, old: _Old, new: Any, path: str) -> list[Incompatibility]:
        key = (old.key(), id(new))
        if key in self._active:
            return []  # a recursive pair already being compared
        self._active.add(key)
        try:
            reasons: list[Incompatibility] = []
            for item, where in _flatten(self._new_root, new, path, set()):
                if isinstance(item, Mapping):
                    reasons += self._node(old, item, where)
                elif item is False and not old.rejects_all():
                    reasons.append(self._say(where, "false_schema"))
                elif not old.rejects_all():
                    kind = (
                        "unresolvable_ref"
                        if isinstance(item, _Unresolved)
                        else "unsupported_change"
                    )
                    reasons.append(self._say(where, kind, ref=_show(item), kw=_show(item)))
            return list(dict.fromkeys(reasons))
        finally:
            self._active.discard(key)

    def _node(self, old: _Old, n: Node, path: str) -> list[Incompatibility]:
        if old.rejects_all():
            return []
        reasons = self._direct(old, n, path)
        union = old.next_union()
        if reasons and union is not None:
            # The old schema is a union: it is enough that each alternative fits on its own.
            reasons = [r for branch in old.branches(*union) for r in self._node(branch, n, path)]
        return reasons

    def _direct(self, old: _Old, n: Node, path: str) -> list[Incompatibility]:
        atoms, nodes = _atoms(old.nodes), old.nodes
        reasons = self._type(old, n, atoms, path) + self._values(old, n, atoms, path)
        for kw, (atom, sign) in _LIMITS.items():
            if kw in n and atom in atoms:
                reasons += _best(nodes, {kw}, self._limit, n, kw, sign, path)
        # A custom format may constrain any type, so only `pattern` waits for strings.
        for kw in ("pattern", "format"):
            if kw in n and (kw == "format" or "string" in atoms):
                reasons += _best(nodes, {kw}, self._same, n, kw, path)
        if atoms & _NUMERIC:
            for lower, kws in _BOUNDS.items():
                if n.keys() & set(kws):
                    reasons += _best(nodes, kws, self._bound, n, lower, path)
            if "multipleOf" in n:
                integral = "fraction" not in atoms
                reasons += _best(nodes, {"multipleOf"}, self._multiple, n, integral, path)
        if "array" in atoms:
            reasons += self._array(old, n, path)
        if "object" in atoms:
            reasons += self._object(old, n, path)
        for kw in ("anyOf", "oneOf"):
            if kw in n:
                reasons += self._union(old, n, kw, path)
        if "not" in n:
            reasons += self._not(old, n, path)
        if "if" in n and ("then" in n or "else" in n):
            reasons += self._conditional(old, n, path)
        return reasons + self._unsupported(old, n, path)

    def _type(self, old: _Old, n: Node, atoms: frozenset[str], path: str) -> list[Incompatibility]:
        lost = atoms - _type_atoms(n["type"]) if "type" in n else frozenset()
        if not lost:
            return []
        kind = "type_narrowed" if any("type" in c for c in old.nodes) else "type_added"
        return [self._say(f"{path}/type", kind, type=_show(n["type"]), lost=_type_names(lost))]

    def _values(
        self, old: _Old, n: Node, atoms: frozenset[str], path: str
    ) -> list[Incompatibility]:
        allowed, had = _values([n]), _values(old.nodes)
        if allowed is None:
            return []
        kw = "const" if "const" in n else "enum"
        if had is None:
            return [self._say(f"{path}/{kw}", f"{kw}_added")]
        lost = [v for k, v in had.items() if k not in allowed and _value_atom(v) in atoms]
        kind = "enum_narrowed" if kw == "enum" else "const_changed"
        return [self._say(f"{path}/{kw}", kind, values=", ".join(map(_show, lost)))] if lost else []

    def _limit(self, c: Node, n: Node, kw: str, sign: int, path: str) -> list[Incompatibility]:
        if kw in c and sign * (_dec(n[kw]) - _dec(c[kw])) <= 0:
            return []
        verb = "added" if kw not in c else "increased" if sign > 0 else "decreased"
        return [self._changed(f"{path}/{kw}", f"{_snake(kw)}_{verb}", kw, c.get(kw), n[kw])]

    def _changed(self, path: str, kind: str, kw: str, old: Any, new: Any) -> Incompatibility:
        return self._say(path, kind, kw=kw, old=_show(old), value=_show(new))

    def _same(self, c: Node, n: Node, kw: str, path: str) -> list[Incompatibility]:
        if kw in c and c[kw] == n[kw]:
            return []
        # Whether one regular expression or format contains another is not decided here.
        kind = f"{kw}_changed" if kw in c else f"{kw}_added"
        return [self._changed(f"{path}/{kw}", kind, kw, c.get(kw), n[kw])]

    def _bound(self, c: Node, n: Node, lower: bool, path: str) -> list[Incompatibility]:
        new, old = _tightest(n, lower), _tightest(c, lower)
        if new is None or (old is not None and old[0] >= new[0]):
            return []
        kw = new[1]
        verb = "added" if old is None else "increased" if lower else "decreased"
        before = None if old is None else f"{old[1]} {_show(c[old[1]])}"
        return [
            self._say(
                f"{path}/{kw}", f"{_snake(kw)}_{verb}", kw=kw, old=str(before), value=_show(n[kw])
            )
        ]

    def _multiple(self, c: Node, n: Node, integral: bool, path: str) -> list[Incompatibility]:
        step = _dec(n["multipleOf"])
        # Integers are all multiples of 1, so integer-only old data has an implicit multipleOf 1.
        old = _dec(c["multipleOf"]) if "multipleOf" in c else (Decimal(1) if integral else None)
        if old is not None and _divides(step, old):
            return []
        kind = "multiple_of_changed" if "multipleOf" in c else "multiple_of_added"
        return [
            self._changed(
                f"{path}/multipleOf", kind, "multipleOf", c.get("multipleOf"), n["multipleOf"]
            )
        ]

    def _array(self, old: _Old, n: Node, path: str) -> list[Incompatibility]:
        reasons = []
        if n.keys() & {"prefixItems", "items"} or _local_unevaluated(n, "unevaluatedItems"):
            reasons += _best(old.nodes, _ITEMS, self._items, n, path)
        if n.get("uniqueItems") is True and not any(
            c.get("uniqueItems") is True for c in old.nodes
        ):
            reasons.append(
                self._changed(
                    f"{path}/uniqueItems", "unique_items_added", "uniqueItems", None, True
                )
            )
        if "contains" in n and (n.get("minContains", 1) != 0 or "maxContains" in n):
            reasons += _best(old.nodes, {"contains"}, self._contains, n, path)
        return reasons

    def _items(self, c: Node, n: Node, path: str) -> list[Incompatibility]:
        pre_o, pre_n = c.get("prefixItems", []), n.get("prefixItems", [])
        (tail_o, _), (tail_n, tail_kw) = _tail(c), _tail(n)
        reasons: list[Incompatibility] = []
        for i in range(max(len(pre_o), len(pre_n))):
            item_o = pre_o[i] if i < len(pre_o) else tail_o
            if i < len(pre_n):
                reasons += self._descend([item_o], pre_n[i], f"{path}/prefixItems/{i}")
            else:
                reasons += self._descend([item_o], tail_n, f"{path}/{tail_kw}")
        return reasons + self._descend([tail_o], tail_n, f"{path}/{tail_kw}")

    def _contains(self, c: Node, n: Node, path: str) -> list[Incompatibility]:
        if "contains" not in c:
            return [
                self._changed(f"{path}/contains", "contains_added", "contains", None, n["contains"])
            ]
        reasons = self._descend([c["contains"]], n["contains"], f"{path}/contains")
        least_o, least_n = c.get("minContains", 1), n.get("minContains", 1)
        if _dec(least_n) > _dec(least_o):
            reasons.append(
                self._changed(
                    f"{path}/minContains", "min_contains_increased", "minContains", least_o, least_n
                )
            )
        # maxContains counts the items matching the new `contains`: sound only if both match alike.
        most_o, most_n = c.get("maxContains"), n.get("maxContains")
        if most_n is not None and not (
            most_o is not None
            and _dec(most_o) <= _dec(most_n)
            and self._equivalent(c["contains"], n["contains"])
        ):
            kind = "max_contains_added" if most_o is None else "max_contains_decreased"
            reasons.append(
                self._changed(f"{path}/maxContains", kind, "maxContains", most_o, most_n)
            )
        return reasons

    def _object(self, old: _Old, n: Node, path: str) -> list[Incompatibility]:
        nodes = old.nodes
        reasons = _best(nodes, _MEMBERS, self._members, n, path) if n.keys() & _MEMBERS else []
        required = {p for c in nodes for p in c.get("required", [])}
        for name in n.get("required", []):
            if name not in required:
                reasons.append(
                    self._say(f"{path}/required", "required_property_added", name=repr(name))
                )
        if "propertyNames" in n:
            reasons += _best(nodes, {"propertyNames"}, self._names, n, path)
        for key, needs in n.get("dependentRequired", {}).items():
            have = required | {
                p for c in nodes for p in c.get("dependentRequired", {}).get(key, [])
            }
            if missing := [p for p in needs if p not in have]:
                where = f"{path}/dependentRequired/{_esc(key)}"
                reasons.append(
                    self._say(
                        where,
                        "dependent_required_added",
                        key=repr(key),
                        missing=", ".join(map(repr, missing)),
                    )
                )
        for key, schema in n.get("dependentSchemas", {}).items():
            # The old schema had the same dependency, or it implies the new one outright.
            where = f"{path}/dependentSchemas/{_esc(key)}"
            tries = [
                [c["dependentSchemas"][key]] for c in nodes if key in c.get("dependentSchemas", {})
            ]
            results = [self._descend(olds, schema, where) for olds in [*tries, nodes]]
            if all(results):
                closest: list[Incompatibility] = min(results, key=len)
                reasons += closest
        return reasons

    def _names(self, c: Node, n: Node, path: str) -> list[Incompatibility]:
        olds = [c.get("propertyNames", True), _STRING]
        return self._descend(olds, n["propertyNames"], f"{path}/propertyNames")

    def _members(self, c: Node, n: Node, path: str) -> list[Incompatibility]:
        old, new = _Members.of(c), _Members.of(n)
        reasons: list[Incompatibility] = []
        for name in dict.fromkeys([*old.properties, *new.properties]):
            reasons += self._member(old, new, name, path)
        # Members named by neither: an old one matched old patterns, or else additionalProperties.
        old_others = [old.extra, *old.patterns.values()]
        for pattern, schema in new.patterns.items():
            olds = [old.patterns[pattern]] if pattern in old.patterns else old_others
            if any(self._descend([o], schema, "") for o in olds):
                where = f"{path}/patternProperties/{_esc(pattern)}"
                reasons.append(
                    self._say(where, "pattern_properties_narrowed", pattern=repr(pattern))
                )
        unmatched = [old.extra, *(s for p, s in old.patterns.items() if p not in new.patterns)]
        if any(self._descend([o], new.extra, "") for o in unmatched):
            where, kind = f"{path}/{new.extra_kw}", "additional_properties_narrowed"
            reasons.append(self._say(where, kind, kw=new.extra_kw, value=_show(new.extra)))
        return reasons

    def _member(self, old: _Members, new: _Members, name: str, path: str) -> list[Incompatibility]:
        """The reasons why the new schema may refuse the value of a member `name` of old data."""
        gov_o, gov_n = old.governing(name), new.governing(name)
        if gov_n is None:
            return [
                self._say(f"{path}/patternProperties", "unsupported_change", kw="patternProperties")
            ]
        if gov_o is None:  # an old pattern that cannot be compiled: assume the least of old data
            olds = [old.properties[name]] if name in old.properties else [True]
        else:
            olds = [schema for schema, _ in gov_o]
        old_open = gov_o is not None and [rel for _, rel in gov_o] == [f"/{old.extra_kw}"]
        where = f"{path}/properties/{_esc(name)}"
        reasons: list[Incompatibility] = []
        for schema, rel in gov_n:
            if not (inner := self._descend(olds, schema, path + rel)):
                continue
            if rel == f"/{new.extra_kw}":  # the new schema dropped it: additionalProperties decide
                closed = new.extra is False
                kind = (
                    "property_removed_from_closed_model"
                    if closed
                    else "property_removed_not_covered"
                )
                reasons.append(self._say(where, kind, name=repr(name), kw=new.extra_kw))
            elif old_open:  # old data may carry it with whatever additionalProperties allowed
                kind = (
                    "property_added_to_open_model"
                    if _is_true(old.extra)
                    else "property_added_not_covered"
                )
                reasons.append(self._say(where, kind, name=repr(name), kw=old.extra_kw))
            else:
                reasons += inner
        return reasons

    def _union(self, old: _Old, n: Node, kw: str, path: str) -> list[Incompatibility]:
        branches: Sequence[Any] = n[kw]
        return [
            self._say(f"{path}/{kw}", f"{_snake(kw)}_narrowed", what=leaf.describe())
            for leaf in old.leaves()
            if not any(self._fits(leaf, branches, j, kw, path) for j in range(len(branches)))
        ]

    def _fits(self, leaf: _Old, branches: Sequence[Any], j: int, kw: str, path: str) -> bool:
        if self._implies(leaf, branches[j], f"{path}/{kw}/{j}"):
            return False
        return kw == "anyOf" or all(
            self._excluded(leaf, b) for k, b in enumerate(branches) if k != j
        )

    def _excluded(self, leaf: _Old, branch: Any) -> bool:
        """Whether no value of `leaf` can match `branch` too (a sibling in a new oneOf)."""
        other = _Old.of(self._new_root, [branch])
        if _disjoint(leaf, other):
            return True
        # The old oneOf kept this value out of its other branches: a new branch no wider than one
        # of those cannot match it either.
        mirror = self._reverse()
        return any(
            not mirror._implies(other, alt, "")
            for union, kw, i in leaf.picked
            if kw == "oneOf"
            for m, alt in enumerate(union["oneOf"])
            if m != i
        )

    def _not(self, old: _Old, n: Node, path: str) -> list[Incompatibility]:
        banned = _Old.of(self._new_root, [n["not"]])
        # Sound when the newly banned values were banned before, or could never occur.
        earlier = [c["not"] for c in old.nodes if "not" in c]
        if any(not self._reverse()._implies(banned, e, "") for e in earlier) or _disjoint(
            old, banned
        ):
            return []
        return [self._say(f"{path}/not", "not_changed" if earlier else "not_added")]

    def _conditional(self, old: _Old, n: Node, path: str) -> list[Incompatibility]:
        then, other = n.get("then", True), n.get("else", True)
        if not self._implies(old, then, "") and not self._implies(old, other, ""):
            return []  # old data meets both outcomes, whatever `if` decides
        for c in old.nodes:
            if "if" in c and self._equivalent(c["if"], n["if"]):
                pairs = ((c.get("then", True), then), (c.get("else", True), other))
                if not any(self._descend([o], s, "") for o, s in pairs):
                    return []
        kind = "conditional_changed" if any("if" in c for c in old.nodes) else "conditional_added"
        return [self._say(f"{path}/if", kind)]

    def _unsupported(self, old: _Old, n: Node, path: str) -> list[Incompatibility]:
        return [
            self._say(f"{path}/{_esc(kw)}", "unsupported_change", kw=kw)
            for kw, value in n.items()
            if kw not in _ANNOTATIONS
            and kw not in _MODELLED
            # unevaluated* on a node without in-place applicators is modelled like items/additional*
            and not (kw.startswith("unevaluated") and (value is True or _local_unevaluated(n, kw)))
            and not any(kw in c and _canon(c[kw]) == _canon(value) for c in old.nodes)
        ]


@dataclass(frozen=True)
class _Members:
    """How one object schema governs its members' values."""

    properties: Mapping[str, Any]
    patterns: Mapping[str, Any]
    extra: Any  # the schema of members neither named nor matched by a pattern
    extra_kw: str

    @classmethod
    def of(cls, node: Node) -> _Members:
        extra, kw = node.get("additionalProperties", True), "additionalProperties"
        if "additionalProperties" not in node and _local_unevaluated(node, "unevaluatedProperties"):
            extra, kw = node["unevaluatedProperties"], "unevaluatedProperties"
        return cls(node.get("properties", {}), node.get("patternProperties", {}), extra, kw)

    def governing(self, name: str) -> list[tuple[Any, str]] | None:
        """The schemas member `name` must match, with their relative pointers; None when a
        pattern does not compile as a Python regular expression."""
        found = []
        if name in self.properties:
            found.append((self.properties[name], f"/properties/{_esc(name)}"))
        for pattern, schema in self.patterns.items():
            try:
                if re.search(pattern, name):
                    found.append((schema, f"/patternProperties/{_esc(pattern)}"))
            except re.error:
                return None
        return found or [(self.extra, f"/{self.extra_kw}")]


def _flatten(root: Any, schema: Any, path: str, seen: set[int]) -> list[tuple[Any, str]]:
    """The conjuncts of `schema` with their pointers: itself and all it reaches by `$ref` and
    `allOf`. `true` adds nothing; `false`, a dangling ref or a non-schema is kept for the caller."""
    if schema is True or (isinstance(schema, Mapping) and id(schema) in seen):
        return []
    if not isinstance(schema, Mapping):
        return [(schema, path)]
    seen.add(id(schema))
    found: list[tuple[Any, str]] = [(schema, path)]
    if "$ref" in schema:
        ref = schema["$ref"]
        target = _resolve(root, ref)
        if target is None:
            found.append((_Unresolved(ref), f"{path}/$ref"))
        else:
            found += _flatten(root, target, unquote(ref[1:]), seen)
    for i, branch in enumerate(schema.get("allOf", [])):
        found += _flatten(root, branch, f"{path}/allOf/{i}", seen)
    return found


def _resolve(root: Any, ref: Any) -> Any:
    """What an internal `#/...` reference points at, or None."""
    if not isinstance(ref, str) or not ref.startswith("#") or ref[1:2] not in ("", "/"):
        return None
    node = root
    for token in ref[2:].split("/") if len(ref) > 1 else []:
        token = unquote(token).replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def _best(
    nodes: Sequence[Node],
    keywords: Collection[str],
    check: Callable[..., list[Incompatibility]],
    *args: Any,
) -> list[Incompatibility]:
    """[] when one old conjunct proves `check`, else the shortest complaint. Conjuncts without
    any of `keywords` all stand for the widest case, `{}`, which is tried only when none has any."""
    relevant = [c for c in nodes if c.keys() & set(keywords)] or [_EMPTY]
    results = []
    for node in relevant:
        if not (reasons := check(node, *args)):
            return []
        results.append(list(dict.fromkeys(reasons)))
    return min(results, key=len)


def _disjoint(a: _Old, b: _Old, depth: int = 0) -> bool:
    """Whether no value satisfies both: by types, by constants, or by a required property whose
    schemas are disjoint (a discriminator)."""
    if a.rejects_all() or b.rejects_all():
        return True
    shared = _atoms(a.nodes) & _atoms(b.nodes)
    if not shared:
        return True
    for x, y in ((a, b), (b, a)):
        values = _values(x.nodes)
        if values is not None and not any(_admits(y, v) for v in values.values()):
            return True
    if shared != {"object"} or depth >= _MAX_DISJOINT_DEPTH:
        return False
    for x, y in ((a, b), (b, a)):
        for name in {p for node in x.nodes for p in node.get("required", [])}:
            xs = [
                node["properties"][name] for node in x.nodes if name in node.get("properties", {})
            ]
            ys = [
                node["properties"][name] for node in y.nodes if name in node.get("properties", {})
            ]
            if xs and ys and _disjoint(_Old.of(x.root, xs), _Old.of(y.root, ys), depth + 1):
                return True
    return False


def _admits(side: _Old, value: Any) -> bool:
    values = _values(side.nodes)
    return _value_atom(value) in _atoms(side.nodes) and (values is None or _canon(value) in values)


def _atoms(nodes: Iterable[Node]) -> frozenset[str]:
    """The JSON types a conjunction of nodes admits, narrowed by its enum/const values."""
    nodes = tuple(nodes)
    atoms = _ALL_ATOMS
    for node in nodes:
        if "type" in node:
            atoms &= _type_atoms(node["type"])
    values = _values(nodes)
    if values is not None:
        atoms &= {_value_atom(v) for v in values.values()}
    return atoms


def _type_atoms(declared: Any) -> frozenset[str]:
    names = [declared] if isinstance(declared, str) else list(declared)
    atoms = {a for name in names for a in (_NUMERIC if name == "number" else {name})}
    return frozenset(atoms) & _ALL_ATOMS


def _type_names(atoms: Iterable[str]) -> str:
    names = set(atoms)
    if names >= _NUMERIC:
        names = (names - _NUMERIC) | {"number"}
    return ", ".join(sorted("non-integer number" if a == "fraction" else a for a in names))


def _values(nodes: Iterable[Node]) -> dict[object, Any] | None:
    """The finite set of values `enum`/`const` leave, keyed by `_canon`; None when unlimited."""
    allowed: dict[object, Any] | None = None
    for node in nodes:
        for options in ([node["const"]] if "const" in node else None, node.get("enum")):
            if options is not None:
                here = {_canon(v): v for v in options}
                allowed = (
                    here if allowed is None else {k: v for k, v in allowed.items() if k in here}
                )
    return allowed


def _value_atom(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return "null" if value is None else "boolean"
    if isinstance(value, int | float | Decimal):
        number = _dec(value)
        return (
            "integer" if number.is_finite() and number == number.to_integral_value() else "fraction"
        )
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, Mapping) else "array"


def _canon(value: Any) -> object:
    """A hashable form in which JSON-equal values are equal: 1 == 1.0, but true != 1."""
    if value is None or isinstance(value, bool | str):
        return type(value).__name__, value
    if isinstance(value, int | float | Decimal):
        return "number", _dec(value)
    if isinstance(value, Mapping):
        return "object", frozenset((k, _canon(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return "array", tuple(_canon(v) for v in value)
    return "other", repr(value)


def _dec(number: Any) -> Decimal:
    # repr is the shortest spelling that round-trips: the decimal the document most likely wrote.
    return Decimal(repr(number)) if isinstance(number, float) else Decimal(number)


def _divides(step: Decimal, number: Decimal) -> bool:
    try:
        with localcontext(prec=1000):  # the remainder is exact while the quotient fits
            return step != 0 and number % step == 0
    except InvalidOperation:
        return False


def _tightest(node: Node, lower: bool) -> tuple[tuple[Decimal, bool], str] | None:
    """A node's tightest numeric bound on one side as (sort key, keyword): a larger key is
    tighter, and at equal values the exclusive bound is."""
    sign = 1 if lower else -1
    found = [((sign * _dec(node[kw]), kw[0] == "e"), kw) for kw in _BOUNDS[lower] if kw in node]
    return max(found) if found else None


def _tail(node: Node) -> tuple[Any, str]:
    """The schema of array items past `prefixItems`, and the keyword it comes from."""
    if "items" in node:
        return node["items"], "items"
    if _local_unevaluated(node, "unevaluatedItems"):
        return node["unevaluatedItems"], "unevaluatedItems"
    return True, "items"


def _local_unevaluated(node: Node, kw: str) -> bool:
    """Whether `kw` (unevaluatedItems/Properties) is present and sees only this node's own
    keywords, so that it acts like `items` or `additionalProperties` (`contains` also marks items
    evaluated)."""
    blockers = _IN_PLACE | ({"contains"} if kw == "unevaluatedItems" else set())
    return kw in node and not (node.keys() & blockers)


def _is_true(schema: Any) -> bool:
    return schema is True or (isinstance(schema, Mapping) and not (schema.keys() - _ANNOTATIONS))


def _snake(kw: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", kw).lower()


def _esc(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _show(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)
