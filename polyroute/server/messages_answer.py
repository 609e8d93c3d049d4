"""A chat answer as an Anthropic ``message`` object, and errors in Anthropic's shape.

The message's id is ``msg_`` and the gateway's request id, the id the usage ledger
keeps. Its content holds, in the order the model wrote them, its thinking, its text and
its ``tool_use`` blocks (their ``input`` parsed from the call's JSON arguments). Claude's
signed thinking comes back as it came (``reasoning_details``, placed by its offset in
the text; polyroute.adapters.claude_thinking); another model's reasoning text is a
thinking block with an empty signature, which the gateway reads back as that model's
reasoning and never sends to Claude.

How it ended is chat's finish_reason as Anthropic's stop_reason, with one thing chat's word
cannot say: OpenAI's wire reports "stop" for a natural end and for a stop sequence alike,
and the text it returns leaves the sequence out, so the text cannot tell them apart
either. ``stop_sequence`` (with the sequence) is said only when the upstream names the
sequence it stopped on and it is one of the request's: Claude's own (kept on the choice by
the Anthropic adapter), vLLM's ``stop_reason``. Any other "stop" is ``end_turn``: a guess
would have a client act on a sequence that may never have been met.

Usage is Anthropic's split: ``input_tokens`` counts what was neither read from nor
written to the prompt cache, beside ``cache_read_input_tokens`` and
``cache_creation_input_tokens``; the gateway's ``cost_usd`` rides along as in chat.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from polyroute.adapters.claude_thinking import History, in_order
from polyroute.errors import UpstreamBadResponse
from polyroute.server.responses_reasoning import reasoning_text
from polyroute.types import ChatRequest, ChatResponse

__all__ = ["STOP_REASONS", "error_doc", "error_type", "from_chat", "message_id", "message_usage", "stop_reason",
           "tool_input"]

# A chat finish_reason as Anthropic's stop_reason.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}
# Anthropic's error type for each status (https://docs.claude.com/en/api/errors); other 4xx are
# invalid_request_error, other 5xx api_error.
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                500: "api_error", 503: "overloaded_error", 529: "overloaded_error"}


def message_id(request_id: str) -> str:
    return f"msg_{request_id}"


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")


def error_doc(status: int, message: str, request_id: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "error", "error": {"type": error_type(status), "message": message}}
    if request_id:
        doc["request_id"] = request_id
    return doc


def stop_reason(finish: str | None, matched: object, req: ChatRequest) -> tuple[str, str | None]:
    """The stop_reason and stop_sequence for how the chat answer ended; ``matched``: the stop sequence the upstream
    says it met (the choice's ``stop_reason``), if it says one."""
    if finish == "stop" and isinstance(matched, str) and matched in req.stop_list():
        return "stop_sequence", matched
    return (STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"), None


def tool_input(arguments: str, backend: str = "", model: str = "") -> dict[str, Any]:
    """A call's JSON arguments as the ``input`` object Anthropic's clients read."""
    if not arguments.strip():
        return {}
    try:
        doc = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        raise UpstreamBadResponse("a tool call's arguments are not a JSON object", backend=backend, model=model)
    return doc


def from_chat(resp: ChatResponse, req: ChatRequest, request_id: str) -> dict[str, Any]:
    """The whole answer's ``message`` object."""
    choice = resp["choices"][0] if resp["choices"] else None
    message = cast(dict[str, Any], choice["message"] if choice else {})
    content = message.get("content") or ""
    blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": call.get("id") or f"toolu_{request_id}_{len(blocks)}",
                       "name": fn.get("name") or "", "input": tool_input(fn.get("arguments") or "",
                                                                          model=resp.get("model") or "")})
    placed = History().blocks(message)
    if placed:
        blocks = in_order(placed, content, blocks)
    elif thought := reasoning_text(message):
        blocks.insert(0, {"type": "thinking", "thinking": thought, "signature": ""})
    reason, sequence = stop_reason(choice["finish_reason"] if choice else None,
                                   cast(dict[str, Any], choice).get("stop_reason") if choice else None, req)
    doc: dict[str, Any] = {
        "id": message_id(request_id), "type": "message", "role": "assistant", "model": resp.get("model") or req.model,
        "content": blocks, "stop_reason": reason, "stop_sequence": sequence,
        "usage": message_usage(cast(dict[str, Any], resp.get("usage") or {})),
    }
    if reason == "refusal":
        doc["stop_details"] = refusal_details(message.get("refusal"))
    return doc


def refusal_details(text: object) -> dict[str, Any]:
    return {"type": "refusal", "category": None, "explanation": text if isinstance(text, str) and text else None}


def message_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Chat usage (its details and the gateway's ``cost_usd`` included) under Anthropic's names."""
    details = usage.get("prompt_tokens_details") or {}
    cached = _count(details.get("cached_tokens"))
    written = _count(details.get("cache_write_tokens"))
    out: dict[str, Any] = {
        "input_tokens": max(_count(usage.get("prompt_tokens")) - cached - written, 0),
        "output_tokens": _count(usage.get("completion_tokens")),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": written,
    }
    for key in ("cost_usd", "estimated"):
        if key in usage:
            out[key] = usage[key]
    return out


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
