"""Claude's rules for a conversation sent back to it: where a system message may sit, how returned thinking is
bound to what came before it, and what a classifier refusal tells the client.

Anthropic's Messages API takes a system message in ``messages`` on some models, binds each thinking block to its
prefix on others, and declines some requests with ``stop_reason: "refusal"``; the Anthropic adapter reads these
rules from here.
"""

from __future__ import annotations

import re
from typing import Any

from polyroute.adapters.claude_cache import system_blocks
from polyroute.types import Message

__all__ = ["BINDING_BETA", "BINDING_REFUSED", "PREFIX_CHECKED", "SYSTEM_IN_PLACE", "SYSTEM_REFUSED", "placeable",
           "refusal_text", "system_turn", "with_binding"]

# How a client asks Claude to drop thinking blocks whose conversation changed, rather than refuse the request
# (thinking.block_binding): sent only with this beta header
# (https://platform.claude.com/docs/en/build-with-claude/preserved-thinking/fix-bound-to-a-different-conversation).
BINDING_BETA = "thinking-binding-controls-2026-08-01"
# The models that check a returned thinking block's prefix (the supported models of
# https://platform.claude.com/docs/en/build-with-claude/preserved-thinking/prefix-checks).
PREFIX_CHECKED = re.compile(r"claude-(?:(?:opus|sonnet|haiku)-5-[5-9]|(?:fable|mythos)-5-[1-9])(?!\d)")
# What they are asked whenever a request sends thinking blocks back: drop a block whose prefix no longer matches
# rather than refuse the request. A client of OpenAI's format cannot see that binding: a tool list that changed
# between turns, a trimmed history or a system message the gateway had to move fails the check, and Anthropic's
# fix for that 400 is this setting (.../preserved-thinking/fix-bound-to-a-different-conversation). Blocks that
# still match are kept; a client that sets block_binding itself keeps its choice.
_DROP_STALE = {"prefix_mismatch_behavior": "drop_block"}
# The models that take a system message where it sits in the conversation (``role: "system"`` in ``messages``, no
# beta header), so that it changes neither the cached prefix nor what earlier thinking was written after: the
# supported models of https://platform.claude.com/docs/en/build-with-claude/mid-conversation-system-messages (not
# Sonnet 5, whose page says so; Sonnet and Haiku 5.5 are not listed there, so they keep the top-level system).
SYSTEM_IN_PLACE = re.compile(r"claude-(?:opus-4-8|opus-5(?:-[5-9])?|(?:fable|mythos)-5(?:-[1-9])?)(?![\d.])")
# What an endpoint says when it will not take a system message where it sits: Anthropic's validator before the
# feature and Claude on Vertex AI ('messages: Unexpected role "system". The Messages API accepts a top-level
# `system` parameter', quoted in https://github.com/Maol-1997/cursor-claude-connector/issues/3), a model without
# it ("role 'system' is not supported on this model"), a placement the API reads otherwise than ``placeable``
# ("messages.67: role 'system' must precede an 'assistant' message or end the array",
# https://github.com/anthropics/claude-code/issues/73821), and a strict relay's schema ("messages.1.role: Input
# should be 'user' or 'assistant'"). The same model is then asked again with every system message at the top
# (``polyroute.refusals.SYSTEM_PLACEMENT``), and later requests go to it that way for an hour.
# What an endpoint without the binding's beta says of it: Vertex AI's answer to a beta it lacks ("Unexpected
# value(s) `web-search-2025-03-05` for the `anthropic-beta` header", https://github.com/anthropics/claude-code/
# issues/12429), naming this one, or a strict schema on the field. The same model is then asked again without the
# binding (``polyroute.refusals.BLOCK_BINDING``): a changed prefix may then fail as it did before the fix.
BINDING_REFUSED = re.compile(
    rf"Unexpected value\(s\)[^\n]{{0,400}}?{re.escape(BINDING_BETA)}|\bblock_binding\b.{{0,80}}?(?:Extra inputs are "
    r"not permitted|not (?:supported|permitted|allowed)|unknown|unrecognized|unexpected)", re.I | re.S)
SYSTEM_REFUSED = re.compile(
    r"""Unexpected role \\?"system\\?"|role '?system'? (?:is not supported|must\b)|messages\.\d+\.role\b.{0,40}"""
    r"""\binput should be 'user' or 'assistant'""", re.I | re.S)


def placeable(turns: list[dict[str, Any]], messages: list[Message], i: int) -> bool:
    """Whether the system message ``messages[i]`` may stay where it is: right after a user turn (tool results
    included) or another such system message, and before an assistant turn or at the end, as Anthropic's placement
    rule for a mid-conversation system message says (it is never the first message either)."""
    if not turns or turns[-1]["role"] not in ("user", "system"):
        return False
    after = next((m.role for m in messages[i + 1:] if m.role not in ("system", "developer")), None)
    return after in (None, "assistant")


def system_turn(m: Message) -> list[dict[str, Any]]:
    """A system message's text as blocks, its cache breakpoints kept."""
    blocks = system_blocks([(m.content, m.model_extra)])
    return blocks if blocks is not None else [{"type": "text", "text": m.text()}]


def refusal_text(details: object) -> str:
    """What a classifier refusal tells the client, as OpenAI's ``message.refusal``: Claude's explanation and the
    policy category of its ``stop_details``. Claude's safety classifiers decline some requests with a 200 and
    ``stop_reason: "refusal"``; one declined before any output is not billed, one cut during the answer is billed
    for its input and what was sent (https://platform.claude.com/docs/en/build-with-claude/refusals-and-fallback)."""
    said = details if isinstance(details, dict) else {}
    explanation, category = said.get("explanation"), said.get("category")
    text = explanation.strip() if isinstance(explanation, str) and explanation.strip() else (
        "Claude's safety classifiers declined this request")
    return f"{text} (category: {category})" if isinstance(category, str) and category else text


def with_binding(thinking: object) -> object:
    """A request's ``thinking`` asking Claude to drop returned blocks whose prefix changed, unless the client chose a
    binding itself or turned thinking off. Without ``thinking`` the request asks for ``adaptive``,
    these models' default, which changes nothing else (.../preserved-thinking/fix-bound-to-a-different-conversation)."""
    if thinking is None:
        return {"type": "adaptive", "block_binding": dict(_DROP_STALE)}
    if not isinstance(thinking, dict) or "block_binding" in thinking or thinking.get("type") == "disabled":
        return thinking
    return {**thinking, "block_binding": dict(_DROP_STALE)}
