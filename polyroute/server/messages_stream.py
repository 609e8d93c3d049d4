"""A streamed chat answer as Anthropic's Messages stream events, in Anthropic's order.

    message_start
    per content block (thinking, redacted_thinking, text, tool_use, in the order the model wrote them):
      content_block_start, content_block_delta... (thinking_delta and signature_delta, text_delta,
      input_json_delta), content_block_stop
    message_delta (stop_reason, stop_sequence, usage), message_stop
    or, when the stream fails after it began: error

Each event is named on its ``event:`` line as Anthropic names it. A block ends when a
block of another kind, or another thinking entry or tool call, begins. ``message_start``
leaves before the usage is known: its ``input_tokens`` is the gateway's estimate, and
``message_delta`` carries the counts (cumulative, as Anthropic's are). Claude's signed
thinking arrives as ``reasoning_details`` pieces sharing an index
(polyroute.adapters.claude_thinking): the first piece of an index opens its block, its
signature becomes a ``signature_delta``; another model's reasoning text is a thinking
block without a signature.

An upstream may interleave the pieces of parallel tool calls (index 0, 1, 0 ...); a piece
for a call whose block has ended is still sent with that block's index, which Anthropic's
SDKs join by index.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from polyroute.server.messages_answer import message_usage, refusal_details, stop_reason
from polyroute.server.responses_reasoning import reasoning_text
from polyroute.types import ChatChunk, ChatRequest

__all__ = ["MessageEvents", "event"]

_CLAUDE_FORMAT = "anthropic-claude"


def event(payload: dict[str, Any]) -> bytes:
    """One event, named on its ``event:`` line by its ``type``, as Anthropic's are."""
    kind: str = payload["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class MessageEvents:
    """The events of one streamed message, made as its chunks come; its owner feeds it in order."""

    def __init__(self, message_id: str, req: ChatRequest, model: str, input_estimate: int) -> None:
        self.req = req
        self.message: dict[str, Any] = {
            "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": input_estimate, "output_tokens": 0}}
        self.blocks = 0  # content blocks started so far: the next one's index
        self.open: int | None = None  # the index of the open block
        self.kind: str | None = None  # its type
        self.entry: object = None  # the reasoning_details index of an open thinking block
        self.calls: dict[int, int] = {}  # a chat tool call's index: its block's index
        self.finish: str | None = None
        self.matched: object = None  # the stop sequence an upstream says it met
        self.refusal: list[str] = []

    def opening(self) -> bytes:
        return event({"type": "message_start", "message": self.message})

    def chunk(self, chunk: ChatChunk) -> bytes:
        out = b""
        for choice in chunk["choices"][:1]:
            delta = cast(dict[str, Any], choice["delta"])
            out += self._thinking(reasoning_text(delta), delta.get("reasoning_details"))
            if text := delta.get("content"):
                out += self._text(text)
            if refusal := delta.get("refusal"):
                self.refusal.append(refusal)
            for call in delta.get("tool_calls") or []:
                out += self._call(call)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
                self.matched = cast(dict[str, Any], choice).get("stop_reason")
        return out

    def closing(self, usage: dict[str, Any]) -> bytes:
        """The last events: the open block's end, then how the message ended, with its usage."""
        reason, sequence = stop_reason(self.finish, self.matched, self.req)
        delta: dict[str, Any] = {"stop_reason": reason, "stop_sequence": sequence}
        if reason == "refusal":
            delta["stop_details"] = refusal_details("".join(self.refusal))
        return (self._close() + event({"type": "message_delta", "delta": delta, "usage": message_usage(usage)})
                + event({"type": "message_stop"}))

    @staticmethod
    def failed(error: dict[str, Any]) -> bytes:
        """A stream that broke after it began (``error``: Anthropic's error document): never an end that reads
        like a success."""
        return event(error)

    def _thinking(self, text: str, details: object) -> bytes:
        out = b""
        signatures: list[str] = []
        for piece in details if isinstance(details, list) else ():
            if not isinstance(piece, dict) or not _claude(piece):
                continue  # another model's sealed reasoning: nothing an Anthropic client can send back
            if piece.get("type") == "reasoning.encrypted":
                if isinstance(data := piece.get("data"), str) and data:
                    out += self._start({"type": "redacted_thinking", "data": data}) + self._close()
                continue
            entry = piece.get("index", 0)
            if self.kind != "thinking" or self.entry != entry:
                out += self._start({"type": "thinking", "thinking": "", "signature": ""}, entry)
            if not text and isinstance(said := piece.get("text"), str) and said:
                out += self._delta({"type": "thinking_delta", "thinking": said})
            if isinstance(signature := piece.get("signature"), str) and signature:
                signatures.append(signature)
        if text:
            if self.kind != "thinking":
                out += self._start({"type": "thinking", "thinking": "", "signature": ""})
            out += self._delta({"type": "thinking_delta", "thinking": text})
        for signature in signatures:
            out += self._delta({"type": "signature_delta", "signature": signature})
        return out

    def _text(self, text: str) -> bytes:
        out = b"" if self.kind == "text" else self._start({"type": "text", "text": ""})
        return out + self._delta({"type": "text_delta", "text": text})

    def _call(self, call: dict[str, Any]) -> bytes:
        out = b""
        index = call.get("index", 0)
        fn = call.get("function") or {}
        if index not in self.calls:
            call_id = call.get("id") or f"toolu_{self.message['id']}_{self.blocks}"
            out += self._start({"type": "tool_use", "id": call_id, "name": fn.get("name") or "", "input": {}})
            self.calls[index] = cast(int, self.open)
        if arguments := fn.get("arguments"):
            out += event({"type": "content_block_delta", "index": self.calls[index],
                          "delta": {"type": "input_json_delta", "partial_json": arguments}})
        return out

    def _start(self, block: dict[str, Any], entry: object = None) -> bytes:
        out = self._close()
        self.open, self.kind, self.entry = self.blocks, block["type"], entry
        self.blocks += 1
        return out + event({"type": "content_block_start", "index": self.open, "content_block": block})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event({"type": "content_block_delta", "index": self.open, "delta": delta})

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        out = event({"type": "content_block_stop", "index": self.open})
        self.open = self.kind = self.entry = None
        return out


def _claude(piece: dict[str, Any]) -> bool:
    fmt = piece.get("format")
    return fmt is None or (isinstance(fmt, str) and fmt.startswith(_CLAUDE_FORMAT))
