"""Embeddings from Mistral and from Gemini's OpenAI-compatible endpoint, through a live gateway and the openai SDK.

Each fake upstream answers with the provider's documented body; what the gateway sent is checked against what
the provider documents it takes (polyroute.embeddings.dialects).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.live import Live, live_gateway
from tests.support.upstreams import OPENAI, FakeUpstream, load

ENV = {"MISTRAL_KEY": "sk-mistral-test", "GEMINI_KEY": "gemini-test-key"}


def stretched(doc: dict[str, Any], length: int) -> dict[str, Any]:
    """A documented answer whose vectors (elided there after a few numbers) are repeated to ``length`` numbers."""
    out = copy.deepcopy(doc)
    for item in out["data"]:
        item["embedding"] = (item["embedding"] * length)[:length]
    return out


@pytest.fixture
def mistral() -> Iterator[FakeUpstream]:
    with FakeUpstream(OPENAI) as server:
        yield server


@pytest.fixture
def gemini() -> Iterator[FakeUpstream]:
    with FakeUpstream(OPENAI) as server:
        yield server


@pytest.fixture
def live(mistral: FakeUpstream, gemini: FakeUpstream) -> Iterator[Live]:
    embeds = {"capabilities": ["embeddings"]}
    config = {
        # provider names who runs each endpoint, as it would for https://api.mistral.ai/v1 and
        # https://generativelanguage.googleapis.com/v1beta/openai (the fakes listen on loopback).
        "backends": {"mistral": {"type": "openai", "base_url": mistral.url, "api_key": "env:MISTRAL_KEY",
                                 "provider": "mistral"},
                     "gemini": {"type": "openai", "base_url": gemini.url, "api_key": "env:GEMINI_KEY",
                                "provider": "gemini"}},
        "models": {"mistral-embed": {"backend": "mistral", "upstream": "mistral-embed", **embeds},
                   "codestral-embed": {"backend": "mistral", "upstream": "codestral-embed", **embeds},
                   "gemini-embed": {"backend": "gemini", "upstream": "gemini-embedding-001", **embeds}},
    }
    with live_gateway(config, env=ENV) as g:
        yield g


def client(live: Live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)


# -- Mistral -----------------------------------------------------------------------------------


def test_mistrals_documented_answer_reaches_the_sdk(live: Live, mistral: FakeUpstream) -> None:
    mistral.json(load("mistral", "embeddings"))
    resp = client(live).embeddings.create(model="mistral-embed", input=["Embed this sentence.",
                                                                        "As well as this one."])
    assert [d.index for d in resp.data] == [0, 1] and resp.model == "mistral-embed"
    assert resp.data[0].embedding == pytest.approx([-0.0165863037109375])
    assert resp.data[1].embedding == pytest.approx([-0.0234222412109375])
    assert resp.usage.prompt_tokens == 15
    sent = mistral.received[0]
    assert sent.path.endswith("/embeddings") and sent.headers["authorization"] == f"Bearer {ENV['MISTRAL_KEY']}"
    assert sent.json() == {"model": "mistral-embed", "input": ["Embed this sentence.", "As well as this one."],
                           "encoding_format": "float"}


def test_dimensions_reach_mistral_as_output_dimension_and_user_is_left_out(live: Live,
                                                                          mistral: FakeUpstream) -> None:
    """Mistral names the field output_dimension and refuses fields it does not define, such as OpenAI's user."""
    mistral.json(stretched(load("mistral", "embeddings"), 256))
    resp = client(live).embeddings.create(model="codestral-embed", input=["def f(): pass", "class A: pass"],
                                          dimensions=256, user="end-user-7", encoding_format="float")
    assert [len(d.embedding) for d in resp.data] == [256, 256]
    assert mistral.received[0].json() == {"model": "codestral-embed", "input": ["def f(): pass", "class A: pass"],
                                          "encoding_format": "float", "output_dimension": 256}


def test_output_dtype_float_is_sent_on_and_another_is_refused_by_name(live: Live, mistral: FakeUpstream) -> None:
    mistral.json(load("mistral", "embeddings"))
    client(live).embeddings.create(model="codestral-embed", input=["a", "b"], extra_body={"output_dtype": "float"})
    assert mistral.received[0].json()["output_dtype"] == "float"
    with pytest.raises(openai.BadRequestError) as caught:
        client(live).embeddings.create(model="codestral-embed", input=["a"], extra_body={"output_dtype": "int8"})
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "output_dtype" and "int8" in body["message"]
    assert len(mistral.received) == 1  # the refused request never left the gateway


def test_token_ids_for_mistral_are_a_400_naming_input(live: Live, mistral: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(live).embeddings.create(model="mistral-embed", input=[[791, 3691, 574]])
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "input" and "not token ids" in body["message"]
    assert mistral.received == []


def test_mistrals_batch_token_limit_is_openais_context_length_error(live: Live, mistral: FakeUpstream) -> None:
    doc = load("mistral", "errors/400_too_many_tokens_in_batch")
    mistral.json(doc["body"], status=doc["status"])
    with pytest.raises(openai.BadRequestError) as caught:
        client(live).embeddings.create(model="mistral-embed", input=["many words"] * 3)
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "context_length_exceeded"
    assert "Too many tokens in batch" in body["message"]


# -- Gemini ------------------------------------------------------------------------------------


def test_gemini_answers_in_openais_shape_and_dimensions_go_as_they_came(live: Live, gemini: FakeUpstream) -> None:
    """Google's compatibility guide has no example answer: its endpoint answers OpenAI's shape, as OpenAI's
    documented answer (three numbers long) stands in for it here."""
    gemini.json(load("openai", "embeddings"))
    resp = client(live).embeddings.create(model="gemini-embed", input="What is the meaning of life?", dimensions=3)
    assert len(resp.data) == 1 and len(resp.data[0].embedding) == 3 and resp.model == "gemini-embed"
    sent = gemini.received[0]
    assert sent.headers["authorization"] == f"Bearer {ENV['GEMINI_KEY']}"
    assert sent.json() == {"model": "gemini-embedding-001", "input": "What is the meaning of life?",
                           "encoding_format": "float", "dimensions": 3}


def test_vectors_of_another_length_than_asked_are_refused(live: Live, gemini: FakeUpstream) -> None:
    """Google does not document dimensions on this endpoint: an answer that ignored them never reaches an index."""
    gemini.json(load("openai", "embeddings"))
    with pytest.raises(openai.APIStatusError) as caught:
        client(live).embeddings.create(model="gemini-embed", input="x", dimensions=768)
    assert caught.value.status_code == 502
    assert "3 dimensions, not 768" in caught.value.message


def test_more_than_100_inputs_for_gemini_are_a_400_before_anything_is_sent(live: Live, gemini: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(live).embeddings.create(model="gemini-embed", input=[f"document {i}" for i in range(101)])
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "input" and "at most 100 inputs" in body["message"]
    assert gemini.received == []


def test_token_ids_for_gemini_are_a_400_naming_input(live: Live, gemini: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(live).embeddings.create(model="gemini-embed", input=[1, 2, 3])
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "input"
    assert gemini.received == []


def test_googles_own_batch_refusal_reaches_the_client_in_its_words(live: Live, gemini: FakeUpstream) -> None:
    """Should Google lower its limit, its refusal is the client's 400, not a failover."""
    doc = load("gemini", "errors/400_batch_embed_over_100")
    gemini.json(doc["body"], status=doc["status"])
    with pytest.raises(openai.BadRequestError) as caught:
        client(live).embeddings.create(model="gemini-embed", input=["a"] * 100)
    assert "at most 100 requests can be in one batch" in caught.value.message
    assert len(gemini.received) == 1
