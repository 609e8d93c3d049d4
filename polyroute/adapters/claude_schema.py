"""OpenAI's ``response_format`` as Claude's structured outputs (``output_config.format``).

Claude answers in a JSON schema's shape when asked with ``output_config: {"format": {"type": "json_schema",
"schema": ...}}``, generally available from the 4.5 models on
(https://platform.claude.com/docs/en/build-with-claude/structured-outputs). Its constrained decoding takes a
subset of JSON Schema: every object closed (``additionalProperties: false``), no numeric, length or pattern
constraints, ``minItems`` of 0 or 1 only, string formats from a short list; ``oneOf`` is read as ``anyOf``. A
client's schema is narrowed to that subset the way Anthropic's own SDKs narrow one: what cannot be enforced is
written into the node's ``description``, so the model still reads it. The answer then satisfies the narrowed
schema; a client that relies on a dropped constraint validates it, as it would with Anthropic's SDK.

OpenAI's ``json_object`` (any JSON, no schema) has no counterpart: no schema in the subset admits an arbitrary
object, so such a request goes to another candidate.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = ["STRUCTURED", "output_format"]

# The models that take output_config.format: Claude 4.5 (Opus, Sonnet, Haiku) and later, Mythos. A model it lists
# that refuses anyway, or one left out, is passed over for this request (``polyroute.refusals.ANSWER_SHAPING``).
STRUCTURED = re.compile(
    r"claude-(?:(?:opus|sonnet|haiku)-(?:4-(?:[5-9]|1\d)|[5-9](?:-\d+)?)|mythos-\d)(?!\d)")

# String formats the structured-outputs page lists; any other is refused by the API, so it becomes a hint.
_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"})
# Keywords carried as they are, once their subschemas are narrowed.
_KEPT = frozenset({"title", "description", "default", "type", "required"})


def output_format(response_format: dict[str, Any]) -> dict[str, Any] | None:
    """``output_config.format`` for OpenAI's ``{"type": "json_schema", "json_schema": {"schema": ...}}``; None for
    any other ``response_format`` (``text`` asks for nothing; ``json_object`` the caller refuses)."""
    spec = response_format.get("json_schema") if response_format.get("type") == "json_schema" else None
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        return None
    return {"type": "json_schema", "schema": narrowed(schema)}


def narrowed(node: dict[str, Any]) -> dict[str, Any]:
    """One schema node and everything under it, within Claude's subset."""
    out: dict[str, Any] = {}
    hints: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if isinstance(defs := node.get(key), dict):
            out[key] = {name: narrowed(d) if isinstance(d, dict) else d for name, d in defs.items()}
    if isinstance(ref := node.get("$ref"), str):
        out["$ref"] = ref
        if isinstance(node.get("description"), str):
            out["description"] = node["description"]
        return out
    for key, value in node.items():
        if key in ("$defs", "definitions"):
            continue
        if key in ("anyOf", "oneOf", "allOf") and isinstance(value, list):
            out["allOf" if key == "allOf" else "anyOf"] = [narrowed(v) if isinstance(v, dict) else v for v in value]
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: narrowed(v) if isinstance(v, dict) else v for name, v in value.items()}
        elif key == "items" and isinstance(value, dict):
            out[key] = narrowed(value)
        elif key in ("enum", "const"):
            if _primitive(value):
                out[key] = value
            else:
                hints[key] = value
        elif key == "format":
            (out if value in _FORMATS else hints)[key] = value
        elif key == "minItems":
            (out if value in (0, 1) else hints)[key] = value
        elif key in _KEPT:
            out[key] = value
        elif key != "additionalProperties":
            hints[key] = value
    if out.get("type") == "object" or "properties" in out:
        out["additionalProperties"] = False
    if hints:
        said = orjson.dumps(hints).decode()
        out["description"] = f"{out['description']}\n\n{said}" if isinstance(out.get("description"), str) else said
    return out


def _primitive(value: object) -> bool:
    items = value if isinstance(value, list) else [value]
    return all(v is None or isinstance(v, (str, int, float, bool)) for v in items)
