"""OpenAI-compatible chat completions: one adapter configured by data.

Serves OpenAI, DeepSeek, Qwen (DashScope compatible mode), Kimi (Moonshot), GLM
(Zhipu / Z.ai), Together, Fireworks, OpenRouter, vLLM, SGLang, llama-server and
Ollama's ``/v1``. Differences between them are data (``continuation``, headers),
never branches on provider names.
"""

from __future__ import annotations

import re
from typing import Any, cast

from polyroute.adapters.base import Call
from polyroute.adapters.http import ErrorInfo, HttpAdapter, json_error_reader, json_object
from polyroute.adapters.sse_chunks import SSEChunks
from polyroute.config import HttpBackendConfig
from polyroute.errors import UpstreamBadResponse, UpstreamServerError
from polyroute.types import ChatChunk, ChatResponse

# Providers that give no structured code for an over-long prompt say so in words.
_CONTEXT_WORDS = re.compile(r"maximum context length|context length|context window|too many tokens", re.I)


def read_error(status: int, body: bytes) -> ErrorInfo:
    info = json_error_reader(status, body)
    if status == 400 and not info.context_exceeded and _CONTEXT_WORDS.search(info.message):
        return ErrorInfo(info.message, code="context_length_exceeded", context_exceeded=True)
    return info


class OpenAICompatAdapter(HttpAdapter):
    kind = "openai"
    path = "/chat/completions"
    read_error = staticmethod(read_error)

    def __init__(self, name: str, config: HttpBackendConfig) -> None:
        super().__init__(name, config)
        self.continue_url = f"{config.continuation_base_url or config.base_url}{self.path}"

    def payload(self, call: Call, stream: bool) -> dict[str, Any]:
        raw = call.request.raw()
        body = {k: v for k, v in raw.items() if k not in call.drop}
        body["model"] = call.upstream_model
        body["stream"] = stream
        if stream:
            opts = dict(body.get("stream_options") or {})
            if call.want_usage:
                opts["include_usage"] = True
            body["stream_options"] = opts
        else:
            body.pop("stream_options", None)
        if call.prefix:
            body["messages"] = [*raw["messages"], self._prefix_message(call.prefix)]
            if self.config.continuation == "continue_final_message":
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
        return body

    def _prefix_message(self, prefix: str) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": prefix}
        if self.config.continuation == "prefix":
            msg["prefix"] = True
        elif self.config.continuation == "partial":
            msg["partial"] = True
        return msg

    async def complete(self, call: Call) -> ChatResponse:
        url = self.continue_url if call.prefix else self.url
        doc = await self.http.post_json(
            url, self.payload(call, False), self.headers, call.upstream_model, call.timeout
        )
        if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list) or not doc["choices"]:
            raise UpstreamBadResponse("answer has no choices", backend=self.name, model=call.upstream_model)
        if call.prefix:
            _prepend(doc, call.prefix)
        return cast(ChatResponse, doc)

    def stream(self, call: Call) -> SSEChunks:
        url = self.continue_url if call.prefix else self.url
        model = call.upstream_model
        return SSEChunks(self.http, _Events(self.name, model), url, self.payload(call, True), self.headers, model,
                         call.timeout)


class _Events:
    """An OpenAI-compatible stream: one chunk per event, then ``data: [DONE]``."""

    __slots__ = ("backend", "ended", "model")

    def __init__(self, backend: str, model: str) -> None:
        self.backend = backend
        self.model = model
        self.ended = False

    def on(self, event: str, data: str) -> list[ChatChunk]:
        if data == "[DONE]":
            self.ended = True
            return []
        doc = json_object(data, "stream event", backend=self.backend, model=self.model)
        if "error" in doc:
            info = read_error(500, data.encode())
            raise UpstreamServerError(info.message, backend=self.backend, model=self.model)
        if not isinstance(doc.get("choices"), list):
            raise UpstreamBadResponse("stream event has no choices", backend=self.backend, model=self.model)
        return [doc]  # type: ignore[list-item]  # checked above: an object with choices

    def missing_end(self) -> str:
        return "stream ended without [DONE]"


def _prepend(doc: dict[str, Any], prefix: str) -> None:
    """Some backends return only the continuation: give the client the whole answer."""
    msg = doc["choices"][0].get("message") or {}
    content = msg.get("content") or ""
    if not content.startswith(prefix):
        msg["content"] = prefix + content
