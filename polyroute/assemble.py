"""One whole answer from the chunks of a stream, and a whole answer as chunks.

A non-streamed client request may be answered by streaming from the upstream (so
that the first-token and stall deadlines apply, and a cut answer can be rescued);
``Assembly`` folds the chunks back into the ``chat.completion`` the upstream would
have sent: the text and reasoning joined, tool calls joined by their ``index``,
logprobs concatenated, the last ``finish_reason`` and usage. ``as_chunks`` goes the
other way, for a backend answered directly inside a walk that streams.
"""

from __future__ import annotations

from typing import Any, cast

from polyroute.types import ChatChunk, ChatResponse, Usage

__all__ = ["Assembly", "as_chunks"]


def _joined(fn: dict[str, Any], piece: dict[str, Any]) -> dict[str, Any]:
    """A function call's pieces so far with one more: ``name`` and ``arguments`` come as text to join."""
    for k, v in piece.items():
        fn[k] = fn.get(k, "") + v if isinstance(v, str) and k in ("name", "arguments") else v
    return fn


# Text an object of a delta sends in pieces: an audio answer's ``data`` (base64) and ``transcript``.
_PIECED = frozenset({"data", "transcript", "text"})


def _merged(old: Any, value: Any) -> Any:
    """Another delta field (``refusal``, ``audio``, ``annotations``...) with one more piece: text joined, lists
    extended, objects merged key by key (their text pieces joined, the rest the latest said)."""
    if old is None:
        return value
    if value is None:
        return old
    if isinstance(old, str) and isinstance(value, str):
        return old + value
    if isinstance(old, list) and isinstance(value, list):
        return _by_index(old, value) if value and _indexed(value[0]) else old + value
    if isinstance(old, dict) and isinstance(value, dict):
        out = dict(old)
        for k, v in value.items():
            prev = out.get(k)
            out[k] = prev + v if k in _PIECED and isinstance(prev, str) and isinstance(v, str) else _kept(prev, v)
        return out
    return value


def _kept(prev: Any, value: Any) -> Any:
    return prev if value is None else value


def _indexed(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("index"), int)


# Fields of an indexed entry that name it rather than come in pieces.
_NAMING = frozenset({"index", "type", "format", "id"})


def _by_index(old: list[Any], value: list[Any]) -> list[Any]:
    """A list sent in pieces that name their entry by ``index`` (``reasoning_details``), as OpenAI's SDK joins it:
    a piece's text is added to its entry's, its other fields replace the entry's."""
    out = list(old)
    at = {e["index"]: i for i, e in enumerate(out) if _indexed(e)}
    for piece in value:
        i = at.get(piece["index"]) if _indexed(piece) else None
        if i is None:
            if _indexed(piece):
                at[piece["index"]] = len(out)
            out.append(dict(piece) if isinstance(piece, dict) else piece)
            continue
        entry = out[i] = dict(out[i])
        for k, v in piece.items():
            prev = entry.get(k)
            entry[k] = prev + v if k not in _NAMING and isinstance(prev, str) and isinstance(v, str) else _kept(prev, v)
    return out


class _Choice:
    __slots__ = ("extra", "finish", "logprobs", "matched", "native", "parts", "reasoning", "tools")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.reasoning: list[str] = []
        self.tools: dict[int, dict[str, Any]] = {}
        self.logprobs: dict[str, list[Any]] | None = None
        self.finish: str | None = None
        self.native: str | None = None  # the provider's own finish word, where it differs from OpenAI's
        # The stop sequence the answer ended on, where the upstream says it (vLLM's ``stop_reason``, Claude's
        # ``stop_sequence`` as the Anthropic adapter passes it on); read by the Messages API's stop_sequence.
        self.matched: object = None
        self.extra: dict[str, Any] = {}  # other delta fields (refusal, audio...): the last value, text joined

    def add(self, delta: dict[str, Any]) -> None:
        for key, value in delta.items():
            if key == "content":
                if value:
                    self.parts.append(value)
            elif key == "reasoning_content":
                if value:
                    self.reasoning.append(value)
            elif key == "tool_calls":
                for call in value or ():
                    self._tool(call)
            elif key == "function_call" and isinstance(value, dict):  # the deprecated single call, in pieces
                self.extra[key] = _joined(self.extra.get(key) or {}, value)
            elif key != "role":
                self.extra[key] = _merged(self.extra.get(key), value)

    def _tool(self, piece: dict[str, Any]) -> None:
        index = int(piece.get("index", len(self.tools)))
        call = self.tools.get(index)
        if call is None:
            call = self.tools[index] = {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        for key, value in piece.items():
            if key == "function":
                call["function"] = _joined(call["function"], value or {})
            elif key != "index" and value is not None:
                call[key] = value

    def add_logprobs(self, logprobs: Any) -> None:
        if not isinstance(logprobs, dict):
            return
        if self.logprobs is None:
            self.logprobs = {}
        for key, value in logprobs.items():
            if isinstance(value, list):
                self.logprobs.setdefault(key, []).extend(value)

    def message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": "".join(self.parts) if self.parts else None}
        if self.reasoning:
            msg["reasoning_content"] = "".join(self.reasoning)
        msg.update(self.extra)
        if self.tools:
            msg["tool_calls"] = [self.tools[i] for i in sorted(self.tools)]
        elif msg["content"] is None and not self.reasoning:
            msg["content"] = ""
        return msg


# Fields of a stream's chunks that a whole answer carries once, at its top.
_TOP = ("system_fingerprint", "service_tier", "input_transformations")


class Assembly:
    """Chunks in, one ``chat.completion`` out."""

    __slots__ = ("choices", "created", "id", "model", "top", "usage")

    def __init__(self) -> None:
        self.id = ""
        self.created = 0
        self.model = ""
        self.top: dict[str, Any] = {}  # the first word of each of ``_TOP`` the chunks carry
        self.usage: Usage | None = None
        self.choices: dict[int, _Choice] = {}

    def add(self, chunk: ChatChunk) -> None:
        if not self.id:
            self.id, self.created, self.model = chunk["id"], chunk["created"], chunk["model"]
        if usage := chunk.get("usage"):
            self.usage = usage
        if len(self.top) < len(_TOP):
            for key in _TOP:
                if key not in self.top and (value := cast(dict[str, Any], chunk).get(key)) is not None:
                    self.top[key] = value
        for c in chunk["choices"]:
            choice = self.choices.get(c["index"])
            if choice is None:
                choice = self.choices[c["index"]] = _Choice()
            delta = cast(dict[str, Any], c["delta"])
            if len(delta) == 1 and "content" in delta:  # most chunks: one piece of text
                if text := delta["content"]:
                    choice.parts.append(text)
            else:
                choice.add(delta)
            if (finish := c.get("finish_reason")) is not None:
                choice.finish = finish
                choice.native = cast(dict[str, Any], c).get("native_finish_reason")
                choice.matched = cast(dict[str, Any], c).get("stop_reason")
            if (logprobs := c.get("logprobs")) is not None:
                choice.add_logprobs(logprobs)

    def response(self) -> ChatResponse:
        choices: list[dict[str, Any]] = []
        for i, c in sorted(self.choices.items()):
            choices.append({"index": i, "message": c.message(), "logprobs": c.logprobs, "finish_reason": c.finish})
            if c.native is not None:
                choices[-1]["native_finish_reason"] = c.native
            if c.matched is not None:
                choices[-1]["stop_reason"] = c.matched
        resp: dict[str, Any] = {
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "choices": choices,
        }
        if self.usage is not None:
            resp["usage"] = self.usage
        resp.update(self.top)
        return cast(ChatResponse, resp)


def as_chunks(resp: ChatResponse) -> list[ChatChunk]:
    """A whole answer as the chunks of a stream: one per choice with everything, then the usage."""
    chunks: list[ChatChunk] = []
    for choice in resp["choices"]:
        delta: dict[str, Any] = dict(choice.get("message") or {})
        if tools := delta.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **t} for i, t in enumerate(tools)]
        c: dict[str, Any] = {"index": choice.get("index", 0), "delta": delta,
                             "finish_reason": choice.get("finish_reason")}
        if choice.get("logprobs") is not None:
            c["logprobs"] = choice["logprobs"]
        if (native := cast(dict[str, Any], choice).get("native_finish_reason")) is not None:
            c["native_finish_reason"] = native
        if (matched := cast(dict[str, Any], choice).get("stop_reason")) is not None:
            c["stop_reason"] = matched
        chunks.append(cast(ChatChunk, {"id": resp["id"], "object": "chat.completion.chunk",
                                       "created": resp["created"], "model": resp["model"], "choices": [c]}))
    if chunks and (changed := resp.get("input_transformations")):
        chunks[0]["input_transformations"] = changed
    if usage := resp.get("usage"):
        chunks.append({"id": resp["id"], "object": "chat.completion.chunk", "created": resp["created"],
                       "model": resp["model"], "choices": [], "usage": usage})
    return chunks
