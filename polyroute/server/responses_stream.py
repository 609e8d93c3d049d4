"""A streamed chat answer as the Responses API's events, in OpenAI's order.

    response.created, response.in_progress
    per output item, one open at a time:
      message:        output_item.added, content_part.added, output_text.delta..., output_text.done,
                      content_part.done, output_item.done
      function_call:  output_item.added, function_call_arguments.delta..., function_call_arguments.done,
                      output_item.done
    response.completed (response.incomplete when the answer was cut short)
    or, when the stream fails after it began: error, then response.failed

Every event carries its ``type`` and a ``sequence_number`` counting from 0. Reasoning
text in the chunks is not carried (as in a whole answer).
"""

from __future__ import annotations

from typing import Any

import orjson

from polyroute.server.responses_answer import (
    call_item,
    ending,
    envelope,
    message_item,
    response_id,
    responses_usage,
)
from polyroute.types import ChatChunk, ChatRequest


def sse(payload: dict[str, Any]) -> bytes:
    """One event, named as OpenAI names it on the ``event:`` line too."""
    kind: str = payload["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class ResponseEvents:
    """The events of one streamed response, made as its chunks come; its owner feeds it in order."""

    def __init__(self, request_id: str, req: ChatRequest, model: str, created_at: int) -> None:
        self.request_id = request_id
        self.response = envelope(response_id(request_id), req, model, created_at, "in_progress")
        self.output: list[dict[str, Any]] = self.response["output"]
        self.sequence = 0
        self.current: int | None = None  # the output index of the open item
        self.text: list[str] = []  # the open message's text so far
        self.calls: dict[int, int] = {}  # a chat tool call's index: its item's output index
        self.finish: str | None = None

    def opening(self) -> bytes:
        return self._emit("response.created", response=self.response) + self._emit(
            "response.in_progress", response=self.response)

    def chunk(self, chunk: ChatChunk) -> bytes:
        out = b""
        for choice in chunk["choices"]:
            delta = choice["delta"]
            if text := delta.get("content"):
                out += self._text(text)
            for call in delta.get("tool_calls") or []:
                out += self._call(call)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return out

    def closing(self, usage: dict[str, Any]) -> bytes:
        """The last events: the open item's end, then the response as it ended, with its usage."""
        out = b"" if self.output else self._text("")  # an empty answer is an empty message, as a whole one
        out += self._close()
        status, incomplete = ending(self.finish)
        self.response.update(status=status, incomplete_details=incomplete, usage=responses_usage(usage))
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._emit(kind, response=self.response)

    def failed(self, error: dict[str, Any]) -> bytes:
        """A stream that broke after it began: never an end that reads like a success."""
        out = self._emit("error", code=error.get("code"), message=error.get("message"), param=error.get("param"))
        self.response.update(status="failed", error={"code": "server_error", "message": error.get("message")})
        return out + self._emit("response.failed", response=self.response)

    def _text(self, text: str) -> bytes:
        out = b""
        if self.current is None or self.output[self.current]["type"] != "message":
            out += self._close()
            out += self._open(message_item(f"msg_{self.request_id}_{len(self.output)}", "", "in_progress"))
            out += self._emit("response.content_part.added", **self._where(), content_index=0,
                              part={"type": "output_text", "text": "", "annotations": []})
        if not text:
            return out
        self.text.append(text)
        return out + self._emit("response.output_text.delta", **self._where(), content_index=0, delta=text,
                                logprobs=[])

    def _call(self, call: dict[str, Any]) -> bytes:
        out = b""
        index = call.get("index", 0)
        fn = call.get("function") or {}
        if index not in self.calls:
            out += self._close()
            n = len(self.output)
            out += self._open(call_item(f"fc_{self.request_id}_{n}", call.get("id") or f"call_{self.request_id}_{n}",
                                        fn.get("name") or "", "", "in_progress"))
            self.calls[index] = n
        if arguments := fn.get("arguments"):
            at = self.calls[index]
            self.output[at]["arguments"] += arguments
            out += self._emit("response.function_call_arguments.delta", item_id=self.output[at]["id"],
                              output_index=at, delta=arguments)
        return out

    def _open(self, item: dict[str, Any]) -> bytes:
        self.current = len(self.output)
        self.output.append(item)
        return self._emit("response.output_item.added", output_index=self.current, item=item)

    def _close(self) -> bytes:
        if self.current is None:
            return b""
        item = self.output[self.current]
        where = self._where()
        item["status"] = "incomplete" if ending(self.finish)[1] else "completed"
        out = b""
        if item["type"] == "message":
            text = "".join(self.text)
            part = {"type": "output_text", "text": text, "annotations": []}
            item["content"] = [part]
            out += self._emit("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
            out += self._emit("response.content_part.done", **where, content_index=0, part=part)
            self.text = []
        else:
            out += self._emit("response.function_call_arguments.done", **where, arguments=item["arguments"])
        self.current = None
        return out + self._emit("response.output_item.done", output_index=where["output_index"], item=item)

    def _where(self) -> dict[str, Any]:
        assert self.current is not None
        return {"item_id": self.output[self.current]["id"], "output_index": self.current}

    def _emit(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse(payload)
