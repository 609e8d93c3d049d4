"""Ollama's native chat API: ``POST {base_url}/api/chat``, answered as JSON or NDJSON.

Sampling parameters travel in ``options``; ``response_format`` becomes ``format``
("json" or a JSON schema); tool call arguments are JSON objects both ways, and
tool calls carry no ids, so ids are made up here. Ollama continues a trailing
assistant message natively, which is how a cut stream is rescued.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson

from polyroute.adapters.base import OPTIONAL_PARAMS, Call, make_chunk, new_id, now, usage_chunk
from polyroute.adapters.error_body import ErrorInfo, json_error_reader
from polyroute.adapters.http import HttpAdapter, error_from_status, json_object, tool_arguments
from polyroute.adapters.shape import Shape
from polyroute.embeddings.types import EmbedCall, Embedded, read_vectors
from polyroute.errors import UpstreamBadResponse, UpstreamError, UpstreamRejected, UpstreamUnavailable
from polyroute.types import ChatChunk, ChatRequest, ChatResponse, Delta, Message, ResponseMessage, Usage, read_usage

FINISH = {"stop": "stop", "length": "length"}
# Ollama says "the input length exceeds the context length" with no code to match.
_CONTEXT_WORDS = re.compile(r"exceeds the context length|context length|context window", re.I)
_MESSAGE_TEXT = ("role", "content", "thinking")
_DATA_URL = re.compile(r"data:[\w.+-]+/[\w.+-]+;base64,(?P<data>.*)", re.S)


def read_error(status: int, body: bytes) -> ErrorInfo:
    """Read ``{"error": "message"}``."""
    info = json_error_reader(status, body)
    if status == 400 and _CONTEXT_WORDS.search(info.message):
        return ErrorInfo(info.message, code="context_length_exceeded", context_exceeded=True)
    if status == 404:
        # /api/chat answers 404 only for a model it has not pulled ("model 'x' not found").
        return ErrorInfo(info.message, code="model_not_found", model_missing=True)
    return info


class OllamaAdapter(HttpAdapter):
    kind = "ollama"
    supports = OPTIONAL_PARAMS - {"tool_choice"}
    extras = frozenset({"think", "keep_alive"})

    default_continuation = "prefill"
    path = "/api/chat"
    read_error = staticmethod(read_error)
    # POST /api/embed: text only; its vectors come L2-normalised, as OpenAI's do.
    embeds = embeds_dimensions = True

    async def embed(self, call: EmbedCall) -> Embedded:
        req, model = call.request, call.upstream_model
        texts = req.texts or []  # token ids never reach it (embeds_tokens is False)
        # truncate: false, so that an input longer than the model's context is refused, as OpenAI refuses it,
        # rather than embedded cut short without a word.
        body: dict[str, Any] = {"model": model, "input": texts, "truncate": False}
        if req.dimensions is not None:
            body["dimensions"] = req.dimensions
        body.update({k: v for k, v in req.extras().items() if k == "keep_alive"})
        doc = await self.http.post_json(f"{self.config.base_url}/api/embed", body, self.headers, model, call.timeout)
        if not isinstance(doc, dict) or not isinstance(doc.get("embeddings"), list):
            raise UpstreamBadResponse("answer has no embeddings", backend=self.name, model=model)
        data = [{"index": i, "embedding": v} for i, v in enumerate(doc["embeddings"])]
        counted = doc.get("prompt_eval_count")
        tokens = counted if type(counted) is int and counted > 0 else None
        return Embedded(read_vectors(data, len(texts), backend=self.name, model=model), tokens)

    # -- request ---------------------------------------------------------------------------

    def payload(self, call: Call, stream: bool) -> dict[str, Any]:
        req = call.request
        messages = self._messages(call)
        if call.prefix:
            messages.append({"role": "assistant", "content": call.prefix})
        body: dict[str, Any] = {"model": call.upstream_model, "messages": messages, "stream": stream}
        options = _options(req, call.drop)
        if options:
            body["options"] = options
        if req.tools and "tools" not in call.drop:
            body["tools"] = req.tools
        if req.response_format and "response_format" not in call.drop:
            fmt = _format(req.response_format)
            if fmt is not None:
                body["format"] = fmt
        # Ollama-only knobs a client may send as extra fields.
        body.update({k: v for k, v in req.extras().items() if k in ("think", "keep_alive")})
        return body

    def _messages(self, call: Call) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        names: dict[str, str] = {}  # tool call id -> function name, for the tool turns
        for i, m in enumerate(call.request.messages):
            if m.role in ("system", "developer"):
                out.append({"role": "system", "content": m.text()})
            elif m.role in ("tool", "function"):
                name = names.get(m.tool_call_id or "", m.name or "")
                out.append({"role": "tool", "content": m.text(), **({"tool_name": name} if name else {})})
            elif m.role == "assistant":
                out.append(self._assistant(m, i, names, call.upstream_model))
            else:
                out.append(self._user(m, call.upstream_model))
        return out

    def _user(self, m: Message, model: str) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "user", "content": m.text()}
        images = [self._image(p, model) for p in (m.content if isinstance(m.content, list) else [])
                  if p.get("type") == "image_url"]
        if images:
            msg["images"] = images
        return msg

    def _image(self, part: dict[str, Any], model: str) -> str:
        url = part.get("image_url")
        url = url.get("url", "") if isinstance(url, dict) else str(url or "")
        match = _DATA_URL.fullmatch(url)
        if match is None:
            raise UpstreamRejected("Ollama takes images only as base64 data: URLs", backend=self.name, model=model)
        return match["data"]

    def _assistant(self, m: Message, i: int, names: dict[str, str], model: str) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": m.text()}
        calls = []
        for j, tc in enumerate(m.tool_calls or []):
            fn = tc.get("function") or {}
            args = tool_arguments(tc, f"messages[{i}].tool_calls[{j}]", backend=self.name, model=model)
            names[str(tc.get("id", ""))] = str(fn.get("name", ""))
            calls.append({"type": "function", "function": {"index": j, "name": fn.get("name", ""), "arguments": args}})
        if calls:
            msg["tool_calls"] = calls
        return msg

    # -- whole answers -----------------------------------------------------------------------

    async def complete(self, call: Call) -> ChatResponse:
        model = call.upstream_model
        doc = await self.http.post_json(self.url, self.payload(call, False), self.headers, model, call.timeout)
        shape = Shape(self.name, model)
        if not isinstance(doc, dict) or doc.get("message") is None:
            raise shape.bad("answer has no message")
        msg = _message(shape, doc["message"])
        tool_calls = [_tool_call(tc) for tc in msg.get("tool_calls") or []]
        text = msg.get("content") or ""
        message: ResponseMessage = {"role": "assistant", "content": (call.prefix or "") + text}
        if tool_calls:
            message["tool_calls"] = tool_calls
            message["content"] = text or None
        if msg.get("thinking"):
            message["reasoning_content"] = msg["thinking"]
        finish = "tool_calls" if tool_calls else FINISH.get(str(doc.get("done_reason")), "stop")
        answer: ChatResponse = {
            "id": new_id(),
            "object": "chat.completion",
            "created": now(),
            "model": str(doc.get("model") or model),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        }
        if (usage := _usage(doc)) is not None:
            answer["usage"] = usage
        return answer

    # -- streams -------------------------------------------------------------------------------

    async def stream(self, call: Call) -> AsyncIterator[ChatChunk]:
        model = call.upstream_model
        cid, created = new_id(), now()
        tools, started = 0, False
        shape = Shape(self.name, model)
        async with self.http.open_stream(self.url, self.payload(call, True), self.headers, model, call.timeout) as resp:
            async for line in self.http.lines(resp, model):
                if not line.strip():
                    continue
                doc = self._record(line, model)
                if not started:
                    started = True
                    yield make_chunk(cid, model, {"role": "assistant", "content": ""}, created=created)
                if doc.get("message") is not None:
                    delta, tools = _delta(_message(shape, doc["message"]), tools)
                    if delta:
                        yield make_chunk(cid, model, delta, created=created)
                if doc.get("done"):
                    finish = "tool_calls" if tools else FINISH.get(str(doc.get("done_reason")), "stop")
                    yield make_chunk(cid, model, {}, finish, created=created)
                    if (usage := _usage(doc)) is not None:
                        yield usage_chunk(cid, model, usage)
                    return
        raise UpstreamUnavailable("stream ended without a done record", backend=self.name, model=model)

    def _record(self, line: str, model: str) -> dict[str, Any]:
        doc = json_object(line, "stream record", backend=self.name, model=model)
        if "error" in doc:
            # An error after the 200: the model failed while generating.
            err: UpstreamError = error_from_status(
                500, line.encode(), {}, self.http.reader, backend=self.name, model=model
            )
            raise err
        return doc


def _options(req: ChatRequest, drop: frozenset[str]) -> dict[str, Any]:
    values = {
        "temperature": req.temperature,
        "top_p": req.top_p,
        "seed": req.seed,
        "stop": req.stop_list() or None,
        "num_predict": req.output_limit(),
    }
    param = {"num_predict": "max_tokens"}
    return {k: v for k, v in values.items() if v is not None and param.get(k, k) not in drop}


def _format(response_format: dict[str, Any]) -> str | dict[str, Any] | None:
    kind = response_format.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else "json"
    return None


def _message(shape: Shape, msg: object) -> dict[str, Any]:
    """A record's message with the fields read here checked: text where text belongs, each tool call an object
    naming its function. Arguments sent as a JSON value (Ollama's way) become the JSON text clients read."""
    if not isinstance(msg, dict):
        raise shape.bad("message is not an object")
    shape.texts(msg, _MESSAGE_TEXT, "message")
    calls = msg.get("tool_calls")
    if calls is None:
        return msg
    if not isinstance(calls, list):
        raise shape.bad("message.tool_calls is not a list")
    for tc in calls:
        try:
            shape.tool_call(tc, "message")
        except orjson.JSONEncodeError:
            raise shape.bad("message.tool_calls[].function.arguments nest too deep") from None
        if not isinstance(tc.get("function"), dict) or not isinstance(tc["function"].get("name"), str):
            raise shape.bad("message.tool_calls[] names no function")
    return msg


def _usage(doc: dict[str, Any]) -> Usage | None:
    """The record's counts; None when one is not a count, and the gateway then estimates them. Ollama leaves
    ``prompt_eval_count`` out when the whole prompt came from its cache: none read."""
    return read_usage({"prompt_tokens": doc.get("prompt_eval_count") or 0,
                       "completion_tokens": doc.get("eval_count") or 0})


def _tool_call(tc: dict[str, Any]) -> dict[str, Any]:
    fn = tc["function"]
    return {
        # Ollama gives tool calls no ids (newer versions may): clients need one to answer.
        "id": tc.get("id") or "call_" + uuid.uuid4().hex[:24],
        "type": "function",
        "function": {"name": fn["name"], "arguments": fn.get("arguments") or "{}"},
    }


def _delta(msg: dict[str, Any], tools: int) -> tuple[Delta, int]:
    """One streamed message fragment as an OpenAI delta; ``tools`` counts tool calls so far."""
    delta: Delta = {}
    if msg.get("thinking"):
        delta["reasoning_content"] = msg["thinking"]
    if msg.get("content"):
        delta["content"] = msg["content"]
    calls = []
    for tc in msg.get("tool_calls") or []:
        calls.append({"index": tools, **_tool_call(tc)})
        tools += 1
    if calls:
        delta["tool_calls"] = calls
    return delta, tools
