"""Embeddings from an Ollama server's native /api/embed, through a live gateway and the openai SDK."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.live import Live, live_gateway
from tests.support.upstreams import OLLAMA, FakeUpstream, load


@pytest.fixture
def ollama() -> Iterator[FakeUpstream]:
    with FakeUpstream(OLLAMA) as server:
        yield server


@pytest.fixture
def live(ollama: FakeUpstream) -> Iterator[Live]:
    config = {"backends": {"box": {"type": "ollama", "base_url": ollama.url}},
              "models": {"minilm": {"backend": "box", "upstream": "all-minilm", "capabilities": ["embeddings"]}}}
    with live_gateway(config) as g:
        yield g


def test_ollamas_embed_answer_reaches_the_sdk(live: Live, ollama: FakeUpstream) -> None:
    ollama.json(load("ollama", "embed"))
    client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
    resp = client.embeddings.create(model="minilm", input="Why is the sky blue?", dimensions=10)
    expected = load("ollama", "embed")["embeddings"][0]
    assert resp.data[0].embedding == pytest.approx(expected, rel=1e-6)
    assert resp.usage.prompt_tokens == 8 and resp.model == "minilm"
    sent = ollama.received[0]
    assert sent.path == "/api/embed"
    assert sent.json() == {"model": "all-minilm", "input": ["Why is the sky blue?"], "truncate": False,
                           "dimensions": 10}


def test_an_ollama_model_not_pulled_is_a_clear_error(live: Live, ollama: FakeUpstream) -> None:
    ollama.json({"error": "model \"all-minilm\" not found, try pulling it first"}, status=404)
    client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.embeddings.create(model="minilm", input="x")
    assert caught.value.status_code == 502 and "not found" in caught.value.message
