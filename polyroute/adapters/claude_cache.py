"""Claude's prompt-cache breakpoints, as clients write them in OpenAI's format.

Claude caches a prompt's prefix up to a block marked ``cache_control: {"type": "ephemeral"}`` (``"ttl": "1h"``
for an hour); a cached read costs a tenth of the input price
(https://platform.claude.com/docs/en/build-with-claude/prompt-caching). OpenAI's format has no such field, so
gateways agree on a convention: ``cache_control`` on a content part, a system message's included, on a tool
definition, or on a whole message, which marks its last block (Portkey's
https://portkey.ai/docs/integrations/llms/anthropic/prompt-caching, LiteLLM's and OpenRouter's alike). Dropped, it
silently costs every request the full input price.
"""

from __future__ import annotations

from typing import Any

__all__ = ["marked", "marked_last", "system_blocks"]


def marked(block: dict[str, Any], source: object) -> dict[str, Any]:
    """``block`` with the ``cache_control`` its source (a part, a tool, a message) carries, if any."""
    mark = source.get("cache_control") if isinstance(source, dict) else None
    if isinstance(mark, dict):
        block["cache_control"] = mark
    return block


def marked_last(blocks: list[dict[str, Any]], extra: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A message's blocks, its last one marked when the message itself carries ``cache_control``."""
    if blocks and extra and isinstance(extra.get("cache_control"), dict):
        blocks[-1] = {**blocks[-1], "cache_control": extra["cache_control"]}
    return blocks


def system_blocks(turns: list[tuple[Any, dict[str, Any] | None]]) -> list[dict[str, Any]] | None:
    """The system and developer turns as text blocks, when any of them marks a breakpoint; else None (the joined
    text is sent, as before). ``turns``: each turn's content (a string or parts) and its extra fields."""
    def is_marked(content: object, extra: dict[str, Any] | None) -> bool:
        parts = content if isinstance(content, list) else ()
        return bool(extra and "cache_control" in extra) or any(isinstance(p, dict) and "cache_control" in p
                                                                  for p in parts)

    if not any(is_marked(c, e) for c, e in turns):
        return None
    out: list[dict[str, Any]] = []
    for content, extra in turns:
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        blocks = [marked({"type": "text", "text": p["text"]}, p) for p in parts
                  if isinstance(p, dict) and p.get("type") == "text" and p.get("text")]
        out += marked_last(blocks, extra)
    return out
