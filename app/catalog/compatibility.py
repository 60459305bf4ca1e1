"""JSON Schema compatibility in the schema-registry sense.

A schema is the set of JSON values it accepts. `accepts_everything(old, new)` tries to prove that
the set of `old` lies inside the set of `new` and, where it cannot, says why: each
`Incompatibility` points into `new` and names the kind of narrowing. The proof is structural, the
way Confluent Schema Registry and Karapace reason about JSON Schema, never by sampling values:

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
(`$dynamicRef`, vendor extensions, `unevaluated*` beside in-place applicators, ...). Annotations
(`title`, `default`, `examples`, ...) never matter. Numbers are compared as `Decimal` (floats through
their shortest repr, as a YAML or JSON file spelled them), so `multipleOf: 0.1` divides `0.3`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

Node = Mapping[str, Any]

_ALL_ATOMS = frozenset({"null", "boolean", "object", "array", "string", "integer", "fraction"})
_NUMERIC = frozenset({"integer", "fraction"})  # "number" is both: integer ⊂ number falls out
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
        *("minLength", "maxLength", "pattern", "format", "multipleOf"),
        *("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"),
        *("prefixItems", "items", "minItems", "maxItems", "uniqueItems"),
        *("contains", "minContains", "maxContains", "properties", "patternProperties"),
        *("additionalProperties", "required", "minProperties", "maxProperties"),
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
_OBJECT_MEMBERS = (
    "properties",
    "patternProperties",
    "additionalProperties",
    "unevaluatedProperties",
)
_EMPTY: Node = {}
_STRING: Node = {"type": "string"}  # what every property name already is
_MAX_DISJOINT_DEPTH = 8


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
    kind: str  # stable snake_case code
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
    if mode is Compatibility.FULL:
        return _labelled(backward, "Backward (new schema reading old data)") + _labelled(
            forward, "Forward (old schema reading new data)"
        )
    return backward + forward


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
        # An old conjunct this checker cannot read (a dangling $ref) is left out: that only makes
        # the old side look wider, which can hide no break.
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
        return list(dict.fromkeys(self._descend([self._old_root], self._new_root, "")))

    def _reverse(self) -> _Checker:
        """The same pair the other way round, for the few proofs that need new ⊆ old."""
        if self._mirror is None:
            self._mirror = _Checker(self._new_root, self._old_root, self._r, self._w)
            self._mirror._mirror = self
        return self._mirror

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
                elif not old.rejects_all():
                    reasons.append(self._opaque(item, where))
            return reasons
        finally:
            self._active.discard(key)

    def _opaque(self, item: Any, path: str) -> Incompatibility:
        if item is False:
            return self._reason(path, "false_schema", "is `false` and refuses every value")
        if isinstance(item, _Unresolved):
            return self._reason(
                path, "unresolvable_ref", f"has $ref {item!r}, which cannot be followed"
            )
        return self._reason(path, "unsupported_change", f"has {_show(item)}, which is not a schema")

    def _reason(self, path: str, kind: str, change: str, why: str = "") -> Incompatibility:
        why = why or f"values the {self._w} schema accepted may be refused"
        return Incompatibility(path, kind, f"The {self._r} schema {change}, so {why}.")

    def _node(self, old: _Old, n: Node, path: str) -> list[Incompatibility]:
        if old.rejects_all():
            return []
        reasons = self._direct(old, n, path)
        union = old.next_union()
        if reasons and union is not None:
            # The old schema is a union: it is enough that each alternative fits on its own.
            per_branch = [self._node(branch, n, path) for branch in old.branches(*union)]
            reasons = [r for branch in per_branch for r in branch]
        return reasons

    def _direct(self, old: _Old, n: Node, path: str) -> list[Incompatibility]:
        atoms = _atoms(old.nodes)
        nodes = old.nodes
        reasons = self._type(old, n, atoms, path) + self._values(old, n, atoms, path)
        for kw, (atom, sign) in _LIMITS.items():
            if kw in n and atom in atoms:
                reasons += _best(nodes, self._limit, n, kw, sign, path)
        if "string" in atoms:
            reasons += [
                r
                for kw in ("pattern", "format")
                if kw in n
                for r in _best(nodes, self._same, n, kw, path)
            ]
        if atoms & _NUMERIC:
            for lower in (True, False):
                if _tightest(n, lower) is not None:
                    reasons += _best(nodes, self._bound, n, lower, path)
            if "multipleOf" in n:
                reasons += _best(nodes, self._multiple, n, "fraction" not in atoms, path)
        if "array" in atoms:
            if "prefixItems" in n or "items" in n or _local_unevaluated(n, "unevaluatedItems"):
                reasons += _best(nodes, self._items, n, path)
            if n.get("uniqueItems") is True and not any(
                c.get("uniqueItems") is True for c in nodes
            ):
                reasons.append(
                    self._reason(
                        f"{path}/uniqueItems",
                        "unique_items_added",
                        "requires unique items",
                        f"{self._w} arrays with repeated items are refused",
                    )
                )
            if "contains" in n and (n.get("minContains", 1) != 0 or "maxContains" in n):
                reasons += _best(nodes, self._contains, n, path)
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
        had = any("type" in c for c in old.nodes)
        return [
            self._reason(
                f"{path}/type",
                "type_narrowed" if had else "type_added",
                f"{'narrows' if had else 'adds'} type to {_show(n['type'])}",
                f"{_type_names(lost)} values the {self._w} schema accepted are refused",
            )
        ]

    def _values(
        self, old: _Old, n: Node, atoms: frozenset[str], path: str
    ) -> list[Incompatibility]:
        allowed = _values([n])
        if allowed is None:
            return []
        kw = "const" if "const" in n else "enum"
        had = _values(old.nodes)
        if had is None:
            return [
                self._reason(
                    f"{path}/{kw}",
                    f"{kw}_added",
                    f"adds `{kw}`",
                    f"any other value the {self._w} schema accepted is refused",
                )
            ]
        lost = [v for k, v in had.items() if k not in allowed and _value_atom(v) in atoms]
        if not lost:
            return []
        kind = "enum_narrowed" if kw == "enum" else "const_changed"
        return [
            self._reason(
                f"{path}/{kw}",
                kind,
                f"no longer allows {', '.join(map(_show, lost))}",
                f"{self._w} data holding it is refused",
            )
        ]

    def _limit(self, c: Node, n: Node, kw: str, sign: int, path: str) -> list[Incompatibility]:
        if kw in c and sign * (_dec(n[kw]) - _dec(c[kw])) <= 0:
            return []
        stem = _snake(kw)
        if kw not in c:
            return [self._reason(f"{path}/{kw}", f"{stem}_added", f"adds {kw} {_show(n[kw])}")]
        verb = ("raises", "increased") if sign > 0 else ("lowers", "decreased")
        return [
            self._reason(
                f"{path}/{kw}",
                f"{stem}_{verb[1]}",
                f"{verb[0]} {kw} from {_show(c[kw])} to {_show(n[kw])}",
            )
        ]

    def _same(self, c: Node, n: Node, kw: str, path: str) -> list[Incompatibility]:
        if kw in c and c[kw] == n[kw]:
            return []
        # Whether one regular expression or format contains another is not decided here.
        kind, verb = (f"{kw}_changed", "changes") if kw in c else (f"{kw}_added", "adds")
        return [
            self._reason(
                f"{path}/{kw}",
                kind,
                f"{verb} {kw} {_show(n[kw])}",
                f"{self._w} strings need not satisfy it",
            )
        ]

    def _bound(self, c: Node, n: Node, lower: bool, path: str) -> list[Incompatibility]:
        new, old = _tightest(n, lower), _tightest(c, lower)
        if new is None or (old is not None and old[0] >= new[0]):
            return []
        kw = new[1]
        if old is None:
            return [
                self._reason(f"{path}/{kw}", f"{_snake(kw)}_added", f"adds {kw} {_show(n[kw])}")
            ]
        verb = "increased" if lower else "decreased"
        return [
            self._reason(
                f"{path}/{kw}",
                f"{_snake(kw)}_{verb}",
                f"tightens the bound from {old[1]} {_show(c[old[1]])} to {kw} {_show(n[kw])}",
            )
        ]

    def _multiple(self, c: Node, n: Node, integral: bool, path: str) -> list[Incompatibility]:
        step = _dec(n["multipleOf"])
        # Integers are all multiples of 1, so integer-only old data has an implicit multipleOf 1.
        old = _dec(c["multipleOf"]) if "multipleOf" in c else (Decimal(1) if integral else None)
        if old is not None and _divides(step, old):
            return []
        kind, verb = (
            ("multiple_of_changed", "changes")
            if "multipleOf" in c
            else ("multiple_of_added", "adds")
        )
        return [
            self._reason(
                f"{path}/multipleOf",
                kind,
                f"{verb} multipleOf {_show(n['multipleOf'])}",
                f"{self._w} numbers that are not multiples of it are refused",
            )
        ]

    def _items(self, c: Node, n: Node, path: str) -> list[Incompatibility]:
        pre_o, pre_n = c.get("prefixItems", []), n.get("prefixItems", [])
        (tail_o, _), (tail_n, tail_kw) = _tail(c), _tail(n)
        reasons: list[Incompatibility] = []
        for i in range(max(len(pre_o), len(pre_n))):
            item_o = pre_o[i] if i < len(pre_o) else tail_o
            item_n, where = (
                (pre_n[i], f"{path}/prefixItems/{i}")
                if i < len(pre_n)
                else (tail_n, f"{path}/{tail_kw}")
            )
            reasons += self._descend([item_o], item_n, where)
        return reasons + self._descend([tail_o], tail_n, f"{path}/{tail_kw}")

    def _contains(self, c: Node, n: Node, path: str) -> list[Incompatibility]:
        if "contains" not in c:
            return [
                self._reason(
                    f"{path}/contains",
                    "contains_added",
                    "adds `contains`",
                    f"{self._w} arrays without such an item are refused",
                )
            ]
        reasons = self._descend([c["contains"]], n["contains"], f"{path}/contains")
        if _dec(n.get("minContains", 1)) > _dec(c.get("minContains", 1)):
            reasons.append(
                self._reason(
                    f"{path}/minContains",
                    "min_contains_increased",
                    f"raises minContains to {_show(n['minContains'])}",
                )
            )
        # maxContains counts items matching the new `contains`: sound only when both match alike.
        if "maxContains" in n and not (
            "maxContains" in c
            and _dec(c["maxContains"]) <= _dec(n["maxContains"])
            and self._equivalent(c["contains"], n["contains"])
        ):
            reasons.append(
                self._reason(
                    f"{path}/maxContains",
                    "max_contains_decreased",
                    f"caps matching items at maxContains {_show(n['maxContains'])}",
                )
            )
        return reasons

    def _object(self, old: _Old, n: Node, path: str) -> list[Incompatibility]:
        nodes = old.nodes
        reasons = _best(nodes, self._members, n, path) if n.keys() & set(_OBJECT_MEMBERS) else []
        required = {p for c in nodes for p in c.get("required", [])}
        for name in n.get("required", []):
            if name not in required:
                reasons.append(
                    self._reason(
                        f"{path}/required",
                        "required_property_added",
                        f"requires property {name!r}",
                        f"{self._w} objects without it are refused",
                    )
                )
        if "propertyNames" in n:
            reasons += _best(
                nodes,
                lambda c: self._descend(
                    [c.get("propertyNames", True), _STRING],
                    n["propertyNames"],
                    f"{path}/propertyNames",
                ),
            )
        for key, needs in n.get("dependentRequired", {}).items():
            have = required | {
                p for c in nodes for p in c.get("dependentRequired", {}).get(key, [])
            }
            if missing := [p for p in needs if p not in have]:
                reasons.append(
                    self._reason(
                        f"{path}/dependentRequired/{_esc(key)}",
                        "dependent_required_added",
                        f"requires {', '.join(map(repr, missing))} whenever {key!r} is present",
                        f"{self._w} objects with {key!r} but without them are refused",
                    )
                )
        for key, schema in n.get("dependentSchemas", {}).items():
            where = f"{path}/dependentSchemas/{_esc(key)}"
            # Either the old schema had the same dependency, or it implies the new one outright.
            tries = [
                [c["dependentSchemas"][key]] for c in nodes if key in c.get("dependentSchemas", {})
            ]
            reasons += _best(
                [*tries, list(nodes)], lambda olds, s=schema, w=where: self._descend(olds, s, w)
            )
        return reasons

    def _members(self, c: Node, n: Node, path: str) -> list[Incompatibility]:
        old, new = _Members.of(c), _Members.of(n)
        reasons: list[Incompatibility] = []
        for name in dict.fromkeys([*old.properties, *new.properties]):
            gov_o, gov_n = old.governing(name), new.governing(name)
            if gov_n is None:
                reasons.append(
                    self._reason(
                        f"{path}/patternProperties",
                        "unsupported_change",
                        "has a pattern this checker cannot compile",
                    )
                )
                continue
            if gov_o is None:  # an old pattern it cannot compile: assume the least about old data
                olds = [old.properties[name]] if name in old.properties else [True]
            else:
                olds = [schema for schema, _ in gov_o]
            old_open = gov_o is not None and [rel for _, rel in gov_o] == [f"/{old.extra_kw}"]
            for schema, rel in gov_n:
                if not (inner := self._descend(olds, schema, path + rel)):
                    continue
                where = f"{path}/properties/{_esc(name)}"
                if rel == f"/{new.extra_kw}":  # removed: now governed by additionalProperties
                    closed = new.extra is False
                    kind = (
                        "property_removed_from_closed_model"
                        if closed
                        else "property_removed_not_covered"
                    )
                    change = (
                        "is closed"
                        if closed
                        else f"restricts undeclared properties by {new.extra_kw}"
                    )
                    reasons.append(
                        self._reason(
                            where,
                            kind,
                            f"drops property {name!r} and {change}",
                            f"{self._w} objects carrying {name!r} are refused",
                        )
                    )
                elif old_open:
                    kind = (
                        "property_added_to_open_model"
                        if _is_true(old.extra)
                        else "property_added_not_covered"
                    )
                    reasons.append(
                        self._reason(
                            where,
                            kind,
                            f"declares property {name!r}, which the {self._w} schema left to {old.extra_kw}",
                            f"{self._w} objects may already carry {name!r} with other values",
                        )
                    )
                else:
                    reasons += inner
        # Members named by neither: an old one matched old patterns, or else additionalProperties.
        old_others = [old.extra, *old.patterns.values()]
        for pattern, schema in new.patterns.items():
            olds = [old.patterns[pattern]] if pattern in old.patterns else old_others
            if any(self._descend([o], schema, "") for o in olds):
                reasons.append(
                    self._reason(
                        f"{path}/patternProperties/{_esc(pattern)}",
                        "pattern_properties_narrowed",
                        f"restricts properties matching {pattern!r}",
                    )
                )
        unmatched = [old.extra, *(s for p, s in old.patterns.items() if p not in new.patterns)]
        if any(self._descend([o], new.extra, "") for o in unmatched):
            reasons.append(
                self._reason(
                    f"{path}/{new.extra_kw}",
                    "additional_properties_narrowed",
                    f"narrows {new.extra_kw} to {_show(new.extra)}",
                    f"{self._w} objects with other properties may be refused",
                )
            )
        return reasons

    def _union(self, old: _Old, n: Node, kw: str, path: str) -> list[Incompatibility]:
        branches: Sequence[Any] = n[kw]
        reasons = []
        for leaf in old.leaves():
            if not any(self._fits(leaf, branches, j, kw, path) for j in range(len(branches))):
                which = "some" if kw == "anyOf" else "exactly one"
                reasons.append(
                    self._reason(
                        f"{path}/{kw}",
                        f"{_snake(kw)}_narrowed",
                        f"has no {kw} branch that surely matches {which} of the values of {leaf.describe()} of the {self._w} schema",
                        "those values are refused",
                    )
                )
        return reasons

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
        if any(
            "not" in c and not self._reverse()._implies(banned, c["not"], "") for c in old.nodes
        ):
            return []
        if _disjoint(old, banned):
            return []
        kind = "not_changed" if any("not" in c for c in old.nodes) else "not_added"
        return [self._reason(f"{path}/not", kind, "forbids values through `not`")]

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
        return [self._reason(f"{path}/if", kind, "adds or changes an if/then/else condition")]

    def _unsupported(self, old: _Old, n: Node, path: str) -> list[Incompatibility]:
        reasons = []
        for kw, value in n.items():
            if (
                kw in _ANNOTATIONS
                or kw in _MODELLED
                or (kw.startswith("unevaluated") and (value is True or _local_unevaluated(n, kw)))
            ):
                continue
            if not any(kw in c and _canon(c[kw]) == _canon(value) for c in old.nodes):
                reasons.append(
                    self._reason(
                        f"{path}/{_esc(kw)}",
                        "unsupported_change",
                        f"adds or changes `{kw}`, which this checker cannot reason about",
                        f"it cannot promise that {self._w} data is still accepted",
                    )
                )
        return reasons


@dataclass(frozen=True)
class _Members:
    """How one object schema governs its members' values."""

    properties: Mapping[str, Any]
    patterns: Mapping[str, Any]
    extra: Any  # the schema of members neither named nor matched by a pattern
    extra_kw: str

    @classmethod
    def of(cls, node: Node) -> _Members:
        extra, kw = True, "additionalProperties"
        if "additionalProperties" in node:
            extra = node["additionalProperties"]
        elif _local_unevaluated(node, "unevaluatedProperties"):
            extra, kw = node.get("unevaluatedProperties", True), "unevaluatedProperties"
        return cls(node.get("properties", {}), node.get("patternProperties", {}), extra, kw)

    def governing(self, name: str) -> list[tuple[Any, str]] | None:
        """The schemas member `name` must match, with their relative pointers; None when a
        pattern does not compile as a Python regular expression."""
        found = (
            [(self.properties[name], f"/properties/{_esc(name)}")]
            if name in self.properties
            else []
        )
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
    candidates: Sequence[Any], check: Callable[..., list[Incompatibility]], *args: Any
) -> list[Incompatibility]:
    """[] when any one candidate (an old conjunct) proves `check`, else the shortest complaint."""
    best: list[Incompatibility] | None = None
    for candidate in candidates or (_EMPTY,):
        reasons = check(candidate, *args)
        if not reasons:
            return []
        if best is None or len(reasons) < len(best):
            best = reasons
    return best or []


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
    return (
        frozenset(a for name in names for a in (_NUMERIC if name == "number" else {name}))
        & _ALL_ATOMS
    )


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
    pair = ("minimum", "exclusiveMinimum") if lower else ("maximum", "exclusiveMaximum")
    found = [((sign * _dec(node[kw]), kw.startswith("exclusive")), kw) for kw in pair if kw in node]
    return max(found) if found else None


def _tail(node: Node) -> tuple[Any, str]:
    """The schema of array items past `prefixItems`, and the keyword it comes from."""
    if "items" in node:
        return node["items"], "items"
    if _local_unevaluated(node, "unevaluatedItems"):
        return node.get("unevaluatedItems", True), "unevaluatedItems"
    return True, "items"


def _local_unevaluated(node: Node, kw: str) -> bool:
    """Whether `kw` is present and sees only this node's own keywords, acting like `items` or
    `additionalProperties` do (`contains` also marks items evaluated)."""
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
