"""Prompt-cache breakpoints (``cache_control``): where a request carries them, and the request without them.

Clients written for Claude, and Anthropic's Messages API served by this gateway, mark where a prompt's cacheable
prefix ends with ``cache_control`` on a message, a content part or a tool. Claude bills by them. OpenAI-compatible
servers that cache do it on their own, and those that check a request's fields strictly refuse the mark: Azure
OpenAI's "Unrecognized request argument supplied: cache_control"
(https://github.com/gethnet/litellm-connector-copilot/pull/138), a relay's "`cache_control.ttl: 1h` is not
supported" (https://github.com/BerriAI/litellm/pull/38790). A mark only saves money, the answer is the same
without it, so such a refusal is one a model may answer without (``polyroute.refusals``): the same model is asked
again with every mark taken off, and later requests go to it without them for an hour.
"""

from __future__ import annotations

from typing import Any

from polyroute.types import ChatRequest

__all__ = ["MARK", "blocks_without_marks", "marks", "without_marks"]

MARK = "cache_control"


def marks(req: ChatRequest) -> list[dict[str, Any]]:
    """Every breakpoint ``req`` carries: on a message, a content part or a tool."""
    found = [(m.model_extra or {}).get(MARK) for m in req.messages]
    found += [p.get(MARK) for m in req.messages if isinstance(m.content, list) for p in m.content]
    found += [t.get(MARK) for t in req.tools or ()]
    return [m for m in found if isinstance(m, dict)]


def _unmarked(item: Any) -> Any:
    return {k: v for k, v in item.items() if k != MARK} if isinstance(item, dict) and MARK in item else item


def _message_unmarked(message: Any) -> Any:
    message = _unmarked(message)
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list) and any(isinstance(p, dict) and MARK in p for p in content):
        message = {**message, "content": [_unmarked(p) for p in content]}
    return message


def without_marks(body: dict[str, Any]) -> dict[str, Any]:
    """An upstream request body (OpenAI's shape) with no breakpoint left: its messages, their parts and its tools
    are copied where they held one; what held none is shared."""
    out = dict(body)
    if isinstance(messages := body.get("messages"), list):
        out["messages"] = [_message_unmarked(m) for m in messages]
    if isinstance(tools := body.get("tools"), list):
        out["tools"] = [_unmarked(t) for t in tools]
    return out


def _blocks_unmarked(blocks: Any) -> Any:
    """Anthropic's content blocks without marks, a tool result's own blocks included."""
    if not isinstance(blocks, list):
        return blocks
    out = []
    for block in blocks:
        block = _unmarked(block)
        if isinstance(block, dict) and isinstance(block.get("content"), list):
            block = {**block, "content": _blocks_unmarked(block["content"])}
        out.append(block)
    return out


def blocks_without_marks(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages API body (Claude's shape) with no breakpoint left: on its system blocks, its messages' blocks and
    its tools. A tool's ``input_schema`` and a call's ``input`` are the client's data and are left alone."""
    out = dict(body)
    out.pop(MARK, None)
    if isinstance(system := body.get("system"), list):
        out["system"] = _blocks_unmarked(system)
    if isinstance(messages := body.get("messages"), list):
        out["messages"] = [{**m, "content": _blocks_unmarked(m["content"])} if isinstance(m, dict) and "content" in m
                           else m for m in messages]
    if isinstance(tools := body.get("tools"), list):
        out["tools"] = [_unmarked(t) for t in tools]
    return out
