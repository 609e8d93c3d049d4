"""What a request needs from a model: capabilities, and room for its tokens.

Token counts are estimates, made without a tokenizer so that a decision stays in
microseconds: ASCII text at about 4 characters a token, other text at about 3
UTF-8 bytes a token (a CJK character is 3 bytes and about one token), plus a
few tokens of framing per message, the tool definitions' JSON at 4 characters a
token, and a flat allowance per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import orjson

from polyroute.types import ChatRequest, Message

# Output assumed when a request sets no max_tokens, for cost and latency estimates.
DEFAULT_OUTPUT_TOKENS = 256
# Role, separators and the like around each message.
MESSAGE_OVERHEAD_TOKENS = 4
# A mid-size image as most vision models bill it (OpenAI: 765 for 1024x1024 "high").
IMAGE_TOKENS = 765


@dataclass(frozen=True, slots=True)
class Needs:
    """The facts about one request that decide which models can serve it."""

    capabilities: frozenset[str]
    prompt_tokens: int
    # The client's max_tokens (or max_completion_tokens), if it set one.
    max_tokens: int | None
    # tool_choice demands a call ("required", or a named function): an answer without one is wrong.
    forces_tool_call: bool = False

    @property
    def output_tokens(self) -> int:
        """Output tokens to expect for cost and latency: max_tokens, else a default."""
        return self.max_tokens or DEFAULT_OUTPUT_TOKENS

    @property
    def context_tokens(self) -> int:
        """Room the request needs in a context window: the prompt and the output it allows."""
        return self.prompt_tokens + (self.max_tokens or 1)


def estimate_text_tokens(text: str) -> int:
    if not text:
        return 0
    if text.isascii():
        return math.ceil(len(text) / 4)
    return math.ceil(len(text.encode("utf-8")) / 3)


def _message_tokens(message: Message) -> tuple[int, bool]:
    tokens = MESSAGE_OVERHEAD_TOKENS + estimate_text_tokens(message.text())
    image = message.has_image()
    if image and isinstance(message.content, list):
        tokens += IMAGE_TOKENS * sum(
            1 for p in message.content if p.get("type") in ("image_url", "input_image", "image")
        )
    if message.tool_calls:
        tokens += math.ceil(len(orjson.dumps(message.tool_calls)) / 4)
    return tokens, image


def needs_of(req: ChatRequest) -> Needs:
    caps: set[str] = set()
    prompt = 0
    for message in req.messages:
        tokens, image = _message_tokens(message)
        prompt += tokens
        if image:
            caps.add("vision")
    if req.tools:
        caps.add("tools")
        prompt += math.ceil(len(orjson.dumps(req.tools)) / 4)
    if req.wants_json():
        caps.add("json_mode")
    forced = bool(req.tools) and (req.tool_choice == "required" or isinstance(req.tool_choice, dict))
    return Needs(capabilities=frozenset(caps), prompt_tokens=prompt, max_tokens=req.output_limit(),
                 forces_tool_call=forced)
