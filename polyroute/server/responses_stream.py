"""A streamed chat answer as the Responses API's events, in OpenAI's order.

    response.created, response.in_progress
    per output item:
      reasoning:      output_item.added, content_part.added, reasoning_text.delta..., reasoning_text.done,
                      content_part.done, output_item.done
      message:        output_item.added, content_part.added, output_text.delta..., output_text.done,
                      content_part.done, output_item.done
      function_call:  output_item.added, function_call_arguments.delta..., function_call_arguments.done,
                      output_item.done
    response.completed (response.incomplete when the answer was cut short)
    or, when the stream fails after it began: error, then response.failed

Every event carries its ``type`` and a ``sequence_number`` counting from 0. A
reasoning or message item ends when an item of another kind begins. A function
call stays open until the stream ends, and open calls end then in output order:
an upstream may send the pieces of parallel calls interleaved (index 0, 1, 0 ...),
and each call's deltas must all precede its ``done``, which carries the whole
arguments. A reasoning item with no text (Claude's omitted thinking) has no
content part and is sent only when its ``encrypted_content`` was asked for.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from polyroute.adapters.base import make_chunk
from polyroute.assemble import Assembly
from polyroute.server.responses_answer import (
    call_item,
    ending,
    envelope,
    logprobs_of,
    message_item,
    refusal_part,
    response_id,
    responses_usage,
    text_part,
)
from polyroute.server.responses_reasoning import reasoning_item, reasoning_text, seal, sealable
from polyroute.types import ChatChunk, ChatRequest


def sse(payload: dict[str, Any]) -> bytes:
    """One event, named as OpenAI names it on the ``event:`` line too."""
    kind: str = payload["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class ResponseEvents:
    """The events of one streamed response, made as its chunks come; its owner feeds it in order."""

    def __init__(self, request_id: str, req: ChatRequest, model: str, created_at: int, *,
                 sealed: bool = False) -> None:
        self.request_id = request_id
        self.sealed = sealed  # reasoning items carry their reasoning_details as encrypted_content
        self.response = envelope(response_id(request_id), req, model, created_at, "in_progress")
        self.output: list[dict[str, Any]] = self.response["output"]
        self.sequence = 0
        self.message: int | None = None  # the output index of the open message
        self.text: list[str] = []  # its text so far
        self.logprobs: list[Any] | None = None  # its tokens' logprobs so far, when the upstream gives them
        self.refusal: list[str] = []  # its refusal so far (a classifier's, said as the answer ends)
        self.thought: int | None = None  # the output index of the open reasoning item
        self.thinking: list[str] = []  # its text so far
        self.details = Assembly()  # its reasoning_details pieces, joined by index as the chat path joins them
        self.calls: dict[int, int] = {}  # a chat tool call's index: its item's output index (all open to the end)
        self.finish: str | None = None
        # The encrypted_content of reasoning items shown without it (not asked for): stored responses keep it.
        self.sealed_apart: dict[str, str] = {}

    def opening(self) -> bytes:
        return self._emit("response.created", response=self.response) + self._emit(
            "response.in_progress", response=self.response)

    def chunk(self, chunk: ChatChunk) -> bytes:
        out = b""
        for choice in chunk["choices"]:
            delta = choice["delta"]
            details = delta.get("reasoning_details")
            if (thought := reasoning_text(cast(dict[str, Any], delta))) or (details and self.sealed):
                out += self._reasoning(thought, details)
            elif details and self.thought is not None:  # kept for the store (``sealed_apart``), not shown
                self.details.add(make_chunk("", "", {"reasoning_details": details}, created=1))
            if text := delta.get("content"):
                out += self._text(text, logprobs_of(choice))
            if refusal := delta.get("refusal"):  # why the model declined: a refusal part of the message
                out += self._text("")
                self.refusal.append(refusal)
            for call in delta.get("tool_calls") or []:
                out += self._call(call)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return out

    def closing(self, usage: dict[str, Any]) -> bytes:
        """The last events: the open items' ends, then the response as it ended, with its usage."""
        answered = any(item["type"] != "reasoning" for item in self.output)
        out = b"" if answered else self._text("")  # an empty answer is an empty message, as a whole one
        for at in sorted({*self.calls.values(), *(i for i in (self.thought, self.message) if i is not None)}):
            out += self._close(at)
        status, incomplete = ending(self.finish)
        self.response.update(status=status, incomplete_details=incomplete, usage=responses_usage(usage))
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._emit(kind, response=self.response)

    def failed(self, error: dict[str, Any]) -> bytes:
        """A stream that broke after it began: never an end that reads like a success."""
        out = self._emit("error", code=error.get("code"), message=error.get("message"), param=error.get("param"))
        self.response.update(status="failed", error={"code": "server_error", "message": error.get("message")})
        return out + self._emit("response.failed", response=self.response)

    def _reasoning(self, text: str, details: list[dict[str, Any]] | None) -> bytes:
        out = b""
        if self.thought is None:
            out += self._close(self.message)
            self.thought = len(self.output)
            out += self._open(reasoning_item(f"rs_{self.request_id}_{self.thought}", "", None, "in_progress"))
        if details:
            self.details.add(make_chunk("", "", {"reasoning_details": details}, created=1))
        if not text:
            return out
        where = self._where(self.thought)
        if not self.thinking:
            self.output[self.thought]["content"] = [{"type": "reasoning_text", "text": ""}]
            out += self._emit("response.content_part.added", **where, content_index=0,
                              part={"type": "reasoning_text", "text": ""})
        self.thinking.append(text)
        return out + self._emit("response.reasoning_text.delta", **where, content_index=0, delta=text)

    def _text(self, text: str, logprobs: list[Any] | None = None) -> bytes:
        out = b""
        if self.message is None:
            out += self._close(self.thought)
            self.message = len(self.output)
            out += self._open(message_item(f"msg_{self.request_id}_{self.message}", "", "in_progress"))
            out += self._emit("response.content_part.added", **self._where(self.message), content_index=0,
                              part={"type": "output_text", "text": "", "annotations": []})
        if not text:
            return out
        self.text.append(text)
        if logprobs is not None:
            self.logprobs = self.logprobs if self.logprobs is not None else []
            self.logprobs.extend(logprobs)
        return out + self._emit("response.output_text.delta", **self._where(self.message), content_index=0,
                                delta=text, logprobs=_said(logprobs))

    def _call(self, call: dict[str, Any]) -> bytes:
        out = b""
        index = call.get("index", 0)
        fn = call.get("function") or {}
        if index not in self.calls:
            out += self._close(self.message) + self._close(self.thought)
            n = self.calls[index] = len(self.output)
            out += self._open(call_item(f"fc_{self.request_id}_{n}", call.get("id") or f"call_{self.request_id}_{n}",
                                        fn.get("name") or "", "", "in_progress"))
        if arguments := fn.get("arguments"):
            at = self.calls[index]
            self.output[at]["arguments"] += arguments
            out += self._emit("response.function_call_arguments.delta", **self._where(at), delta=arguments)
        return out

    def _open(self, item: dict[str, Any]) -> bytes:
        self.output.append(item)
        return self._emit("response.output_item.added", output_index=len(self.output) - 1, item=item)

    def _close(self, at: int | None) -> bytes:
        """The end of the item at output index ``at`` (nothing when None)."""
        if at is None:
            return b""
        item = self.output[at]
        where = self._where(at)
        item["status"] = "incomplete" if ending(self.finish)[1] else "completed"
        out = b""
        if item["type"] == "message":
            text = "".join(self.text)
            part = text_part(text, self.logprobs)
            item["content"] = [part]
            out += self._emit("response.output_text.done", **where, content_index=0, text=text,
                              logprobs=_said(self.logprobs))
            out += self._emit("response.content_part.done", **where, content_index=0, part=part)
            if self.refusal:
                out += self._refusal_done(item, where)
            self.message, self.text, self.logprobs = None, [], None
        elif item["type"] == "reasoning":
            out += self._reasoning_done(item, where)
        else:
            out += self._emit("response.function_call_arguments.done", **where, arguments=item["arguments"])
        return out + self._emit("response.output_item.done", output_index=at, item=item)

    def _refusal_done(self, item: dict[str, Any], where: dict[str, Any]) -> bytes:
        """The message's refusal, as a second content part: added, its text, done."""
        text, self.refusal = "".join(self.refusal), []
        item["content"].append(refusal_part(text))
        return (self._emit("response.content_part.added", **where, content_index=1, part=refusal_part(""))
                + self._emit("response.refusal.delta", **where, content_index=1, delta=text)
                + self._emit("response.refusal.done", **where, content_index=1, refusal=text)
                + self._emit("response.content_part.done", **where, content_index=1, part=refusal_part(text)))

    def _reasoning_done(self, item: dict[str, Any], where: dict[str, Any]) -> bytes:
        out = b""
        if self.thinking:
            text = "".join(self.thinking)
            part = {"type": "reasoning_text", "text": text}
            item["content"] = [part]
            out += self._emit("response.reasoning_text.done", **where, content_index=0, text=text)
            out += self._emit("response.content_part.done", **where, content_index=0, part=part)
        if self.details.choices and (entries := sealable(self.details.response()["choices"][0]["message"].get(
                "reasoning_details"))):
            if self.sealed:
                item["encrypted_content"] = seal(entries)
            else:
                self.sealed_apart[item["id"]] = seal(entries)
        self.thought, self.thinking, self.details = None, [], Assembly()
        return out

    def _where(self, at: int) -> dict[str, Any]:
        return {"item_id": self.output[at]["id"], "output_index": at}

    def _emit(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse(payload)


def _said(logprobs: list[Any] | None) -> list[dict[str, Any]]:
    """Tokens' logprobs as the text events carry them: each token's ``token``, ``logprob`` and ``top_logprobs``
    (the content part's own carry ``bytes`` too)."""
    return [{"token": e.get("token"), "logprob": e.get("logprob"),
             "top_logprobs": [{"token": t.get("token"), "logprob": t.get("logprob")}
                              for t in e.get("top_logprobs") or () if isinstance(t, dict)]}
            for e in logprobs or () if isinstance(e, dict)]
