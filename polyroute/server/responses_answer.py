"""A chat answer as a Responses API ``response`` object, and the pieces a stream of one is made of.

The object echoes the request's settings as OpenAI's does (its SDK requires ``tools``,
``tool_choice`` and ``parallel_tool_calls``), read back from the chat request the
Responses request became. Its id is ``resp_`` and the gateway's request id, the id
the usage ledger keeps. Its output holds, in this order, the answer's reasoning
(``responses_reasoning``), its message and its function calls.
"""

from __future__ import annotations

import time
from typing import Any, cast

from polyroute.server.responses_reasoning import reasoning_item, reasoning_text, sealable
from polyroute.types import ChatRequest, ChatResponse

# A chat finish_reason that cut the answer short: the reason a Responses API object gives.
_CUT = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_id(request_id: str) -> str:
    return f"resp_{request_id}"


def ending(finish_reason: object) -> tuple[str, dict[str, str] | None]:
    """The response's status and ``incomplete_details`` for how the chat answer ended (a finish_reason that is not
    a word, which the chat path passes on as an upstream sent it, says nothing known: completed)."""
    reason = _CUT.get(finish_reason) if isinstance(finish_reason, str) else None
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def envelope(rid: str, req: ChatRequest, model: str, created_at: int, status: str) -> dict[str, Any]:
    """A response without output or usage yet: what a stream opens with."""
    extras = req.extras()
    fmt = req.response_format or {"type": "text"}
    if fmt.get("type") == "json_schema":
        fmt = {"type": "json_schema", **fmt.get("json_schema", {})}
    return {
        "id": rid, "object": "response", "created_at": created_at, "status": status, "error": None,
        "incomplete_details": None, "instructions": None, "model": model, "output": [],
        "max_output_tokens": req.max_completion_tokens,
        "parallel_tool_calls": extras.get("parallel_tool_calls") is not False,
        "temperature": req.temperature, "top_p": req.top_p, "tools": [_tool(t) for t in req.tools or []],
        "tool_choice": _tool_choice(req.tool_choice), "text": {"format": fmt}, "metadata": extras.get("metadata") or {},
        "store": False, "usage": None, "user": req.user,
    }


def from_chat(resp: ChatResponse, req: ChatRequest, request_id: str, *, sealed: bool = False) -> dict[str, Any]:
    """The whole answer's ``response`` object; ``sealed``: its reasoning item carries ``encrypted_content``."""
    choice = resp["choices"][0] if resp["choices"] else None
    message = choice["message"] if choice else {}
    status, incomplete = ending(choice["finish_reason"] if choice else None)
    item_status = "incomplete" if incomplete else "completed"
    output: list[dict[str, Any]] = []
    thought = reasoning_text(cast(dict[str, Any], message))
    entries = sealable(message.get("reasoning_details")) if sealed else []
    if thought or entries:
        output.append(reasoning_item(f"rs_{request_id}_0", thought, entries, item_status))
    if message.get("content") or not message.get("tool_calls"):  # an empty answer is an empty message
        output.append(message_item(f"msg_{request_id}_{len(output)}", message.get("content") or "", item_status,
                                   logprobs_of(choice)))
        if refusal := message.get("refusal"):  # why the model declined: the Responses API's refusal part
            output[-1]["content"].append(refusal_part(refusal))
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        n = len(output)
        output.append(call_item(f"fc_{request_id}_{n}", call.get("id") or f"call_{request_id}_{n}",
                                fn.get("name") or "", fn.get("arguments") or "", item_status))
    created = resp.get("created") or int(time.time())
    doc = envelope(response_id(request_id), req, resp.get("model") or req.model, created, status)
    doc["incomplete_details"] = incomplete
    doc["output"] = output
    if (usage := resp.get("usage")) is not None:
        doc["usage"] = responses_usage(dict(usage))
    return doc


def message_item(item_id: str, text: str, status: str, logprobs: list[Any] | None = None) -> dict[str, Any]:
    content = [text_part(text, logprobs)] if status != "in_progress" else []
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def text_part(text: str, logprobs: list[Any] | None = None) -> dict[str, Any]:
    """An answer's ``output_text`` part; it carries ``logprobs`` when the upstream gave them."""
    part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
    if logprobs is not None:
        part["logprobs"] = logprobs
    return part


def logprobs_of(choice: Any) -> list[Any] | None:
    """A chat choice's (or a chunk's choice's) token logprobs, which the Responses API's ``output_text`` parts
    carry in the same shape (``token``, ``logprob``, ``bytes``, ``top_logprobs``); None when it has none."""
    logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    return content if isinstance(content, list) else None


def refusal_part(text: str) -> dict[str, Any]:
    return {"type": "refusal", "refusal": text}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def responses_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Chat usage (its details and the gateway's ``cost_usd`` included) under the Responses API's names."""
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    out = {
        "input_tokens": usage.get("prompt_tokens", 0),
        "input_tokens_details": {"cached_tokens": prompt.get("cached_tokens", 0),
                                 "cache_write_tokens": prompt.get("cache_write_tokens", 0)},
        "output_tokens": usage.get("completion_tokens", 0),
        "output_tokens_details": {"reasoning_tokens": completion.get("reasoning_tokens", 0)},
        "total_tokens": usage.get("total_tokens", 0),
    }
    for key in ("cost_usd", "estimated"):
        if key in usage:
            out[key] = usage[key]
    return out


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function") or {}
    return {"type": "function", "name": fn.get("name"), "description": fn.get("description"),
            "parameters": fn.get("parameters"), "strict": fn.get("strict")}


def _tool_choice(choice: str | dict[str, Any] | None) -> Any:
    if isinstance(choice, dict):
        return {"type": "function", "name": (choice.get("function") or {}).get("name")}
    return choice or "auto"
