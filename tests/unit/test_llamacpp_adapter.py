"""The llama.cpp adapter against the real embedded model (SmolLM2-135M, no mocks).

Answers are kept to a few tokens so the module runs in seconds on two cores.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import pytest

from polyroute import embedded
from polyroute.adapters.base import Call
from polyroute.adapters.llamacpp import LlamaCppAdapter
from polyroute.config import LlamaCppBackend, parse
from polyroute.errors import ConfigError, UpstreamContextExceeded, UpstreamRateLimited
from polyroute.types import ChatChunk, ChatRequest, ChatResponse, chunk_text
from tests.support.wait import await_until

MODEL = embedded.LOCAL_MODEL
N_CTX = 2048


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def adapter() -> AsyncIterator[LlamaCppAdapter]:
    # One thread: two OpenMP threads on two cores that other test runs also use spin at
    # barriers and run many times slower.
    path = str(embedded.smollm2_path())
    config = LlamaCppBackend(type="llamacpp", model_path=path, n_ctx=N_CTX, n_threads=1, max_queue=1)
    a = LlamaCppAdapter(embedded.LOCAL_BACKEND, config)
    await a.start()
    yield a
    await a.aclose()


def call(text: str, max_tokens: int = 12, prefix: str | None = None, **extra: Any) -> Call:
    req = ChatRequest(
        model=MODEL,
        messages=[{"role": "user", "content": text}],
        temperature=0,
        seed=42,
        max_tokens=max_tokens,
        **extra,
    )
    return Call(req, MODEL, prefix=prefix)


def joined(chunks: list[ChatChunk]) -> str:
    return "".join(chunk_text(c) for c in chunks)


def content(resp: ChatResponse) -> str:
    text = resp["choices"][0]["message"]["content"]
    assert isinstance(text, str)
    return text


def open_stream(adapter: LlamaCppAdapter, c: Call) -> AsyncGenerator[ChatChunk, None]:
    return cast(AsyncGenerator[ChatChunk, None], adapter.stream(c))


QUESTION = "What is the capital of France?"
# Greedy decoding counts until the context is full: about a minute uncancelled.
LONG = "Write the numbers from 1 to 1000, one per line."

pytestmark = pytest.mark.anyio


async def test_complete_returns_text_and_usage(adapter: LlamaCppAdapter) -> None:
    resp = await adapter.complete(call(QUESTION))
    assert content(resp).strip()
    assert resp["model"] == MODEL
    usage = resp["usage"]
    assert usage["prompt_tokens"] > 10
    assert 0 < usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_stream_matches_complete(adapter: LlamaCppAdapter) -> None:
    whole = await adapter.complete(call(QUESTION))
    chunks = [c async for c in adapter.stream(call(QUESTION))]
    tokens = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(tokens) >= 2  # token by token, not one lump
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert chunks[-1]["choices"] == [] and chunks[-1].get("usage") == whole["usage"]
    assert joined(chunks) == content(whole)


async def test_queue_bound_refuses_the_third_request(adapter: LlamaCppAdapter) -> None:
    results = await asyncio.gather(*(adapter.complete(call(QUESTION, 8)) for _ in range(3)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1
    err = refused[0]
    assert isinstance(err, UpstreamRateLimited)
    assert err.message == "local model queue is full"
    assert err.retry_after is not None and err.retry_after > 0
    assert err.may_fall_over and err.backend == embedded.LOCAL_BACKEND
    # Queued in arrival order: the first two were served, the last one refused.
    assert isinstance(results[2], UpstreamRateLimited)


async def test_closing_a_stream_stops_generation(adapter: LlamaCppAdapter) -> None:
    started = time.monotonic()
    await adapter.complete(call(QUESTION, 8))
    baseline = time.monotonic() - started

    stream = open_stream(adapter, call(LONG, N_CTX))
    tokens = 0
    async for chunk in stream:
        tokens += bool(chunk_text(chunk))
        if tokens == 2:
            break
    await stream.aclose()

    started = time.monotonic()
    resp = await adapter.complete(call(QUESTION, 8))
    waited = time.monotonic() - started
    assert content(resp)
    # The abandoned answer had some 2,000 tokens to go, hundreds of times the baseline.
    assert waited < 5 * baseline + 2, (waited, baseline)


async def test_cancelled_waiting_request_leaves_the_queue(adapter: LlamaCppAdapter) -> None:
    running = open_stream(adapter, call(LONG, N_CTX))
    await anext(running)
    waiting = asyncio.create_task(adapter.complete(call(QUESTION, 8)))
    await await_until(lambda: adapter._pending == 2, what="the second request queued")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # max_queue=1: this request fits only because the cancelled one left its place.
    after = asyncio.create_task(adapter.complete(call(QUESTION, 8)))
    await await_until(lambda: adapter._pending == 2, what="the third request queued")
    await running.aclose()
    resp = await asyncio.wait_for(after, 30)
    assert content(resp)


async def test_cancelled_complete_stops_generation(adapter: LlamaCppAdapter) -> None:
    started = time.monotonic()
    await adapter.complete(call(QUESTION, 8))
    baseline = time.monotonic() - started
    long = asyncio.create_task(adapter.complete(call(LONG, N_CTX)))
    await await_until(lambda: adapter._current is not None, what="the long generation running")
    long.cancel()
    started = time.monotonic()
    resp = await adapter.complete(call(QUESTION, 8))
    assert content(resp)
    assert long.cancelled()
    # The cancelled answer had some 2,000 tokens to go, hundreds of times the baseline.
    assert time.monotonic() - started < 5 * baseline + 2


async def test_continuation_extends_the_prefix(adapter: LlamaCppAdapter) -> None:
    prefix = "The capital of France is"
    resp = await adapter.complete(call(QUESTION, 8, prefix=prefix))
    text = content(resp)
    assert text.startswith(prefix) and len(text) > len(prefix)
    assert "Paris" in text
    chunks = [c async for c in adapter.stream(call(QUESTION, 8, prefix=prefix))]
    # A stream sends only what follows the prefix the client already has.
    assert prefix + joined(chunks) == text
    assert chunks[-1].get("usage") == resp["usage"]
    assert adapter.can_continue


async def test_prompt_longer_than_context_is_context_exceeded(adapter: LlamaCppAdapter) -> None:
    huge = "word " * (N_CTX * 2)
    with pytest.raises(UpstreamContextExceeded) as info:
        await adapter.complete(call(huge, 4))
    assert info.value.may_fall_over and info.value.status == 400
    with pytest.raises(UpstreamContextExceeded):
        _ = [c async for c in adapter.stream(call(huge, 4))]
    resp = await adapter.complete(call(QUESTION, 4))
    assert content(resp)


async def test_json_object_is_constrained_by_grammar(adapter: LlamaCppAdapter) -> None:
    resp = await adapter.complete(call("Describe a cat as a JSON object.", 40, response_format={"type": "json_object"}))
    text = content(resp)
    assert text.lstrip().startswith("{")
    if resp["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(text), dict)


def test_tools_are_not_claimed() -> None:
    assert "tools" not in LlamaCppAdapter.supports
    assert {"response_format", "seed", "stop", "temperature", "top_p", "max_tokens"} <= LlamaCppAdapter.supports


def test_embedded_model_is_found() -> None:
    path = embedded.smollm2_path()
    assert path.is_file() and path.name == embedded.GGUF_FILE


def test_missing_embedded_model_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'polyroute\[local\]'"):
        embedded.smollm2_path()


def test_missing_model_file_is_refused_by_the_config(tmp_path: Any) -> None:
    raw = {"backends": {"broken": {"type": "llamacpp", "model_path": str(tmp_path / "absent.gguf")}}}
    with pytest.raises(ConfigError) as info:
        parse(raw, source="gw.toml")
    assert str(info.value).startswith(f"gw.toml: backends.broken.model_path: model file not found: {tmp_path}")


async def test_model_file_gone_after_the_config_was_read_is_a_config_error(tmp_path: Any) -> None:
    path = tmp_path / "gone.gguf"
    path.write_bytes(b"")
    config = LlamaCppBackend(type="llamacpp", model_path=str(path))
    path.unlink()
    with pytest.raises(ConfigError, match=r"backends\.broken\.model_path: model file not found"):
        await LlamaCppAdapter("broken", config).start()
