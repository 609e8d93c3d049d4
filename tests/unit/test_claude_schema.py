"""A client's JSON schema narrowed to what Claude's structured outputs compile (polyroute.adapters.claude_schema)."""

from __future__ import annotations

import json

from polyroute.adapters.claude_schema import STRUCTURED, narrowed, output_format


def test_objects_are_closed_and_constraints_become_hints() -> None:
    schema = {
        "type": "object", "title": "Order",
        "properties": {
            "qty": {"type": "integer", "minimum": 1, "maximum": 9, "description": "How many"},
            "code": {"type": "string", "pattern": "^[A-Z]{3}$", "format": "regex"},
            "site": {"type": "string", "format": "uri"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "minItems": 2},
            "kind": {"oneOf": [{"const": "a"}, {"type": "object", "properties": {"x": {"type": "number"}}}]},
            "ref": {"$ref": "#/$defs/Item", "description": "the item"},
        },
        "required": ["qty"],
        "$defs": {"Item": {"type": "object", "properties": {"id": {"type": "string"}}, "additionalProperties": True}},
    }
    out = narrowed(schema)
    props = out["properties"]
    assert out["additionalProperties"] is False and out["title"] == "Order" and out["required"] == ["qty"]
    assert props["qty"] == {"type": "integer", "description": 'How many\n\n{"minimum":1,"maximum":9}'}
    assert props["code"] == {"type": "string", "description": '{"pattern":"^[A-Z]{3}$","format":"regex"}'}
    assert props["site"] == {"type": "string", "format": "uri"}
    assert props["tags"]["description"] == '{"minItems":2}' and "minItems" not in props["tags"]
    assert props["tags"]["items"] == {"type": "string", "description": '{"maxLength":8}'}
    assert props["kind"]["anyOf"][0] == {"const": "a"}
    assert props["kind"]["anyOf"][1]["additionalProperties"] is False
    assert props["ref"] == {"$ref": "#/$defs/Item", "description": "the item"}
    assert out["$defs"]["Item"]["additionalProperties"] is False
    assert json.loads(json.dumps(out)) == out  # plain JSON all the way down
    assert schema["properties"]["qty"]["minimum"] == 1  # the client's own is left as it was


def test_only_a_json_schema_has_an_output_format() -> None:
    fmt = output_format({"type": "json_schema", "json_schema": {"name": "a", "strict": True,
                                                                 "schema": {"type": "object", "properties": {}}}})
    assert fmt == {"type": "json_schema", "schema": {"type": "object", "properties": {},
                                                     "additionalProperties": False}}
    assert output_format({"type": "json_object"}) is None and output_format({"type": "text"}) is None
    assert output_format({"type": "json_schema", "json_schema": {"name": "a"}}) is None


def test_which_models_take_structured_outputs() -> None:
    takes = ["claude-sonnet-4-5-20250929", "claude-opus-4-5", "claude-haiku-4-5", "claude-opus-4-8",
             "claude-sonnet-5", "claude-opus-5-5", "claude-mythos-5-1"]
    lacks = ["claude-sonnet-4-20250514", "claude-opus-4-1", "claude-3-7-sonnet-latest", "claude-fable-5-1"]
    assert all(STRUCTURED.search(m) for m in takes)
    assert not any(STRUCTURED.search(m) for m in lacks)
