"""Items a client adds to a conversation (``POST /v1/conversations``, ``POST .../items``), checked and stored in
the shape OpenAI's Conversations API lists them.

An item is accepted when ``POST /v1/responses`` could take it as input: the same
translation checks it (``responses_request``), and its error names ``items[i]``. An
``item_reference`` is replaced by the stored item it names (a stored response's output
item, or an item of one of the key's conversations), as in a response's input. A
message is kept with its content as a list of parts (a string becomes one
``input_text``, or ``output_text`` for the assistant) and a ``status``, as OpenAI's
conversation items have; other items are kept as given, with their ``type``.
"""

from __future__ import annotations

from typing import Any

from polyroute.errors import InvalidRequest
from polyroute.server.bounds import Bounds
from polyroute.server.responses_references import names_stored, resolve
from polyroute.server.responses_request import to_chat
from polyroute.tenancy.conversations import ConversationKeeper
from polyroute.tenancy.responses import ResponseKeeper

__all__ = ["MAX_ADDED", "about_items", "as_item", "checked_items", "checked_metadata"]

# OpenAI's limits: items added by one call, and metadata's pairs and lengths.
MAX_ADDED = 20
MAX_PAIRS = 16
MAX_KEY = 64
MAX_VALUE = 512


def checked_metadata(value: Any) -> dict[str, str]:
    """``metadata`` as OpenAI takes it: at most 16 pairs of strings, keys up to 64 characters, values up to 512."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("Invalid value for 'metadata': expected an object of string keys and values.",
                             param="metadata")
    if len(value) > MAX_PAIRS:
        raise InvalidRequest(f"Invalid 'metadata': too many keys; the limit is {MAX_PAIRS}.", param="metadata",
                             code="object_above_max_properties")
    for k, v in value.items():
        if len(k) > MAX_KEY:
            raise InvalidRequest(f"Invalid 'metadata': a key is longer than {MAX_KEY} characters.",
                                 param="metadata", code="string_above_max_length")
        if not isinstance(v, str):
            raise InvalidRequest(f"Invalid value for 'metadata.{k}': expected a string.", param=f"metadata.{k}")
        if len(v) > MAX_VALUE:
            raise InvalidRequest(f"Invalid 'metadata.{k}': longer than {MAX_VALUE} characters.",
                                 param=f"metadata.{k}", code="string_above_max_length")
    return dict(value)


async def checked_items(given: Any, required: bool, body: bytes, bounds: Bounds, responses: ResponseKeeper,
                        conversations: ConversationKeeper, key: str | None) -> list[dict[str, Any]]:
    """The items a body adds (references read as ``key`` sees the stores), in their stored shape."""
    if given is None and not required:
        return []
    if not isinstance(given, list):
        raise InvalidRequest("Invalid value for 'items': expected a list of items.", param="items")
    if len(given) > MAX_ADDED:
        raise InvalidRequest(f"Invalid 'items': too many items; you may add up to {MAX_ADDED} at a time.",
                             param="items", code="array_above_max_length")
    if names_stored({"input": given}):
        try:
            resolved = await resolve({"input": given}, responses, conversations, key)
        except InvalidRequest as exc:
            raise about_items(exc) from None
        given = resolved.given
    try:
        chat = to_chat({"input": given})
    except InvalidRequest as exc:
        raise about_items(exc) from None
    try:
        bounds.check(chat, body)
    except InvalidRequest as exc:
        raise about_items(exc) from None
    return [as_item(item) for item in given]


def about_items(exc: InvalidRequest) -> InvalidRequest:
    """An error about a request's ``input`` as one about the ``items`` a client sent."""
    for old, new in (("'input", "'items"), ("input[", "items[")):
        exc.message = exc.message.replace(old, new)
    exc.message = exc.message.replace("messages", "items")
    if exc.param is not None:
        exc.param = exc.param.replace("input", "items", 1).replace("messages", "items", 1)
    exc.args = (exc.message,)
    return exc


def as_item(item: dict[str, Any]) -> dict[str, Any]:
    """An input or output item as a conversation holds it (its id, if any, is kept)."""
    kind = item.get("type") or ("message" if "role" in item else None)
    out = {**item, "type": kind}
    if kind == "message":
        content = item.get("content")
        if isinstance(content, str):
            part = "output_text" if item.get("role") == "assistant" else "input_text"
            out["content"] = [{"type": part, "text": content, **({"annotations": []} if part == "output_text" else {})}]
        out.setdefault("status", "completed")
    elif kind in ("function_call", "function_call_output"):
        out.setdefault("status", "completed")
    return out
