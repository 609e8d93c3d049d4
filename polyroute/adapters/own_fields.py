"""Fields one provider puts in an assistant message for itself: taken off on the way to the others, and put
in where a provider requires its own field of every turn, whoever wrote it.

A client sends an assistant message back as it got it, and a route may send that history to another provider.
Claude's signed thinking (``reasoning_details``, LiteLLM's ``thinking_blocks``; polyroute.adapters.claude_thinking)
and Gemini's thought signatures on tool calls (``extra_content``; polyroute.adapters.gemini_signatures) mean nothing
elsewhere, and servers that check a message's fields refuse them: Mistral answers 422 ``extra_forbidden``, Groq and
Cerebras "property ... is unsupported" (https://github.com/BerriAI/litellm/issues/30835,
https://github.com/janhq/jan/issues/8136). OpenRouter takes ``reasoning_details`` back, and Google its own
``extra_content``.

DeepSeek's and Kimi's thinking modes require ``reasoning_content`` on every assistant turn that called tools, a
400 otherwise ("Missing reasoning_content field in the assistant message",
https://api-docs.deepseek.com/guides/thinking_mode#tool-calls; Kimi: "thinking is enabled but reasoning_content is
missing in assistant tool call message", https://github.com/anomalyco/opencode/issues/25758). A turn another model
wrote before a failover has none: it is sent an empty one, which they take for a turn without thinking
(https://github.com/sluisr/deepseek-cli/releases/tag/1.1.1).
"""

from __future__ import annotations

from typing import Any

from polyroute.adapters.claude_thinking import DETAIL_FIELDS

__all__ = ["for_upstream", "with_reasoning"]


def _call_without(call: Any) -> Any:
    if isinstance(call, dict) and "extra_content" in call:
        return {k: v for k, v in call.items() if k != "extra_content"}
    return call


def _signed_calls(m: dict[str, Any]) -> bool:
    calls = m.get("tool_calls")
    return isinstance(calls, list) and any(isinstance(c, dict) and "extra_content" in c for c in calls)


def for_upstream(messages: list[Any], keep_thinking: bool, keep_signatures: bool) -> list[Any]:
    """``messages`` without the fields this upstream does not take: a copy of each message that had them, the
    list itself when none had."""
    if keep_thinking and keep_signatures:
        return messages
    out = messages
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") != "assistant":
            continue
        thinking = not keep_thinking and ("reasoning_details" in m or "thinking_blocks" in m)
        signed = not keep_signatures and _signed_calls(m)
        if not (thinking or signed):
            continue
        if out is messages:
            out = list(messages)
        kept = {k: v for k, v in m.items() if not (thinking and k in DETAIL_FIELDS)}
        if signed:
            kept["tool_calls"] = [_call_without(c) for c in m["tool_calls"]]
        out[i] = kept
    return out


def with_reasoning(messages: list[Any]) -> list[Any]:
    """``messages`` with an empty ``reasoning_content`` on each assistant turn that called tools without one (a copy
    of each such message; the list itself when there is none)."""
    out = messages
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "reasoning_content" in m or m.get("role") != "assistant":
            continue
        if m.get("tool_calls"):
            if out is messages:
                out = list(messages)
            out[i] = {**m, "reasoning_content": ""}
    return out
