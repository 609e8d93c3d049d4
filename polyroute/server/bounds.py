"""Bounds on the work one chat request may cost, checked at the edge before any routing.

A request is parsed and validated on the event loop, so its cost is every other
client's wait: 100,000 messages took hundreds of milliseconds to parse and validate,
and a field nested 255 levels deep or more passed validation (fields such as
``response_format``, ``tools``, ``metadata`` and content parts are free-form) only
to fail in ``orjson.dumps`` on the way to a backend. Each bound here is refused
with a 400 that names the limit and the field:

- ``max_messages``: counted in the raw bytes (one ``"role"`` key per message) before
  the body is parsed, then exactly once parsed. OpenAI refuses more than 2048.
- ``max_content_parts``: content parts over all messages, before validation (counted
  only when the body has more objects than the limit).
- ``max_json_depth``: nesting anywhere in the body. Checked by a walk only when the
  body has enough brackets to be that deep, not counting messages and content parts
  beyond one of each (no path holds two siblings): a long conversation costs two
  ``bytes.count``. A body nested past what the parser accepts is located by a
  bounded scan of its bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from polyroute.errors import InvalidRequest

# Strings (escapes included) and the JSON punctuation a path needs.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]')
_SCAN_TOKENS = 200_000  # past this, a body too deep to parse is refused without naming the field
_PARAM_LEVELS = 4  # a param names the path this far down: "messages[3].content[0]", "tools[0].function.parameters"


@dataclass(frozen=True)
class Bounds:
    max_messages: int = 2048
    max_content_parts: int = 4096
    max_json_depth: int = 64

    def before_parsing(self, body: bytes) -> None:
        """What the raw bytes already tell: a message count far over the limit."""
        # Each "role" takes 6 bytes: a shorter body cannot hold too many, and is not searched.
        if len(body) > 6 * self.max_messages and body.count(b'"role"') > self.max_messages:
            raise _too_many("messages", self.max_messages, "messages")

    def too_deep_to_parse(self, body: bytes, pos: int) -> InvalidRequest | None:
        """The error for a body the parser refused at ``pos``, when it is nesting past the limit."""
        if body.count(b"[", 0, pos + 1) + body.count(b"{", 0, pos + 1) <= self.max_json_depth:
            return None
        path = _deep_path_in_bytes(body[: pos + 1], self.max_json_depth)
        if path is None:
            return None
        return _too_deep(path, self.max_json_depth)

    def check(self, raw: dict[str, Any], body: bytes) -> None:
        """Bounds on a parsed body, before it is validated.

        Two ``bytes.count`` decide whether anything needs a closer look: a content part is
        an object, so a body with fewer objects than the parts limit cannot pass it; and a
        body cannot nest deeper than it has containers (brackets inside strings counted
        too, which only makes the bound looser), less the sibling messages and parts, as
        no path goes through two of them. (A message or part that is not an object is
        subtracted too; validation refuses such a body anyway.)"""
        objects = body.count(b"{")
        containers = objects + body.count(b"[")
        messages = raw.get("messages")
        if type(messages) is list:
            if len(messages) > self.max_messages:
                raise _too_many("messages", self.max_messages, "messages")
            containers -= max(0, len(messages) - 1)
            if objects > self.max_content_parts:
                containers -= max(0, self._count_parts(messages) - 1)
        if containers > self.max_json_depth:
            path = _deep_path(raw, self.max_json_depth)
            if path is not None:
                raise _too_deep(path, self.max_json_depth)

    def check_input_parts(self, given: object, body: bytes) -> None:
        """Content parts over all the items of a Responses ``input``, refused past the limit before any item is
        translated (translating 100,000 parts took the event loop half a second); counted, as ``check`` counts a
        chat request's, only when the body has more objects than the limit."""
        if type(given) is list and body.count(b"{") > self.max_content_parts:
            self._count_parts(given, "input")

    def _count_parts(self, messages: list[Any], where: str = "messages") -> int:
        parts = 0
        for i, message in enumerate(messages):
            content = message.get("content") if type(message) is dict else None
            if type(content) is list:
                parts += len(content)
                if parts > self.max_content_parts:
                    raise _too_many("content parts", self.max_content_parts, f"{where}[{i}].content")
        return parts


def too_many_items(given: object, limit: int) -> InvalidRequest | None:
    """The error for a Responses ``input`` with more items than a chat request may have messages, found before any
    of them is looked up in the store (an ``item_reference`` each costs a read)."""
    if isinstance(given, list) and len(given) > limit:
        return too_many_input_items(limit)
    return None


def too_many_input_items(limit: int) -> InvalidRequest:
    """The error for a Responses ``input`` of more than ``limit`` items (``before_parsing`` counts them as messages)."""
    return _too_many("input items", limit, "input")


def _too_many(what: str, limit: int, param: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid '{param}': too many {what}; the limit is {limit} per request.",
                          param=param, code="array_above_max_length")


def _too_deep(path: list[str | int], limit: int) -> InvalidRequest:
    param = _param(path[:_PARAM_LEVELS]) or None
    where = f"'{param}'" if param else "the request body"
    return InvalidRequest(f"Invalid {where}: JSON nested more than {limit} levels deep.",
                          param=param, code="nesting_too_deep")


def _param(path: list[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _deep_path(doc: Any, limit: int) -> list[str | int] | None:
    """The path to a container nested deeper than ``limit`` (the body itself is level 1), or None.

    The common case, nothing too deep, costs one call per container; the path is only
    built for a document that is refused. Recursion is bounded by ``limit``."""
    if not _deeper(doc, limit - 1):
        return None
    path: list[str | int] = []
    node = doc
    budget = limit - 1
    while budget >= 0:
        items = node.items() if type(node) is dict else enumerate(node)
        for key, value in items:
            if (type(value) is dict or type(value) is list) and _deeper(value, budget - 1):
                path.append(key)
                node = value
                break
        budget -= 1
    return path


def _deeper(node: Any, budget: int) -> bool:
    """Whether ``node`` (a dict or list) holds containers more than ``budget`` levels below it."""
    for value in node.values() if type(node) is dict else node:
        if (type(value) is dict or type(value) is list) and (budget <= 0 or _deeper(value, budget - 1)):
            return True
    return False


def _deep_path_in_bytes(prefix: bytes, limit: int) -> list[str | int] | None:
    """The path to where ``prefix`` (JSON cut short) nests past ``limit``; None when it does not,
    or an empty path when finding it would take more than ``_SCAN_TOKENS`` tokens."""
    kinds: list[bytes] = []  # b"{" or b"[" for each open level
    at: list[str | int | None] = []  # the key or index being read in each open level
    expect_key = False
    for n, match in enumerate(_TOKEN.finditer(prefix)):
        if n > _SCAN_TOKENS:
            return []
        token = match.group()
        if token == b"{" or token == b"[":
            if len(kinds) >= limit:
                return [p for p in at if p is not None]
            kinds.append(token)
            at.append(None if token == b"{" else 0)
            expect_key = token == b"{"
        elif token == b"}" or token == b"]":
            if kinds:
                kinds.pop()
                at.pop()
            expect_key = False
        elif token == b",":
            if kinds and kinds[-1] == b"[":
                index = at[-1]
                at[-1] = index + 1 if isinstance(index, int) else 0
            expect_key = bool(kinds) and kinds[-1] == b"{"
        elif expect_key:
            at[-1] = token[1:-1].decode("utf-8", "replace")
            expect_key = False
    return None
