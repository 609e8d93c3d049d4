"""OpenAI's ``text_completion`` as upstreams send it, whole and streamed, checked.

Shared by every backend of the OpenAI wire (OpenAI, vLLM, llama-server, DeepSeek's FIM
beta, Together, Fireworks...). An answer passes as it came, with the fields OpenAI
clients read made sure of; an error inside a 200 (a body, or a stream event) is the
error its code would have been as a status.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from polyroute.adapters.error_body import BodyReader
from polyroute.adapters.http import error_in_band, json_object
from polyroute.errors import UpstreamBadResponse

from .types import TextChunk, TextCompletion


def _checked(doc: dict[str, Any], backend: str, model: str, whole: bool) -> None:
    """Every choice an object with its text and its index. A stream's chunk may leave the text out (one that only
    ends its choice); a whole answer's choice may not: a choice without text is another endpoint's answer (a chat
    completion's ``message``), not an empty completion."""
    doc["object"] = "text_completion"
    doc.setdefault("id", "")
    doc.setdefault("created", 0)
    doc.setdefault("model", model)
    for position, choice in enumerate(doc["choices"]):
        if not isinstance(choice, dict):
            raise UpstreamBadResponse("a choice is not an object", backend=backend, model=model)
        if whole and "text" not in choice:
            raise UpstreamBadResponse("a choice has no text: not a text completion", backend=backend, model=model)
        text = choice.setdefault("text", "")
        if text is None:
            choice["text"] = ""
        elif not isinstance(text, str):
            raise UpstreamBadResponse("a choice's text is not a string", backend=backend, model=model)
        if type(choice.setdefault("index", position)) is not int:
            raise UpstreamBadResponse("a choice's index is not a number", backend=backend, model=model)
        choice.setdefault("logprobs", None)
        choice.setdefault("finish_reason", None)


def text_answer(doc: object, backend: str, model: str, read: BodyReader) -> TextCompletion:
    """A whole ``text_completion`` body, checked."""
    if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list) or not doc["choices"]:
        if isinstance(doc, dict) and doc.get("error"):  # an error in a 200's body, as some relays send it
            raise error_in_band(orjson.dumps(doc), read, backend=backend, model=model)
        raise UpstreamBadResponse("answer has no choices", backend=backend, model=model)
    _checked(doc, backend, model, whole=True)
    return cast(TextCompletion, doc)


class TextEvents:
    """An OpenAI text completion stream: one chunk per event, then ``data: [DONE]`` (an ``EventReader``)."""

    __slots__ = ("backend", "ended", "model", "read")

    def __init__(self, backend: str, model: str, read: BodyReader) -> None:
        self.backend = backend
        self.model = model
        self.read = read
        self.ended = False

    def on(self, event: str, data: str) -> list[TextChunk]:
        if data == "[DONE]":
            self.ended = True
            return []
        doc = json_object(data, "stream event", backend=self.backend, model=self.model)
        if doc.get("error"):
            raise error_in_band(data.encode(), self.read, backend=self.backend, model=self.model)
        if not isinstance(doc.get("choices"), list):
            raise UpstreamBadResponse("stream event has no choices", backend=self.backend, model=self.model)
        _checked(doc, self.backend, self.model, whole=False)
        usage = doc.pop("usage", None)
        if usage and doc["choices"]:
            # Usage with the last text (vLLM's continuous usage, some relays): in a chunk of its own, as OpenAI
            # sends it, so that the bill finds it in one place.
            return [cast(TextChunk, doc), cast(TextChunk, {**doc, "choices": [], "usage": usage})]
        if usage:
            doc["usage"] = usage
        return [cast(TextChunk, doc)]

    def missing_end(self) -> str:
        return "stream ended without [DONE]"

    def whole(self, doc: object) -> list[TextChunk]:
        """A whole answer sent instead of a stream: one chunk that holds it all."""
        self.ended = True
        return [text_answer(doc, self.backend, self.model, self.read)]
