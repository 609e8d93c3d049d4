"""The ``system`` and ``messages`` of an Anthropic Messages request as chat messages.

A system turn (Anthropic's mid-conversation system message) stays where it is, as chat's
system messages do; the Claude adapter keeps it there for the models that take it. A user
turn's ``tool_result`` blocks become ``tool`` messages, in order, ahead of a user
message with the turn's other blocks (Anthropic wants the results first in the turn, and
chat wants them right after the assistant message that called). An image inside a tool
result moves to that user message: chat's tool messages carry text only. An assistant
turn's text blocks join into its content, its ``tool_use`` blocks become ``tool_calls``
with their ``input`` as JSON arguments.

Signed thinking (``thinking`` with a ``signature``, ``redacted_thinking``) becomes the turn's
``reasoning_details``, the field the chat path gives back to Claude upstreams and takes off
for the others (polyroute.adapters.claude_thinking, polyroute.adapters.own_fields), each
entry with its offset in the turn's text so Claude gets the turn back in the order it wrote
it. A thinking block's text also becomes ``reasoning_content`` when the turn called tools,
where DeepSeek's and Kimi's thinking modes want it, as for the Responses API.

``cache_control`` stays where chat's convention puts it: on a content part, on a tool
message, or on an assistant message (marking its last block). Block types the gateway
cannot carry (server tools' blocks, search results, files named by id) are a 400 naming
the block.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from polyroute.adapters.claude_thinking import detail_of
from polyroute.errors import InvalidRequest

__all__ = ["chat_messages", "system_messages"]

_ROLES = ("user", "assistant", "system")
# Claude Code opens its system prompt with a block of its own for Anthropic's accounting, not for the model; its
# version suffix differs from one session to the next, so left first in the prompt it would spoil every upstream's
# prompt cache of the long system prompt after it.
_BILLING_HEADER = "x-anthropic-billing-header:"
_PDF = "application/pdf"
_PLAIN = "text/plain"


def system_messages(system: Any, where: str = "system") -> list[dict[str, Any]]:
    """The top-level ``system``, or a system turn's content (``where``), as one system message, or none: a string
    or text blocks."""
    if system is None or system == "" or system == []:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    if not isinstance(system, list):
        raise InvalidRequest(f"Invalid value for '{where}': expected a string or a list of text blocks.",
                             param=where)
    parts = []
    for j, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise InvalidRequest(f"Invalid value for '{where}[{j}]': expected a text block "
                                 "({'type': 'text', 'text': ...}).", param=f"{where}[{j}]")
        if block["text"].startswith(_BILLING_HEADER):
            continue
        parts.append(_marked({"type": "text", "text": block["text"]}, block))
    return [{"role": "system", "content": _plain_or_parts(parts)}] if parts else []


def chat_messages(given: Any) -> list[dict[str, Any]]:
    """The chat messages for a Messages request's ``messages``."""
    if given is None:
        raise InvalidRequest("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(given, list) or not given:
        raise InvalidRequest("Invalid value for 'messages': expected a non-empty list of turns.", param="messages")
    out: list[dict[str, Any]] = []
    for i, turn in enumerate(given):
        where = f"messages[{i}]"
        if not isinstance(turn, dict):
            raise InvalidRequest(f"Invalid value for '{where}': expected an object.", param=where)
        role = turn.get("role")
        if role not in _ROLES:
            raise InvalidRequest(f"Invalid value for '{where}.role': must be 'user', 'assistant' or 'system'.",
                                 param=f"{where}.role")
        content = turn.get("content")
        if role == "system":  # a system message where it sits in the conversation, as chat has them
            out.extend(system_messages(content, f"{where}.content"))
            continue
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        if not isinstance(content, list) or not content:
            raise InvalidRequest(f"Invalid value for '{where}.content': expected a string or a non-empty list of "
                                 "content blocks.", param=f"{where}.content")
        blocks = [_block(b, f"{where}.content[{j}]") for j, b in enumerate(content)]
        out.extend(_user(blocks, where) if role == "user" else [_assistant(blocks, where)])
    return out


def _block(block: Any, where: str) -> dict[str, Any]:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise InvalidRequest(f"Invalid value for '{where}': expected a content block with a 'type'.", param=where)
    return {**block, "_where": where}


def _user(blocks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []  # parts of tool results that a tool message cannot carry
    parts: list[dict[str, Any]] = []
    for block in blocks:
        kind = block["type"]
        if kind == "tool_result":
            message, extra = _tool_result(block)
            results.append(message)
            moved.extend(extra)
        elif kind in ("thinking", "redacted_thinking", "tool_use"):
            raise InvalidRequest(f"Invalid value for '{block['_where']}': a {kind} block belongs in an assistant "
                                 "turn.", param=f"{block['_where']}.type")
        else:
            parts.append(_part(block))
    parts = moved + parts
    return results + ([{"role": "user", "content": _plain_or_parts(parts)}] if parts else [])


def _assistant(blocks: list[dict[str, Any]], where: str) -> dict[str, Any]:
    text = ""
    thought = ""
    details: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    mark: Any = None
    for block in blocks:
        kind, at = block["type"], block["_where"]
        mark = block.get("cache_control", mark)
        if kind == "text":
            text += _string(block, "text", at, empty=True)
        elif kind == "thinking":
            said = _string(block, "thinking", at, empty=True)
            thought += said
            signature = block.get("signature")
            if not isinstance(signature, str | None):
                raise InvalidRequest(f"Invalid value for '{at}.signature': expected a string.", param=f"{at}.signature")
            if signature:  # unsigned thinking (another model's) cannot go back to Claude
                details.append(_detail({"type": "thinking", "thinking": said, "signature": signature}, details, text))
        elif kind == "redacted_thinking":
            data = _string(block, "data", at)
            details.append(_detail({"type": "redacted_thinking", "data": data}, details, text))
        elif kind == "tool_use":
            calls.append(_call(block, at))
        else:
            raise InvalidRequest(f"Invalid value for '{at}': an assistant turn takes text, thinking, "
                                 f"redacted_thinking and tool_use blocks, not {kind!r}.", param=f"{at}.type")
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
        if thought:
            message["reasoning_content"] = thought
    if details:
        message["reasoning_details"] = details
    if isinstance(mark, dict):
        message["cache_control"] = mark
    return message


def _detail(block: dict[str, Any], details: list[dict[str, Any]], text: str) -> dict[str, Any]:
    detail = detail_of(block, len(details), len(text))
    assert detail is not None  # a thinking or redacted_thinking block always has one
    return detail


def _call(block: dict[str, Any], at: str) -> dict[str, Any]:
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"Invalid value for '{at}.input': expected an object.", param=f"{at}.input")
    return {"id": _string(block, "id", at), "type": "function",
            "function": {"name": _string(block, "name", at), "arguments": orjson.dumps(arguments).decode()}}


def _tool_result(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A ``tool_result`` block as a tool message, and the parts of it (images, documents) the user message takes."""
    at = block["_where"]
    content = block.get("content")
    texts: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append({"type": "text", "text": content})
    elif isinstance(content, list):
        for j, inner in enumerate(content):
            part = _part(_block(inner, f"{at}.content[{j}]"))
            (texts if part["type"] == "text" else moved).append(part)
    elif content is not None:
        raise InvalidRequest(f"Invalid value for '{at}.content': expected a string or a list of blocks.",
                             param=f"{at}.content")
    if block.get("is_error") is True:  # chat has no flag for a failed tool: the model reads it in the text
        texts[:1] = [{**texts[0], "text": "Error: " + texts[0]["text"]}] if texts else [{"type": "text",
                                                                                       "text": "Error"}]
    message: dict[str, Any] = {"role": "tool", "tool_call_id": _string(block, "tool_use_id", at),
                               "content": _plain_or_parts(texts) if texts else ""}
    return _marked(message, block), moved


def _part(block: dict[str, Any]) -> dict[str, Any]:
    """A user turn's text, image or document block as a chat content part."""
    kind, at = block["type"], block["_where"]
    if kind == "text":
        return _marked({"type": "text", "text": _string(block, "text", at, empty=True)}, block)
    if kind == "image":
        return _marked({"type": "image_url", "image_url": {"url": _image_url(block.get("source"), at)}}, block)
    if kind == "document":
        return _marked({"type": "file", "file": _document(block, at)}, block)
    raise InvalidRequest(f"Invalid value for '{at}': content blocks of type {kind!r} are not supported; this gateway "
                         "takes text, image, document, tool_use, tool_result, thinking and redacted_thinking blocks.",
                         param=f"{at}.type")


def _image_url(source: Any, at: str) -> str:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict):
        media, data = source.get("media_type"), source.get("data")
        if isinstance(media, str) and media and isinstance(data, str) and data:
            return f"data:{media};base64,{data}"
    elif kind == "url" and isinstance(source, dict) and isinstance(source.get("url"), str) and source["url"]:
        return str(source["url"])
    raise InvalidRequest(f"Invalid value for '{at}.source': an image is taken as base64 data (with its media_type) "
                         "or a url; this gateway keeps no files.", param=f"{at}.source")


def _document(block: dict[str, Any], at: str) -> dict[str, Any]:
    """A document block as chat's file part: a PDF as base64, plain text as text (what the chat path's upstreams
    take as ``file_data``)."""
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    name = block.get("title") if isinstance(block.get("title"), str) else None
    if isinstance(source, dict) and kind == "base64" and source.get("media_type") == _PDF \
            and isinstance(source.get("data"), str) and source["data"]:
        return {"file_data": f"data:{_PDF};base64,{source['data']}", "filename": name or "document.pdf"}
    if isinstance(source, dict) and kind == "text" and isinstance(source.get("data"), str):
        data = base64.b64encode(source["data"].encode("utf-8")).decode()
        return {"file_data": f"data:{_PLAIN};base64,{data}", "filename": name or "document.txt"}
    raise InvalidRequest(f"Invalid value for '{at}.source': a document is taken as a base64 PDF or as plain text; "
                         "documents by url, by file id or as content blocks are not supported.",
                         param=f"{at}.source")


def _string(block: dict[str, Any], key: str, at: str, *, empty: bool = False) -> str:
    value = block.get(key)
    if isinstance(value, str) and (value or empty):
        return value
    raise InvalidRequest(f"Missing required parameter: '{at}.{key}'." if value is None or value == ""
                         else f"Invalid value for '{at}.{key}': expected a string.", param=f"{at}.{key}")


def _marked(target: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    if isinstance(mark := source.get("cache_control"), dict):
        target["cache_control"] = mark
    return target


def _plain_or_parts(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """One unmarked text part as a plain string (what every upstream takes), else the parts."""
    if len(parts) == 1 and parts[0]["type"] == "text" and "cache_control" not in parts[0]:
        return str(parts[0]["text"])
    return parts
