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

__all__ = ["MAX_ADDED", "about_items", "as_item", "checked_items"]

# OpenAI's limit of items added by one call.
MAX_ADDED = 20


async def checked_items(given: Any, required: bool, body: bytes, bounds: Bounds, responses: ResponseKeeper,
                        conversations: ConversationKeeper, key: str | None) -> list[dict[str, Any]]:
    """The items a body adds (references read as ``key`` sees the stores), in their stored shape."""
    if given is None and not required:
        return []
    if given is None:
        raise InvalidRequest("Missing required parameter: 'items'.", param="items")
    if not isinstance(given, list):
        raise InvalidRequest("Invalid value for 'items': expected a list of items.", param="items")
    if not given and required:  # adding nothing is a client's mistake; a conversation may begin empty
        raise InvalidRequest("Invalid 'items': empty array. Expected an array with minimum length 1, but got an "
                             "empty array instead.", param="items", code="empty_array")
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
    """An input or output item as a conversation holds it (its id, if any, is kept), with the fields OpenAI's
    items always have and the SDKs' types require: a message's ``status`` and parts as a list (an ``output_text``
    with its ``annotations``, an ``input_image`` with its ``detail``), a call's ``status``, a reasoning item's
    ``summary``."""
    kind = item.get("type") or ("message" if "role" in item else None)
    out = {**item, "type": kind}
    if kind == "message":
        content = item.get("content")
        if isinstance(content, str):
            content = [{"type": "output_text" if item.get("role") == "assistant" else "input_text", "text": content}]
        out["content"] = [_whole_part(part) for part in content] if isinstance(content, list) else content
        out.setdefault("status", "completed")
    elif kind in ("function_call", "function_call_output"):
        out.setdefault("status", "completed")
    elif kind == "reasoning":
        out.setdefault("summary", [])
    return out


def _whole_part(part: Any) -> Any:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "output_text" and part.get("annotations") is None:
        return {**part, "annotations": []}
    if kind == "input_image" and part.get("detail") is None:
        return {**part, "detail": "auto"}
    return part
