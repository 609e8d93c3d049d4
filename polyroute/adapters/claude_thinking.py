"""Claude's signed thinking blocks, carried through OpenAI's chat format and back.

Claude returns its thinking as ``thinking`` blocks (text and a ``signature``) and ``redacted_thinking`` blocks
(encrypted ``data``). Within a tool-use turn they must come back in the next request complete and unmodified,
signature included, or the request is a 400 ("Expected `thinking` or `redacted_thinking`, but found `tool_use`";
https://platform.claude.com/docs/en/build-with-claude/thinking#preserving-thinking-blocks). Blocks may be left
out from the start, from the end or all together, never with a gap between kept ones
(https://platform.claude.com/docs/en/build-with-claude/preserved-thinking), and a block with empty text (the
newer models' default ``display: "omitted"``) must come back as it came.

OpenAI's format has no place for them, so they travel as OpenRouter does it
(https://openrouter.ai/docs/guides/best-practices/reasoning-tokens): ``reasoning_details`` on the assistant
message, one entry per block in order, ``{"type": "reasoning.text", "text", "signature"}`` or
``{"type": "reasoning.encrypted", "data"}``, each with ``format`` and ``index``. A client sends the message back
as it got it. In a stream each block's entry comes in pieces that share its ``index``: the first carries
``type`` and ``format``, the text follows piece by piece, the signature once, as OpenAI's SDK joins deltas (text
concatenated, list entries merged by ``index``). LiteLLM's ``thinking_blocks`` (the blocks in Claude's own
shape) are read too.

A block that Claude wrote after some of the answer's text (thinking between text blocks) carries
``content_offset``: how many characters of the message's ``content`` came before it. The turn is rebuilt with the
block at that place, since a thinking block moved within its turn fails Claude's prefix check as surely as one left
out (https://platform.claude.com/docs/en/build-with-claude/preserved-thinking/prefix-checks). Blocks without it
open the turn, where Claude writes them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DETAIL_FIELDS", "FORMAT", "History", "ThinkingStream", "detail_of", "in_order"]

FORMAT = "anthropic-claude-v1"
# The message fields that carry thinking for Claude alone: other upstreams are not sent them
# (polyroute.adapters.own_fields).
DETAIL_FIELDS = ("reasoning_details", "thinking_blocks")


OFFSET = "content_offset"


def detail_of(block: dict[str, Any], index: int, offset: int = 0) -> dict[str, Any] | None:
    """A whole answer's thinking or redacted_thinking block as its ``reasoning_details`` entry (else None), ``offset``
    characters of the answer's text after its start."""
    kind = block.get("type")
    out: dict[str, Any]
    if kind == "thinking":
        out = {"type": "reasoning.text", "text": _text(block.get("thinking")),
               "signature": _text(block.get("signature")), "format": FORMAT, "index": index}
    elif kind == "redacted_thinking":
        out = {"type": "reasoning.encrypted", "data": _text(block.get("data")), "format": FORMAT, "index": index}
    else:
        return None
    if offset:
        out[OFFSET] = offset
    return out


def _text(value: object) -> str:
    """A block's text field: absent or null is empty; another type is a malformed answer (TypeError, which the
    adapter reports as a bad answer of that upstream)."""
    if value is None or isinstance(value, str):
        return value or ""
    raise TypeError(f"a thinking block's field is {type(value).__name__}, not text")


def in_order(placed: list[tuple[int, dict[str, Any]]], content: object,
             blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A turn's thinking ``placed`` (each with its offset in the text) and its other ``blocks``, in the order Claude
    wrote them: the text is cut where a block sat inside it. Thinking opens the turn when no block sat inside the
    text, or when the message's content is not one string (a client that split it: its offsets are not ours)."""
    if not any(at for at, _ in placed) or not isinstance(content, str):
        return [b for _, b in placed] + blocks
    out: list[dict[str, Any]] = []
    done = 0
    for at, block in placed:
        at = min(max(at, done), len(content))
        if at > done:
            out.append({"type": "text", "text": content[done:at]})
            done = at
        out.append(block)
    rest = [b for b in blocks if b.get("type") != "text"]  # the text, now cut up above; the others follow it
    return out + ([{"type": "text", "text": content[done:]}] if done < len(content) else []) + rest


class ThinkingStream:
    """A stream's thinking blocks as ``reasoning_details`` pieces: its entries are numbered 0, 1 ... in the order
    the blocks open, and a block's first piece names its type and format."""

    __slots__ = ("entries", "offsets", "opened")

    def __init__(self) -> None:
        self.entries: dict[int, int] = {}  # content block index -> entry index
        self.opened: set[int] = set()  # entries whose first piece has been sent
        self.offsets: dict[int, int] = {}  # entries that opened after some text, until their first piece

    def start(self, block_index: int, block: dict[str, Any], offset: int = 0) -> dict[str, Any] | None:
        """A block opens, ``offset`` characters of text into the answer: a redacted one is whole at once; a thinking
        block waits for its text or signature."""
        kind = block.get("type")
        if kind not in ("thinking", "redacted_thinking"):
            return None
        entry = self.entries[block_index] = len(self.entries)
        if kind == "redacted_thinking":
            self.opened.add(entry)
            return detail_of(block, entry, offset)
        if offset:
            self.offsets[entry] = offset
        return None

    def piece(self, block_index: int, field: str, value: str) -> dict[str, Any] | None:
        """A piece of a thinking block's ``text`` or its ``signature``."""
        entry = self.entries.get(block_index)
        if entry is None:
            return None
        out: dict[str, Any] = {"index": entry, field: value}
        if entry not in self.opened:
            self.opened.add(entry)
            out = {"type": "reasoning.text", "format": FORMAT, "text": "", **out}
            if entry in self.offsets:
                out[OFFSET] = self.offsets.pop(entry)
        return out


_FOREIGN: dict[str, Any] = {}  # an entry of another model's reasoning: not Claude's, not a gap in Claude's


def _block(e: object) -> dict[str, Any] | None:
    """The Claude block of one ``reasoning_details`` or ``thinking_blocks`` entry; None when it cannot be sent back
    (no signature: a stream cut inside it), ``_FOREIGN`` when it is not Claude's."""
    if not isinstance(e, dict):
        return _FOREIGN
    fmt = e.get("format")
    if fmt is not None and not (isinstance(fmt, str) and fmt.startswith("anthropic-claude")):
        return _FOREIGN  # another model's reasoning (OpenRouter names each format)
    kind = e.get("type")
    if kind in ("reasoning.text", "thinking"):
        text = e.get("text") if kind == "reasoning.text" else e.get("thinking")
        signature = e.get("signature")
        if not isinstance(signature, str) or not signature or not isinstance(text, (str, type(None))):
            return None
        return {"type": "thinking", "thinking": text or "", "signature": signature}
    if kind in ("reasoning.encrypted", "redacted_thinking"):
        data = e.get("data")
        return {"type": "redacted_thinking", "data": data} if isinstance(data, str) and data else None
    return _FOREIGN  # a summary, or a kind added later


class History:
    """The thinking blocks of a conversation's assistant turns, read in order. Blocks that cannot be sent back
    are left out while none has been kept; after a kept one, they and every block after them are left out, since
    a gap between kept blocks fails Claude's check while dropping from the start or the end does not."""

    __slots__ = ("ended", "kept")

    def __init__(self) -> None:
        self.kept = False
        self.ended = False

    def blocks(self, extra: dict[str, Any] | None) -> list[tuple[int, dict[str, Any]]]:
        """The turn's blocks that go back, each with its offset in the turn's text (0: before it)."""
        if not extra or self.ended:
            return []
        entries = next((extra[f] for f in DETAIL_FIELDS if f in extra), None)
        out: list[tuple[int, dict[str, Any]]] = []
        for e in entries if isinstance(entries, list) else ():
            block = _block(e)
            if block is _FOREIGN:
                continue
            if block is None:
                if self.kept or out:
                    self.ended = True
                    break
                continue
            at = e.get(OFFSET) if isinstance(e, dict) else None
            out.append((at if isinstance(at, int) and not isinstance(at, bool) and at > 0 else 0, block))
        self.kept = self.kept or bool(out)
        return out

    def skip(self, extra: dict[str, Any] | None) -> None:
        """A turn sent without its thinking (it has nothing else to send): later blocks would follow a gap."""
        if self.kept and extra and any(f in extra for f in DETAIL_FIELDS):
            self.ended = True
