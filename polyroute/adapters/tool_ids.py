"""Tool-call ids written in the form each provider takes.

A client sends its history back with the ids the model that wrote it chose, and a route may send that history to
another provider. Some check an id's form and refuse the whole request over one id of another's:
- Claude takes ``^[a-zA-Z0-9_-]+$`` (a 400 "messages.1.content.0.tool_use.id: String should match pattern"),
  and Kimi's ids are ``functions.get_weather:0`` (https://github.com/maximhq/bifrost/issues/5097);
- Mistral takes exactly nine letters and digits ("Tool call id was call_0fypS1hVX but must be a-z, A-Z, 0-9, with
  a length of 9.", https://github.com/langchain-ai/langchain/pull/24668), and no other provider writes such ids.

An id out of form is written in the provider's form, the same way wherever it appears (a call, and the tool result
that answers it), so each pair still matches; an id already in form is sent as it is, so a provider's own ids come
back to it unchanged. The rewriting is a digest of the id, not a counter: two requests of one conversation, and the
attempts of one request, send the same ids.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

__all__ = ["IdForm", "for_claude", "for_mistral", "in_form"]

IdForm = Callable[[str], str]

_CLAUDE = re.compile(r"[A-Za-z0-9_-]+")
_CLAUDE_OUT = re.compile(r"[^A-Za-z0-9_-]")
_MISTRAL = re.compile(r"[A-Za-z0-9]{9}")
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _digest(text: str, chars: int) -> str:
    """``chars`` letters and digits that stand for ``text``."""
    n = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:12], "big")
    out = []
    for _ in range(chars):
        n, d = divmod(n, len(_ALPHABET))
        out.append(_ALPHABET[d])
    return "".join(out)


def for_claude(tool_id: str) -> str:
    """An id Claude takes: the id itself, or its characters Claude refuses as ``_`` and a digest of the whole (two ids
    that differ only in those characters stay two)."""
    if not tool_id or _CLAUDE.fullmatch(tool_id):
        return tool_id
    return f"{_CLAUDE_OUT.sub('_', tool_id)}_{_digest(tool_id, 8)}"


def for_mistral(tool_id: str) -> str:
    """An id Mistral takes: the id itself, or nine letters and digits that stand for it."""
    if not tool_id or _MISTRAL.fullmatch(tool_id):
        return tool_id
    return _digest(tool_id, 9)


def _call_in_form(call: Any, form: IdForm) -> Any:
    if isinstance(call, dict) and isinstance(cid := call.get("id"), str) and form(cid) != cid:
        return {**call, "id": form(cid)}
    return call


def in_form(messages: list[Any], form: IdForm) -> list[Any]:
    """OpenAI-shaped ``messages`` with every tool-call id in ``form``: a copy of each message whose ids change, the
    list itself when none does."""
    out = messages
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            continue
        changed = m
        calls = m.get("tool_calls")
        if m.get("role") == "assistant" and isinstance(calls, list):
            formed = [_call_in_form(c, form) for c in calls]
            if any(a is not b for a, b in zip(formed, calls, strict=True)):
                changed = {**m, "tool_calls": formed}
        cid = m.get("tool_call_id")
        if isinstance(cid, str) and form(cid) != cid:
            changed = {**changed, "tool_call_id": form(cid)}
        if changed is not m:
            if out is messages:
                out = list(messages)
            out[i] = changed
    return out
