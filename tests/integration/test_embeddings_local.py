"""Embeddings from the bundled SmolLM2 through llama.cpp (a second, embedding-mode instance), and the fake's."""

from __future__ import annotations

import math
from collections.abc import Iterator

import openai
import pytest

from tests.support.live import Live, live_gateway

SIMILAR = ("The cat sat on the mat.", "A cat was sitting on the rug.")
UNRELATED = "Quarterly revenue rose by eight percent in Europe."


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    config = {
        "backends": {"local": {"type": "llamacpp", "model_path": "embedded", "n_ctx": 512, "n_threads": 1},
                     "f": {"type": "fake"}},
        "models": {"smol": {"backend": "local", "family": "smollm2-135m"},
                   "smol-embed": {"backend": "local", "family": "smollm2-135m", "capabilities": ["embeddings"]},
                   "fake-embed": {"backend": "f", "capabilities": ["embeddings"]}},
    }
    with live_gateway(config) as g:
        yield g


def test_similar_sentences_lie_closer_than_an_unrelated_one(live: Live) -> None:
    client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
    raw = client.embeddings.with_raw_response.create(model="smol-embed", input=[*SIMILAR, UNRELATED])
    resp = raw.parse()
    a, b, c = (d.embedding for d in resp.data)
    assert len(a) == len(b) == len(c) == 576  # SmolLM2-135M's hidden size
    assert math.sqrt(sum(x * x for x in a)) == pytest.approx(1.0, abs=1e-3)  # normalised, as OpenAI's are
    # A poor embedder, but a real one: the margin seen is about 0.2; a tenth leaves room for other builds.
    assert cosine(a, b) > cosine(a, c) + 0.1
    assert resp.usage.prompt_tokens > 0
    assert raw.headers["x-polyroute-backend"] == "local" and float(raw.headers["x-polyroute-cost-usd"]) == 0.0


def test_the_same_backend_still_chats(live: Live) -> None:
    client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
    resp = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert resp.choices[0].message.content is not None


def test_llamacpp_refuses_token_ids_and_dimensions_naming_them(live: Live) -> None:
    client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as tokens:
        client.embeddings.create(model="smol-embed", input=[[1, 2, 3]])
    assert tokens.value.body["param"] == "input"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as dims:
        client.embeddings.create(model="smol-embed", input="x", dimensions=64)
    assert dims.value.body["param"] == "dimensions"  # type: ignore[index]


def test_an_input_longer_than_the_window_is_openais_context_length_exceeded(live: Live) -> None:
    client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="smol-embed", input=["short", "word " * 600])  # ~750 tokens; n_ctx is 512
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.body["param"] == "input"  # type: ignore[index]


def test_the_fake_backends_vectors_are_deterministic_and_share_words(live: Live) -> None:
    client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
    first = client.embeddings.create(model="fake-embed", input=[*SIMILAR, UNRELATED], encoding_format="float")
    again = client.embeddings.create(model="fake-embed", input=SIMILAR[0], dimensions=16)
    a, b, c = (d.embedding for d in first.data)
    assert len(a) == 16 and again.data[0].embedding == pytest.approx(a)
    assert cosine(a, b) > cosine(a, c)


def test_the_fake_refuses_absurd_dimensions_as_the_clients_error(live: Live) -> None:
    client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="fake-embed", input="x", dimensions=99_999_999)
    assert "at most 8192 dimensions" in caught.value.message
