"""A model's reasoning in the Responses API: a chat answer's reasoning as a ``reasoning`` item, and such an item,
sent back in ``input``, as the reasoning of the assistant turn it belongs to.

Raw reasoning text is the item's ``content``, as ``reasoning_text`` parts; ``summary`` holds a summary a model
wrote of its reasoning, which chat answers do not carry, so it stays empty (OpenAI's "How to handle the raw chain
of thought in gpt-oss", https://cookbook.openai.com/articles/gpt-oss/handle-raw-cot, and the SDK's
``ResponseReasoningItem``).

Signed reasoning (Claude's thinking blocks as ``reasoning_details`` entries; polyroute.adapters.claude_thinking)
must come back unchanged in a tool loop. A client that keeps no state on the server asks for it with
``include: ["reasoning.encrypted_content"]``; the item then carries the entries in ``encrypted_content``: ``pr1.``
and the base64url of their compact JSON. It is encoded, not encrypted: Claude's signatures are what protect the
blocks. Coming back, it is read strictly: anything but a list of well-formed ``reasoning_details`` entries is a
400 naming the field, so the field can carry nothing else into a request.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from polyroute.errors import InvalidRequest

__all__ = ["INCLUDE_SEALED", "join_recalled", "reasoning_item", "reasoning_text", "recalled", "seal", "sealable"]

INCLUDE_SEALED = "reasoning.encrypted_content"
_PREFIX = "pr1."
# OpenRouter's entry kinds and the fields each may have besides the naming ones
# (https://openrouter.ai/docs/guides/best-practices/reasoning-tokens).
_KINDS: dict[str, frozenset[str]] = {
    "reasoning.text": frozenset({"text", "signature"}),
    "reasoning.encrypted": frozenset({"data"}),
    "reasoning.summary": frozenset({"summary"}),
}
_NAMING = frozenset({"type", "format", "id"})
# Whole numbers an entry may carry: its place in the list, and where in the turn's text Claude wrote the block
# (``content_offset``; polyroute.adapters.claude_thinking).
_NUMBERS = frozenset({"index", "content_offset"})


def reasoning_text(message: dict[str, Any]) -> str:
    """The reasoning text of a chat message or delta, under either name upstreams give it."""
    for key in ("reasoning_content", "reasoning"):
        if isinstance(value := message.get(key), str) and value:
            return value
    return ""


def sealable(details: Any) -> list[dict[str, Any]]:
    """The ``reasoning_details`` entries of an answer that can go into ``encrypted_content``: those of a known
    kind, with only the fields that kind has."""
    out = []
    for entry in details if isinstance(details, list) else ():
        if isinstance(entry, dict) and (fields := _KINDS.get(entry.get("type"))) is not None:  # type: ignore[arg-type]
            out.append({k: v for k, v in entry.items() if k in fields or k in _NAMING or k in _NUMBERS})
    return out


def seal(entries: list[dict[str, Any]]) -> str:
    return _PREFIX + base64.urlsafe_b64encode(orjson.dumps(entries)).decode().rstrip("=")


def reasoning_item(item_id: str, text: str, entries: list[dict[str, Any]] | None, status: str) -> dict[str, Any]:
    """A ``reasoning`` item; ``entries`` (sealed into ``encrypted_content``) only when the request asked for them."""
    item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": [],
                            "content": [{"type": "reasoning_text", "text": text}] if text else [], "status": status}
    if entries:
        item["encrypted_content"] = seal(entries)
    return item


def recalled(item: dict[str, Any], i: int) -> dict[str, Any]:
    """The assistant-turn fields a ``reasoning`` input item stands for: its text as ``reasoning_content``, the
    entries of its ``encrypted_content`` as ``reasoning_details``."""
    out: dict[str, Any] = {}
    content = item.get("content")
    if content is not None and not isinstance(content, list):
        raise InvalidRequest(f"Invalid value for 'input[{i}].content': expected a list of reasoning_text parts.",
                             param=f"input[{i}].content")
    text = "".join(p["text"] for p in content or () if isinstance(p, dict) and p.get("type") == "reasoning_text"
                   and isinstance(p.get("text"), str))
    if text:
        out["reasoning_content"] = text
    sealed = item.get("encrypted_content")
    if sealed is not None:
        out["reasoning_details"] = _unsealed(sealed, f"input[{i}].encrypted_content")
    return out


def join_recalled(message: dict[str, Any], fields: dict[str, Any]) -> None:
    """Put a reasoning item's fields on the assistant message of its turn; a turn's second item adds to them."""
    if text := fields.get("reasoning_content"):
        message["reasoning_content"] = message.get("reasoning_content", "") + text
    if details := fields.get("reasoning_details"):
        message["reasoning_details"] = [*message.get("reasoning_details", ()), *details]


def _unsealed(sealed: Any, where: str) -> list[dict[str, Any]]:
    problem = InvalidRequest(f"Invalid value for '{where}': it is not reasoning this gateway returned; send "
                             "reasoning items back as they came.", param=where)
    if not isinstance(sealed, str) or not sealed.startswith(_PREFIX):
        raise problem
    body = sealed[len(_PREFIX):]
    try:
        entries = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError):  # orjson.JSONDecodeError is a ValueError
        raise problem from None
    if not isinstance(entries, list) or not all(_well_formed(e) for e in entries):
        raise problem
    return entries


def _well_formed(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    fields = _KINDS.get(entry.get("type"))  # type: ignore[arg-type]
    if fields is None:
        return False
    for key, value in entry.items():
        if key in _NUMBERS:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return False
        elif (key not in fields and key not in _NAMING) or not isinstance(value, str | None):
            return False
    return True
