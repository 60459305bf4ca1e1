"""app.catalog.compatibility: which schema changes may refuse data the old schema accepted.

Each narrowing rule is checked both ways: the change is reported with its kind and path, and the
inverse change (a widening) is not. A property-based oracle then checks the checker against real
validation: whenever it calls a pair compatible, every instance hypothesis-jsonschema draws from
the old schema must be valid under the new one per `jsonschema`.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ConfigDict, Field

from app.catalog.compatibility import (
    Compatibility,
    Incompatibility,
    accepts_everything,
    compare,
)

Schema = dict[str, Any]


def found(old: Schema, new: Schema) -> list[tuple[str, str]]:
    return [(r.path, r.kind) for r in accepts_everything(old, new)]


OBJ = {"type": "object"}
ARR = {"type": "array"}
STR = {"type": "string"}
NUM = {"type": "number"}
INT = {"type": "integer"}
NATURAL = {**INT, "minimum": 0}

# (old, new, pointer, kind): old → new narrows, reported at `pointer` as `kind`; new → old widens.
NARROWINGS: dict[str, tuple[Schema, Schema, str, str]] = {
    # type
    "number to integer": (NUM, {"type": "integer"}, "/type", "type_narrowed"),
    "type removed from a list": (
        {"type": ["string", "null"]},
        STR,
        "/type",
        "type_narrowed",
    ),
    "type where there was none": ({}, STR, "/type", "type_added"),
    # object
    "required added": (
        {**OBJ, "properties": {"a": {}}},
        {**OBJ, "properties": {"a": {}}, "required": ["a"]},
        "/required",
        "required_property_added",
    ),
    "property removed, additionalProperties false": (
        {**OBJ, "properties": {"a": STR, "b": STR}, "additionalProperties": False},
        {**OBJ, "properties": {"a": STR}, "additionalProperties": False},
        "/properties/b",
        "property_removed_from_closed_model",
    ),
    "property removed, unevaluatedProperties false": (
        {**OBJ, "properties": {"a": STR, "b": STR}, "unevaluatedProperties": False},
        {**OBJ, "properties": {"a": STR}, "unevaluatedProperties": False},
        "/properties/b",
        "property_removed_from_closed_model",
    ),
    "property removed, not covered by additionalProperties": (
        {**OBJ, "properties": {"a": {"type": "integer"}}, "additionalProperties": NATURAL},
        {**OBJ, "additionalProperties": NATURAL},
        "/properties/a",
        "property_removed_not_covered",
    ),
    "property added to an open model": (
        OBJ,
        {**OBJ, "properties": {"a": STR}},
        "/properties/a",
        "property_added_to_open_model",
    ),
    "property added, narrower than additionalProperties": (
        {**OBJ, "additionalProperties": STR},
        {**OBJ, "properties": {"a": {**STR, "maxLength": 3}}, "additionalProperties": STR},
        "/properties/a",
        "property_added_not_covered",
    ),
    "additionalProperties true to false": (
        OBJ,
        {**OBJ, "additionalProperties": False},
        "/additionalProperties",
        "additional_properties_narrowed",
    ),
    "additionalProperties true to a schema": (
        {**OBJ, "additionalProperties": True},
        {**OBJ, "additionalProperties": STR},
        "/additionalProperties",
        "additional_properties_narrowed",
    ),
    "property schema narrowed": (
        {**OBJ, "properties": {"a": {**STR, "maxLength": 5}}},
        {**OBJ, "properties": {"a": {**STR, "maxLength": 3}}},
        "/properties/a/maxLength",
        "max_length_decreased",
    ),
    "minProperties raised": (
        {**OBJ, "minProperties": 1},
        {**OBJ, "minProperties": 2},
        "/minProperties",
        "min_properties_increased",
    ),
    "maxProperties lowered": (
        {**OBJ, "maxProperties": 3},
        {**OBJ, "maxProperties": 2},
        "/maxProperties",
        "max_properties_decreased",
    ),
    "maxProperties added": (
        OBJ,
        {**OBJ, "maxProperties": 2},
        "/maxProperties",
        "max_properties_added",
    ),
    "patternProperties added": (
        OBJ,
        {**OBJ, "patternProperties": {"^x-": STR}},
        "/patternProperties/^x-",
        "pattern_properties_narrowed",
    ),
    "patternProperties schema narrowed": (
        {**OBJ, "patternProperties": {"^x-": {}}},
        {**OBJ, "patternProperties": {"^x-": STR}},
        "/patternProperties/^x-",
        "pattern_properties_narrowed",
    ),
    "propertyNames added": (
        OBJ,
        {**OBJ, "propertyNames": {"maxLength": 3}},
        "/propertyNames/maxLength",
        "max_length_added",
    ),
    "dependentRequired added": (
        OBJ,
        {**OBJ, "dependentRequired": {"a": ["b"]}},
        "/dependentRequired/a",
        "dependent_required_added",
    ),
    "dependentSchemas added": (
        OBJ,
        {**OBJ, "dependentSchemas": {"a": {"required": ["b"]}}},
        "/dependentSchemas/a/required",
        "required_property_added",
    ),
    # array
    "items narrowed": (
        {**ARR, "items": NUM},
        {**ARR, "items": {"type": "integer"}},
        "/items/type",
        "type_narrowed",
    ),
    "items added": (ARR, {**ARR, "items": STR}, "/items/type", "type_added"),
    "prefixItems narrowed": (
        {**ARR, "prefixItems": [STR]},
        {**ARR, "prefixItems": [{**STR, "minLength": 1}]},
        "/prefixItems/0/minLength",
        "min_length_added",
    ),
    "prefixItems added over items": (
        {**ARR, "items": STR},
        {**ARR, "prefixItems": [{"const": "x"}], "items": STR},
        "/prefixItems/0/const",
        "const_added",
    ),
    "items closed after prefixItems": (
        {**ARR, "prefixItems": [STR]},
        {**ARR, "prefixItems": [STR], "items": False},
        "/items",
        "false_schema",
    ),
    "minItems raised": (
        {**ARR, "minItems": 1},
        {**ARR, "minItems": 2},
        "/minItems",
        "min_items_increased",
    ),
    "maxItems lowered": (
        {**ARR, "maxItems": 3},
        {**ARR, "maxItems": 2},
        "/maxItems",
        "max_items_decreased",
    ),
    "uniqueItems false to true": (
        {**ARR, "uniqueItems": False},
        {**ARR, "uniqueItems": True},
        "/uniqueItems",
        "unique_items_added",
    ),
    "contains added": (ARR, {**ARR, "contains": STR}, "/contains", "contains_added"),
    "contains narrowed": (
        {**ARR, "contains": NUM},
        {**ARR, "contains": {"type": "integer"}},
        "/contains/type",
        "type_narrowed",
    ),
    "minContains raised": (
        {**ARR, "contains": STR},
        {**ARR, "contains": STR, "minContains": 2},
        "/minContains",
        "min_contains_increased",
    ),
    "maxContains added": (
        {**ARR, "contains": STR},
        {**ARR, "contains": STR, "maxContains": 2},
        "/maxContains",
        "max_contains_added",
    ),
    # string
    "minLength raised": (
        {**STR, "minLength": 1},
        {**STR, "minLength": 2},
        "/minLength",
        "min_length_increased",
    ),
    "maxLength lowered": (
        {**STR, "maxLength": 5},
        {**STR, "maxLength": 3},
        "/maxLength",
        "max_length_decreased",
    ),
    "maxLength added": (STR, {**STR, "maxLength": 3}, "/maxLength", "max_length_added"),
    "pattern added": (STR, {**STR, "pattern": "^a"}, "/pattern", "pattern_added"),
    "format added": (STR, {**STR, "format": "date"}, "/format", "format_added"),
    "format added to an integer": (INT, {**INT, "format": "int32"}, "/format", "format_added"),
    # number
    "minimum raised": (
        {**NUM, "minimum": 1},
        {**NUM, "minimum": 2},
        "/minimum",
        "minimum_increased",
    ),
    "minimum added": (NUM, {**NUM, "minimum": 0}, "/minimum", "minimum_added"),
    "maximum lowered": (
        {**NUM, "maximum": 10},
        {**NUM, "maximum": 9},
        "/maximum",
        "maximum_decreased",
    ),
    "exclusiveMinimum raised": (
        {**NUM, "exclusiveMinimum": 0},
        {**NUM, "exclusiveMinimum": 1},
        "/exclusiveMinimum",
        "exclusive_minimum_increased",
    ),
    "minimum 5 to exclusiveMinimum 5": (
        {**NUM, "minimum": 5},
        {**NUM, "exclusiveMinimum": 5},
        "/exclusiveMinimum",
        "exclusive_minimum_increased",
    ),
    "exclusiveMinimum 4 to minimum 5": (
        {**NUM, "exclusiveMinimum": 4},
        {**NUM, "minimum": 5},
        "/minimum",
        "minimum_increased",
    ),
    "maximum 10 to exclusiveMaximum 10": (
        {**NUM, "maximum": 10},
        {**NUM, "exclusiveMaximum": 10},
        "/exclusiveMaximum",
        "exclusive_maximum_decreased",
    ),
    "exclusiveMaximum added": (
        NUM,
        {**NUM, "exclusiveMaximum": 1},
        "/exclusiveMaximum",
        "exclusive_maximum_added",
    ),
    "multipleOf added": (NUM, {**NUM, "multipleOf": 2}, "/multipleOf", "multiple_of_added"),
    "multipleOf to a non-divisor": (
        {**NUM, "multipleOf": 0.1},
        {**NUM, "multipleOf": 0.3},
        "/multipleOf",
        "multiple_of_changed",
    ),
    "multipleOf to a non-divisor (Decimal)": (
        {**NUM, "multipleOf": Decimal("2")},
        {**NUM, "multipleOf": Decimal("4")},
        "/multipleOf",
        "multiple_of_changed",
    ),
    # enum / const
    "enum value removed": ({"enum": ["a", "b"]}, {"enum": ["a"]}, "/enum", "enum_narrowed"),
    "enum added": (STR, {"enum": ["a", "b"]}, "/enum", "enum_added"),
    "const added": (STR, {"const": "a"}, "/const", "const_added"),
    "true is not 1": ({"enum": [True, 1]}, {"enum": [1]}, "/enum", "enum_narrowed"),
    # combinators
    "anyOf branch removed": (
        {"anyOf": [STR, {"type": "integer"}]},
        {"anyOf": [STR]},
        "/anyOf",
        "any_of_narrowed",
    ),
    "anyOf branch narrowed": (
        {"anyOf": [STR, {"type": "null"}]},
        {"anyOf": [{**STR, "maxLength": 2}, {"type": "null"}]},
        "/anyOf",
        "any_of_narrowed",
    ),
    "old union into one type": ({"anyOf": [STR, {"type": "null"}]}, STR, "/type", "type_narrowed"),
    "oneOf with overlapping branches": (
        STR,
        {"oneOf": [STR, {**STR, "maxLength": 3}]},
        "/oneOf",
        "one_of_narrowed",
    ),
    "allOf branch added": (
        OBJ,
        {**OBJ, "allOf": [{"required": ["a"]}]},
        "/allOf/0/required",
        "required_property_added",
    ),
    "not added": (STR, {**STR, "not": {"const": "x"}}, "/not", "not_added"),
    "not widened": ({"not": {"const": "x"}}, {"not": {"enum": ["x", "y"]}}, "/not", "not_changed"),
    "if/then added": (
        OBJ,
        {**OBJ, "if": {"required": ["a"]}, "then": {"required": ["b"]}},
        "/if",
        "conditional_added",
    ),
    "false property": (
        {"properties": {"a": {}}},
        {"properties": {"a": False}},
        "/properties/a",
        "false_schema",
    ),
    # what the checker does not model
    "unknown keyword added": (STR, {**STR, "x-length": 3}, "/x-length", "unsupported_change"),
    "$dynamicRef added": (
        STR,
        {**STR, "$dynamicRef": "#meta"},
        "/$dynamicRef",
        "unsupported_change",
    ),
    "unevaluatedProperties beside allOf": (
        OBJ,
        {**OBJ, "allOf": [{"properties": {"a": {}}}], "unevaluatedProperties": False},
        "/unevaluatedProperties",
        "unsupported_change",
    ),
    "dangling $ref": ({}, {"$ref": "#/$defs/missing"}, "/$ref", "unresolvable_ref"),
    "external $ref": ({}, {"$ref": "https://example.com/s.json"}, "/$ref", "unresolvable_ref"),
}


@pytest.mark.parametrize(("old", "new", "pointer", "kind"), NARROWINGS.values(), ids=NARROWINGS)
def test_a_narrowing_is_reported_with_its_kind_and_path(
    old: Schema, new: Schema, pointer: str, kind: str
) -> None:
    assert (pointer, kind) in found(old, new)


@pytest.mark.parametrize(("old", "new", "pointer", "kind"), NARROWINGS.values(), ids=NARROWINGS)
def test_the_inverse_widening_is_not(old: Schema, new: Schema, pointer: str, kind: str) -> None:
    assert found(new, old) == []


@pytest.mark.parametrize(("old", "new", "pointer", "kind"), NARROWINGS.values(), ids=NARROWINGS)
def test_every_message_is_one_sentence_naming_both_schemas(
    old: Schema, new: Schema, pointer: str, kind: str
) -> None:
    for reason in accepts_everything(old, new):
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", reason.kind)
        assert reason.message.startswith("The new schema "), reason.message
        assert "old" in reason.message
        assert reason.message.endswith(".")
        assert "\n" not in reason.message


# Changes that break both ways: neither side contains the other as far as the checker can tell.
BOTH_WAYS: dict[str, tuple[Schema, Schema, str, str]] = {
    "pattern changed": (
        {**STR, "pattern": "^a"},
        {**STR, "pattern": "^b"},
        "/pattern",
        "pattern_changed",
    ),
    "format changed": (
        {**STR, "format": "date"},
        {**STR, "format": "email"},
        "/format",
        "format_changed",
    ),
    "const changed": ({"const": "a"}, {"const": "b"}, "/const", "const_changed"),
    "type changed": (STR, {"type": "integer"}, "/type", "type_narrowed"),
    "unknown keyword changed": (
        {"x-length": 3},
        {"x-length": 4},
        "/x-length",
        "unsupported_change",
    ),
}


@pytest.mark.parametrize(("old", "new", "pointer", "kind"), BOTH_WAYS.values(), ids=BOTH_WAYS)
def test_a_change_breaks_both_ways(old: Schema, new: Schema, pointer: str, kind: str) -> None:
    assert (pointer, kind) in found(old, new)
    assert (pointer, kind) in found(new, old)


COMPATIBLE: dict[str, tuple[Schema, Schema]] = {
    "annotations only": (
        {**STR, "title": "A", "description": "x", "default": "a", "examples": ["a"]},
        {**STR, "title": "B", "description": "y", "default": "b", "deprecated": True},
    ),
    "new accepts everything": ({**STR, "maxLength": 2}, {}),
    "a number keyword on a string": (STR, {**STR, "minimum": 3, "maxItems": 1}),
    "a string keyword on an object": (OBJ, {**OBJ, "maxLength": 1, "pattern": "^a"}),
    "the same format": ({**STR, "format": "date"}, {**STR, "format": "date"}),
    "the same pattern": ({**STR, "pattern": "^a"}, {**STR, "pattern": "^a"}),
    "pattern removed": ({**STR, "pattern": "^a"}, STR),
    "integer inside number": ({"type": "integer"}, NUM),
    "multipleOf 0.5 on integers": ({"type": "integer"}, {"type": "integer", "multipleOf": 0.5}),
    "multipleOf 0.3 is a multiple of 0.1": ({**NUM, "multipleOf": 0.3}, {**NUM, "multipleOf": 0.1}),
    "Decimal multipleOf": (
        {**NUM, "multipleOf": Decimal("0.75")},
        {**NUM, "multipleOf": Decimal("0.25")},
    ),
    "minimum as int, float and Decimal": (
        {**NUM, "minimum": Decimal("1.5")},
        {**NUM, "minimum": 1},
    ),
    "exclusiveMinimum 5 implies minimum 5": ({**NUM, "exclusiveMinimum": 5}, {**NUM, "minimum": 5}),
    "1 and 1.0 are one value": ({"enum": [1]}, {"enum": [1.0, 2]}),
    "type added beside an enum": ({"enum": ["a"]}, {**STR, "enum": ["a", "b"]}),
    "an old schema that accepts nothing": ({**STR, "enum": [1]}, {"type": "null"}),
    "nullable through anyOf": (
        {"type": "integer"},
        {"anyOf": [{"type": "integer"}, {"type": "null"}]},
    ),
    "anyOf reordered": (
        {"anyOf": [STR, {"type": "integer"}]},
        {"anyOf": [{"type": "integer"}, STR]},
    ),
    "old union into a type list": (
        {"anyOf": [STR, {"type": "integer"}]},
        {"type": ["string", "integer"]},
    ),
    "oneOf of disjoint types": ({"type": "integer"}, {"oneOf": [STR, {"type": "integer"}]}),
    "an unchanged oneOf of overlapping objects": (
        {"oneOf": [{**OBJ, "required": ["a"]}, {**OBJ, "required": ["b"]}]},
        {"oneOf": [{**OBJ, "required": ["a"]}, {**OBJ, "required": ["b"]}]},
    ),
    "allOf flattened": (
        {"allOf": [OBJ, {"properties": {"a": STR}}, {"required": ["a"]}]},
        {**OBJ, "properties": {"a": STR}, "required": ["a"]},
    ),
    "not narrowed": ({"not": {"enum": ["x", "y"]}}, {"not": {"const": "x"}}),
    "not of a type the data never has": ({"type": "integer"}, {"not": STR}),
    "if/then kept": (
        {**OBJ, "if": {"required": ["a"]}, "then": {"required": ["b"]}},
        {**OBJ, "if": {"required": ["a"]}, "then": {"required": ["b"]}},
    ),
    "additionalProperties false to unevaluatedProperties false": (
        {**OBJ, "properties": {"a": STR}, "additionalProperties": False},
        {**OBJ, "properties": {"a": STR}, "unevaluatedProperties": False},
    ),
    "property added to a closed model": (
        {**OBJ, "properties": {"a": STR}, "additionalProperties": False},
        {**OBJ, "properties": {"a": STR, "b": STR}, "additionalProperties": False},
    ),
    "property added that takes any value": (
        OBJ,
        {**OBJ, "properties": {"a": {"description": "x"}}},
    ),
    "property removed from an open model": ({**OBJ, "properties": {"a": STR}}, OBJ),
    "unchanged unknown keyword": ({**STR, "x-length": 3}, {**STR, "x-length": 3}),
    "propertyNames of type string": (OBJ, {**OBJ, "propertyNames": STR}),
    "items after prefixItems": (
        {**ARR, "prefixItems": [STR], "items": {"type": "integer"}},
        {**ARR, "prefixItems": [STR, NUM]},
    ),
}


@pytest.mark.parametrize(("old", "new"), COMPATIBLE.values(), ids=COMPATIBLE)
def test_a_compatible_change_reports_nothing(old: Schema, new: Schema) -> None:
    assert found(old, new) == []


def test_a_dangling_ref_in_the_old_schema_only_widens_it() -> None:
    assert found({"$ref": "#/$defs/missing"}, {}) == []
    assert ("/type", "type_added") in found({"$ref": "#/$defs/missing"}, STR)


# --- $ref ---------------------------------------------------------------------------------------


def tree(value_type: str) -> Schema:
    """A recursive schema: a node with a value and child nodes."""
    node = {
        "type": "object",
        "properties": {
            "value": {"type": value_type},
            "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
        },
        "required": ["value"],
    }
    return {"$defs": {"Node": node}, "$ref": "#/$defs/Node"}


def test_an_unchanged_recursive_schema_is_compatible() -> None:
    assert found(tree("integer"), tree("integer")) == []


def test_a_narrowing_inside_a_recursive_ref_is_found_at_its_definition() -> None:
    assert found(tree("number"), tree("integer")) == [
        ("/$defs/Node/properties/value/type", "type_narrowed")
    ]
    assert found(tree("integer"), tree("number")) == []


def test_mutually_recursive_refs() -> None:
    def schema(leaf: str) -> Schema:
        return {
            "$defs": {
                "A": {
                    "type": "object",
                    "properties": {"b": {"$ref": "#/$defs/B"}, "v": {"type": leaf}},
                },
                "B": {"type": "array", "items": {"$ref": "#/$defs/A"}},
            },
            "$ref": "#/$defs/A",
        }

    assert found(schema("integer"), schema("number")) == []
    assert found(schema("number"), schema("integer")) == [
        ("/$defs/A/properties/v/type", "type_narrowed")
    ]


def test_a_ref_to_the_root() -> None:
    linked = {"type": "object", "properties": {"next": {"$ref": "#"}, "v": {"type": "integer"}}}
    assert found(linked, linked) == []
    assert ("/properties/v/type", "type_narrowed") in found(
        {**linked, "properties": {**linked["properties"], "v": NUM}}, linked
    )


def test_refs_and_inline_schemas_compare_by_content() -> None:
    inline = {**OBJ, "properties": {"a": {**STR, "maxLength": 3}}}
    referenced = {
        "$defs": {"Short": {**STR, "maxLength": 3}},
        **OBJ,
        "properties": {"a": {"$ref": "#/$defs/Short"}},
    }
    renamed = {
        "$defs": {"Tiny": {**STR, "maxLength": 3}},
        **OBJ,
        "properties": {"a": {"$ref": "#/$defs/Tiny"}},
    }
    for old, new in [(inline, referenced), (referenced, inline), (referenced, renamed)]:
        assert found(old, new) == []
    tighter = {
        "$defs": {"Short": {**STR, "maxLength": 2}},
        **OBJ,
        "properties": {"a": {"$ref": "#/$defs/Short"}},
    }
    assert found(referenced, tighter) == [("/$defs/Short/maxLength", "max_length_decreased")]


def test_ref_pointers_are_unescaped() -> None:
    old = {
        "$defs": {"a/b": STR, "with space": STR},
        "anyOf": [{"$ref": "#/$defs/a~1b"}, {"$ref": "#/$defs/with%20space"}],
    }
    assert found(old, STR) == []
    assert found(old, {"type": "integer"}) != []


def test_a_ref_with_siblings_is_a_conjunction() -> None:
    old = {"$defs": {"S": STR}, "$ref": "#/$defs/S", "maxLength": 3}
    assert found(old, {**STR, "maxLength": 3}) == []
    assert found({**STR, "maxLength": 3}, old) == []


def test_a_discriminated_union_may_gain_a_branch_but_not_lose_one() -> None:
    def union(*kinds: str) -> Schema:
        defs = {
            k.upper(): {
                "type": "object",
                "properties": {"kind": {"const": k}},
                "required": ["kind"],
            }
            for k in kinds
        }
        return {"$defs": defs, "oneOf": [{"$ref": f"#/$defs/{k.upper()}"} for k in kinds]}

    assert found(union("a", "b"), union("a", "b", "c")) == []
    assert found(union("a", "b", "c"), union("a", "b")) == [("/oneOf", "one_of_narrowed")]


# --- pydantic-generated schemas -----------------------------------------------------------------


class Item(BaseModel):
    sku: str
    quantity: int = Field(ge=1)


class Order(BaseModel):
    id: str
    items: list[Item]


class OrderWithNote(Order):
    note: str | None = None


class ClosedOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str


class ClosedOrderWithNote(ClosedOrder):
    note: str | None = None


class BulkItem(BaseModel):
    sku: str
    quantity: int = Field(ge=10)


class BulkOrder(BaseModel):
    id: str
    items: list[BulkItem]


def test_pydantic_an_unchanged_model_is_compatible() -> None:
    schema = Order.model_json_schema()
    assert compare(schema, Order.model_json_schema(), Compatibility.FULL) == []


def test_pydantic_an_optional_field_on_an_open_model_breaks_backward() -> None:
    # The old model ignored unknown keys: old data may already carry "note" with any value.
    old, new = Order.model_json_schema(), OrderWithNote.model_json_schema()
    assert found(old, new) == [("/properties/note", "property_added_to_open_model")]
    assert found(new, old) == []


def test_pydantic_an_optional_field_on_a_closed_model_breaks_forward_only() -> None:
    old, new = ClosedOrder.model_json_schema(), ClosedOrderWithNote.model_json_schema()
    assert compare(old, new, Compatibility.BACKWARD) == []
    assert [(r.path, r.kind) for r in compare(old, new, Compatibility.FORWARD)] == [
        ("/properties/note", "property_removed_from_closed_model")
    ]


def test_pydantic_a_tighter_nested_field_is_found_in_its_definition() -> None:
    old, new = Order.model_json_schema(), BulkOrder.model_json_schema()
    assert found(old, new) == [("/$defs/BulkItem/properties/quantity/minimum", "minimum_increased")]
    assert found(new, old) == []


# --- modes --------------------------------------------------------------------------------------

SHORT = {**STR, "maxLength": 3}


def test_backward_is_accepts_everything_old_to_new() -> None:
    assert compare(STR, SHORT, Compatibility.BACKWARD) == accepts_everything(STR, SHORT)
    assert compare(SHORT, STR, Compatibility.BACKWARD) == []


def test_forward_is_accepts_everything_new_to_old_with_the_roles_named_right() -> None:
    assert compare(STR, SHORT, Compatibility.FORWARD) == []
    [reason] = compare(SHORT, STR, Compatibility.FORWARD)
    assert (reason.path, reason.kind) == ("/maxLength", "max_length_added")
    # The old schema is the one that now has to read data written with the new one.
    assert reason.message.startswith("The old schema adds maxLength 3, which new data")


def test_full_reports_both_directions_and_says_which() -> None:
    old = {**STR, "maxLength": 5, "pattern": "^a"}
    new = {**STR, "maxLength": 3}
    reasons = compare(old, new, Compatibility.FULL)
    assert [(r.path, r.kind) for r in reasons] == [
        ("/maxLength", "max_length_decreased"),
        ("/pattern", "pattern_added"),
    ]
    assert reasons[0].message.startswith("Backward (new schema reading old data): The new schema")
    assert reasons[1].message.startswith("Forward (old schema reading new data): The old schema")
    assert compare(STR, STR, Compatibility.FULL) == []


def test_none_reports_nothing() -> None:
    assert compare(STR, {"type": "integer"}, Compatibility.NONE) == []


def test_the_mode_is_matched_by_value() -> None:
    class Mode(StrEnum):  # like the catalog's own enum: other member names, the same values
        backward = "BACKWARD"
        none = "NONE"

    assert compare(STR, SHORT, Mode.backward) == accepts_everything(STR, SHORT)
    assert compare(STR, SHORT, Mode.none) == []
    assert compare(STR, SHORT, "FORWARD") == []
    with pytest.raises(ValueError, match="SIDEWAYS"):
        compare(STR, SHORT, "SIDEWAYS")


def test_reasons_are_frozen_values() -> None:
    reason = accepts_everything(STR, SHORT)[0]
    assert isinstance(reason, Incompatibility)
    with pytest.raises(AttributeError):
        reason.kind = "other"  # type: ignore[misc]


# --- oracle: real validation of generated instances ---------------------------------------------

VARIANTS: dict[str, Schema] = {
    "any": {},
    "string": STR,
    "string max 5": {**STR, "maxLength": 5},
    "string max 3": {**STR, "maxLength": 3},
    "string min 2": {**STR, "minLength": 2},
    "string ^a": {**STR, "pattern": "^a"},
    "enum a b": {"enum": ["a", "b"]},
    "enum a": {**STR, "enum": ["a"]},
    "const a": {"const": "a"},
    "string or null": {"type": ["string", "null"]},
    "anyOf string null": {"anyOf": [STR, {"type": "null"}]},
    "number": NUM,
    "integer": INT,
    "integer >= 0": {**INT, "minimum": 0},
    "number > 0": {**NUM, "exclusiveMinimum": 0},
    "number 0..10": {**NUM, "minimum": 0, "maximum": 10},
    "number < 10": {**NUM, "exclusiveMaximum": 10},
    "integer *4": {**INT, "multipleOf": 4},
    "integer *2": {**INT, "multipleOf": 2},
    "number *0.5": {**NUM, "multipleOf": 0.5},
    "oneOf integer string": {"oneOf": [INT, STR]},
    "oneOf number integer": {"oneOf": [NUM, INT]},
    "integer not 0": {**INT, "not": {"const": 0}},
    "object": OBJ,
    "object a string": {**OBJ, "properties": {"a": STR}},
    "object a required": {**OBJ, "properties": {"a": STR}, "required": ["a"]},
    "object a closed": {**OBJ, "properties": {"a": STR}, "additionalProperties": False},
    "object a b closed": {**OBJ, "properties": {"a": STR, "b": INT}, "additionalProperties": False},
    "object of integers": {**OBJ, "additionalProperties": INT},
    "object a >= 0 of integers": {
        **OBJ,
        "properties": {"a": {**INT, "minimum": 0}},
        "additionalProperties": INT,
    },
    "object max 2": {**OBJ, "maxProperties": 2},
    "object ^x integers": {**OBJ, "patternProperties": {"^x": INT}},
    "object short names": {**OBJ, "propertyNames": {"maxLength": 2}},
    "object if a then b": {**OBJ, "if": {"required": ["a"]}, "then": {"required": ["b"]}},
    "object allOf": {"allOf": [{**OBJ, "properties": {"a": STR}}, {"required": ["a"]}]},
    "array": ARR,
    "array of integers": {**ARR, "items": INT},
    "array of numbers": {**ARR, "items": NUM},
    "array of <= 2 integers": {**ARR, "items": INT, "maxItems": 2},
    "array min 1": {**ARR, "minItems": 1},
    "array unique": {**ARR, "uniqueItems": True},
    "array with an integer": {**ARR, "contains": INT},
    "ref object": {
        "$defs": {"A": {**OBJ, "properties": {"a": STR}, "required": ["a"]}},
        "$ref": "#/$defs/A",
    },
    "ref object loose": {
        "$defs": {"A": {**OBJ, "properties": {"a": {"type": ["string", "integer"]}}}},
        "$ref": "#/$defs/A",
    },
    "discriminated a b": {
        "oneOf": [
            {**OBJ, "properties": {"k": {"const": "a"}}, "required": ["k"]},
            {**OBJ, "properties": {"k": {"const": "b"}, "n": INT}, "required": ["k"]},
        ]
    },
    "discriminated a": {"oneOf": [{**OBJ, "properties": {"k": {"const": "a"}}, "required": ["k"]}]},
    "dependent a needs b": {**OBJ, "dependentRequired": {"a": ["b"]}},
    "oneOf integer ranges": {"oneOf": [{**INT, "minimum": 0}, {**INT, "maximum": 0}]},
    "anyOf integer ranges": {"anyOf": [{**INT, "minimum": 0}, {**INT, "maximum": 0}]},
    "integer > 0": {**INT, "exclusiveMinimum": 0},
    "number *0.25": {**NUM, "multipleOf": 0.25},
    "object only ^x strings": {
        **OBJ,
        "patternProperties": {"^x": STR},
        "additionalProperties": False,
    },
    "not a string": {"not": STR},
    "object a unevaluated closed": {
        **OBJ,
        "properties": {"a": STR},
        "unevaluatedProperties": False,
    },
    "array with 2 integers": {**ARR, "contains": INT, "minContains": 2},
    "tree of integers": tree("integer"),  # recursive: a target only, the generator cannot draw it
    "tree of numbers": tree("number"),
}
UNDRAWABLE = {"tree of integers", "tree of numbers"}
ACCEPTED_BY = {
    old: [
        new
        for new in VARIANTS
        if new != old and not accepts_everything(VARIANTS[old], VARIANTS[new])
    ]
    for old in VARIANTS
}


def test_the_oracle_has_many_compatible_pairs_to_check() -> None:
    assert sum(len(news) for old, news in ACCEPTED_BY.items() if old not in UNDRAWABLE) >= 100


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_is_compatible_with_itself(name: str) -> None:
    assert accepts_everything(VARIANTS[name], VARIANTS[name]) == []


@functools.cache
def instances(name: str) -> st.SearchStrategy[Any]:
    return from_schema(VARIANTS[name])


@functools.cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(VARIANTS[name])


@pytest.mark.parametrize(
    "old", [name for name in VARIANTS if name not in UNDRAWABLE and ACCEPTED_BY[name]]
)
@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_compatible_means_every_old_instance_is_valid_under_new(
    old: str, data: st.DataObject
) -> None:
    instance = data.draw(instances(old), label="instance")
    # The generator speaks draft 7; keep only what the old schema really accepts in 2020-12.
    assume(validator(old).is_valid(instance))
    refused = [new for new in ACCEPTED_BY[old] if not validator(new).is_valid(instance)]
    assert refused == [], f"{old!r} called compatible with {refused}, but they refuse {instance!r}"
