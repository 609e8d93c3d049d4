"""Shared by the failover unit tests: a gateway on fake backends, and a scripted adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from polyroute import config as cfg
from polyroute.adapters import Adapter, Call
from polyroute.adapters.base import make_chunk, usage_chunk
from polyroute.catalog import load_catalog
from polyroute.config import BackendBase
from polyroute.errors import UpstreamContextExceeded, UpstreamUnavailable
from polyroute.failover import Report
from polyroute.gateway import Gateway, RequestContext
from polyroute.types import ChatChunk, ChatRequest, ChatResponse, make_usage


class Scripted(Adapter):
    """Behaviours the fake adapter has no name for, chosen by the upstream model id."""

    kind = "fake"

    def __init__(self, name: str, config: BackendBase) -> None:
        super().__init__(name, config)
        self.closed = 0

    async def complete(self, call: Call) -> ChatResponse:
        if call.upstream_model == "ctx":
            raise UpstreamContextExceeded("maximum context length is 8192", backend=self.name, model="ctx")
        return {
            "id": "chatcmpl-s", "object": "chat.completion", "created": 1, "model": call.upstream_model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "scripted"}, "finish_reason": "stop"}],
            "usage": make_usage(3, 1),
        }

    async def stream(self, call: Call) -> AsyncIterator[ChatChunk]:
        model = call.upstream_model
        try:
            if model == "ctx":
                raise UpstreamContextExceeded("maximum context length is 8192", backend=self.name, model=model)
            if model == "empty":
                return
            yield make_chunk("c1", model, {"role": "assistant", "content": ""})
            if model == "toolcut":
                tool = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{"}}
                yield make_chunk("c1", model, {"tool_calls": [tool]})
                raise UpstreamUnavailable("reset", backend=self.name, model=model)
            yield make_chunk("c1", model, {"content": "whole answer"})
            yield make_chunk("c1", model, {}, "stop")
            if model == "finishcut":
                raise UpstreamUnavailable("stream ended without [DONE]", backend=self.name, model=model)
            if model != "nousage":
                yield usage_chunk("c1", model, make_usage(3, 2))
        finally:
            self.closed += 1


def gateway(raw: dict[str, Any]) -> Gateway:
    gw = Gateway.from_config(cfg.parse(raw, source="<test>", env={}), load_catalog())
    for name, adapter in list(gw.fleet.adapters.items()):
        if name.startswith("s"):  # backends named s... run the scripted adapter
            gw.fleet.adapters[name] = Scripted(name, adapter.config)
    return gw


def request(stream: bool = False, model: str = "r", **extra: Any) -> ChatRequest:
    return ChatRequest.from_json({"model": model, "stream": stream,
                                  "messages": [{"role": "user", "content": "one two three"}], **extra})


def config(*models: tuple[str, str, str], **route: Any) -> dict[str, Any]:
    """A config with the given (name, backend, upstream) models and one route ``r`` over them."""
    backends = {b: {"type": "fake"} for _, b, _ in models}
    backends.update({b: {"type": "fake", "continuation": "none"} for _, b, _ in models if b.startswith("nc")})
    return {
        "backends": backends,
        "models": {name: {"backend": b, "upstream": up} for name, b, up in models},
        "routes": {"r": {"models": [name for name, _, _ in models], **route}},
    }


async def collect(gw: Gateway, req: ChatRequest) -> tuple[list[ChatChunk], Report, BaseException | None]:
    chunks, report = gw.stream(req, RequestContext())
    out: list[ChatChunk] = []
    try:
        async for chunk in chunks:
            out.append(chunk)
    except Exception as exc:
        return out, report, exc
    return out, report, None


def text(chunks: list[ChatChunk]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def outcomes(report: Report) -> list[tuple[str, str]]:
    return [(a.model, a.outcome) for a in report.attempts]
