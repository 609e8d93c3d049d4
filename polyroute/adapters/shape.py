"""What an OpenAI-shaped answer from an upstream must hold before the gateway reads it.

The gateway reads a few fields of every chunk and answer (text, reasoning, tool calls,
the finish reason) to count tokens, keep text for a rescue and assemble whole answers.
An upstream that sends those fields with other types (a number for ``content``, a
string for ``delta``, a tool call that is not an object) has sent a bad answer: the
attempt fails as ``UpstreamBadResponse`` and the next candidate is asked, instead of
the gateway tripping over it. Text sent as a list of text parts is joined, as the
OpenAI request format allows for content, and tool-call arguments sent as a JSON value
are written as the JSON text clients read. Nesting deeper than the JSON writer that passes
answers on can write (255 levels) is refused too: no answer needs it.
"""

from __future__ import annotations

from typing import Any

import orjson

from polyroute.errors import UpstreamBadResponse

# Below this many brackets no JSON text can nest too deep to be written again (orjson's limit is 255 levels).
MAX_DEPTH = 250
_TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "refusal", "role")
_CALL_TEXT = ("id", "type")
# The text fields of a ``reasoning_details`` entry (OpenRouter's shape, Claude's signed thinking), which clients join
# by ``index`` as they join content.
_DETAIL_TEXT = ("type", "text", "summary", "signature", "data", "format", "id")
_FUNCTION_TEXT = ("name", "arguments")


class Shape:
    """Checks one upstream's chunks and answers, naming the backend and model in what it raises."""

    __slots__ = ("backend", "model")

    def __init__(self, backend: str, model: str) -> None:
        self.backend = backend
        self.model = model

    def bad(self, what: str) -> UpstreamBadResponse:
        return UpstreamBadResponse(what, backend=self.backend, model=self.model)

    def choice(self, choice: dict[str, Any], part: str) -> None:
        """A stream choice (``part`` "delta") or an answer's choice (``part`` "message"), checked in place."""
        body = choice.get(part)
        if body is None:
            if part == "delta":
                choice["delta"] = {}  # a chunk that says nothing but its finish reason
            return
        if not isinstance(body, dict):
            raise self.bad(f"{part} is not an object")
        self.message(body, part)  # a finish_reason of another shape passes through: some servers send an object

    def message(self, body: dict[str, Any], where: str) -> None:
        for key in _TEXT_FIELDS:
            value = body.get(key)
            if value is None or isinstance(value, str):
                continue
            if key == "content" and isinstance(value, list):
                body[key] = self.joined(value, where)
                continue
            raise self.bad(f"{where}.{key} is not text")
        calls = body.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise self.bad(f"{where}.tool_calls is not a list")
            for call in calls:
                self.tool_call(call, where)
        legacy = body.get("function_call")
        if legacy is not None:
            self.function(legacy, f"{where}.function_call")
        details = body.get("reasoning_details")
        if details is not None:
            self.details(details, where)

    def details(self, details: object, where: str) -> None:
        """``reasoning_details``: a list of objects whose text fields are text and whose ``index`` is a count."""
        if not isinstance(details, list):
            raise self.bad(f"{where}.reasoning_details is not a list")
        for entry in details:
            if not isinstance(entry, dict):
                raise self.bad(f"{where}.reasoning_details holds something that is not an object")
            index = entry.get("index")
            if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
                raise self.bad(f"{where}.reasoning_details[].index is not a count")
            self.texts(entry, _DETAIL_TEXT, f"{where}.reasoning_details[]")

    def tool_call(self, call: object, where: str) -> None:
        if not isinstance(call, dict):
            raise self.bad(f"{where}.tool_calls holds something that is not an object")
        index = call.get("index")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
            raise self.bad(f"{where}.tool_calls[].index is not a count")
        self.texts(call, _CALL_TEXT, f"{where}.tool_calls[]")
        function = call.get("function")
        if function is not None:
            self.function(function, f"{where}.tool_calls[].function")

    def function(self, function: object, where: str) -> None:
        if not isinstance(function, dict):
            raise self.bad(f"{where} is not an object")
        arguments = function.get("arguments")
        if isinstance(arguments, (dict, list)):
            # Arguments as a JSON value rather than its text (Hugging Face TGI sends them so): the text clients read.
            function["arguments"] = orjson.dumps(arguments).decode()
        self.texts(function, _FUNCTION_TEXT, where)

    def texts(self, part: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
        """Each of ``keys`` absent, null or text."""
        for key in keys:
            if (value := part.get(key)) is not None and not isinstance(value, str):
                raise self.bad(f"{where}.{key} is not text")

    def joined(self, parts: list[Any], where: str) -> str:
        """Content sent as text parts (``[{"type": "text", "text": ...}]``), as one text."""
        texts = []
        for part in parts:
            if not isinstance(part, dict) or not isinstance(text := part.get("text"), str):
                raise self.bad(f"{where}.content is a list of something other than text parts")
            texts.append(text)
        return "".join(texts)


def too_deep(data: str | bytes, doc: object) -> bool:
    """Whether ``doc`` (parsed from ``data``) nests too deep for the JSON writer that passes answers on, with room
    for the few levels the gateway may wrap around it. Counting brackets first keeps the usual chunk cheap."""
    count = data.count("{") + data.count("[") if isinstance(data, str) else data.count(b"{") + data.count(b"[")
    if count <= MAX_DEPTH:
        return False
    try:
        orjson.dumps([[[[doc]]]])
    except orjson.JSONEncodeError:
        return True
    return False
