"""The request and answers every conformance scenario shares."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from openai.lib.streaming._deltas import accumulate_delta

from polyroute.adapters import Adapter, Call
from polyroute.types import ChatChunk, ChatRequest
from tests.support.upstreams import has_fixture, load

MODEL = "test-model"
ANSWER = "Hello! How can I help you today?"
USAGE = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
TOOL_USAGE = {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


def call(prefix: str | None = None, upstream: str = MODEL, **fields: Any) -> Call:
    raw = {"model": "client-name", "messages": [{"role": "user", "content": "Hi"}], **fields}
    return Call(ChatRequest.from_json(raw), upstream, prefix=prefix)


async def collect(adapter: Adapter, c: Call, into: list[ChatChunk] | None = None) -> list[ChatChunk]:
    chunks = [] if into is None else into
    async for chunk in adapter.stream(c):
        chunks.append(chunk)
    return chunks


def content(chunks: list[ChatChunk]) -> str:
    return "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])


def finishes(chunks: list[ChatChunk]) -> list[str]:
    return [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]]


def fixture(provider: str, name: str) -> Any:
    """A provider's fixture; the test is skipped where the provider documents no such example."""
    if not has_fixture(provider, name):
        pytest.skip(f"{provider}: no documented example for '{name}'")
    return load(provider, name)


def as_sdk_reads(chunks: list[ChatChunk]) -> dict[str, Any]:
    """The message OpenAI's Python SDK builds from a stream's deltas, by its own joining rule."""
    message: dict[str, Any] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            message = accumulate_delta(message, copy.deepcopy(dict(choice["delta"])))
    return message
