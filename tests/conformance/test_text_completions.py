"""One conformance suite for text completions (``complete_text``, ``stream_text``) over every adapter that has
them: ``openai`` (against a fake upstream answering as OpenAI documents), ``fake`` and ``llamacpp`` (the bundled
SmolLM2, greedily, for a few tokens). The others say why they have none, and are never asked."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from polyroute.adapters import Adapter, build_adapter
from polyroute.completions.types import CompletionRequest, TextCall, TextChunk
from polyroute.config import AnthropicBackend, BackendConfig, FakeBackend, LlamaCppBackend, OllamaBackend, OpenAIBackend
from polyroute.embedded import smollm2_path
from polyroute.errors import UpstreamRejected
from tests.conformance.providers import PROVIDERS
from tests.support.upstreams import OPENAI, FakeUpstream, load

pytestmark = pytest.mark.anyio

PROMPT = "Say this is a test"


@dataclass(frozen=True)
class Texter:
    name: str
    model: str

    def __str__(self) -> str:
        return self.name


TEXTERS = [Texter("openai", "gpt-3.5-turbo-instruct"), Texter("fake", "text-This-is-indeed-a-test"),
           Texter("llamacpp", "smollm2-135m")]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(OPENAI) as server:
        yield server


def config(name: str, upstream: FakeUpstream) -> BackendConfig:
    if name == "fake":
        return FakeBackend(type="fake")
    if name == "llamacpp":
        return LlamaCppBackend(type="llamacpp", model_path=str(smollm2_path()), n_ctx=512, n_threads=1)
    return wire_config("openai", upstream)


def wire_config(name: str, upstream: FakeUpstream) -> BackendConfig:
    """The conformance suite's config of provider ``name``, pointed at ``upstream``."""
    built = next(p for p in PROVIDERS if p.name == name).config(upstream.url)
    assert isinstance(built, OpenAIBackend | AnthropicBackend | OllamaBackend)
    return built


@pytest.fixture(params=TEXTERS, ids=str)
async def texter(request: pytest.FixtureRequest, upstream: FakeUpstream) -> AsyncIterator[tuple[Texter, Adapter]]:
    which: Texter = request.param
    built = build_adapter(f"{which.name}-test", config(which.name, upstream))
    await built.start()
    upstream.reset()
    yield which, built
    await built.aclose()


def text_call(model: str, **fields: Any) -> TextCall:
    req = CompletionRequest.from_json({"model": "client-name", "prompt": PROMPT, "max_tokens": 7, "temperature": 0,
                                       "seed": 1, **fields})
    return TextCall(req, model)


async def test_a_whole_completion_has_openais_shape(texter: tuple[Texter, Adapter], upstream: FakeUpstream) -> None:
    which, adapter = texter
    upstream.json(load("openai", "text_completion"))
    assert adapter.text_refusal(text_call(which.model).request, which.model) is None
    got = await adapter.complete_text(text_call(which.model))
    assert got["object"] == "text_completion" and got["id"]
    [choice] = got["choices"]
    assert choice["index"] == 0 and isinstance(choice["text"], str) and choice["text"]
    assert choice["finish_reason"] in ("stop", "length")
    usage = got.get("usage")
    assert usage is not None and 0 < usage["completion_tokens"] <= 7
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_a_stream_joins_to_the_whole_completion_and_ends_with_usage(texter: tuple[Texter, Adapter],
                                                                          upstream: FakeUpstream) -> None:
    which, adapter = texter
    upstream.json(load("openai", "text_completion"))
    upstream.stream(load("openai", "text_completion_stream"))
    whole = (await adapter.complete_text(text_call(which.model)))["choices"][0]
    chunks: list[TextChunk] = [c async for c in adapter.stream_text(text_call(which.model, stream=True))]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(ch["text"] for c in chunks for ch in c["choices"]) == whole["text"]
    assert [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]] == [
        whole["finish_reason"]]
    assert chunks[-1]["choices"] == [] and chunks[-1].get("usage") is not None
    assert len({c["id"] for c in chunks}) == 1


@pytest.mark.parametrize("name", ["anthropic", "ollama"])
async def test_a_wire_without_text_completions_says_so_and_refuses(name: str, upstream: FakeUpstream) -> None:
    adapter = build_adapter(f"{name}-test", wire_config(name, upstream))
    try:
        call = text_call("m")
        assert adapter.text_refusal(call.request, "m") == (
            "model", f"backends of type {name!r} have no text completions endpoint")
        with pytest.raises(UpstreamRejected):
            await adapter.complete_text(call)
        assert not upstream.received
    finally:
        await adapter.aclose()
