"""POST /v1/embeddings through a live gateway with the real ``openai`` SDK, against OpenAI-wire fake upstreams."""

from __future__ import annotations

import copy
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.live import Live, live_gateway
from tests.support.upstreams import FakeUpstream, load
from tests.support.wait import room_in_this_minute

DIMS = 1536  # text-embedding-3-small's, as the catalog says
PRICE = 0.02  # its input price per million tokens
ENV = {"A_KEY": "sk-upstream-a", "B_KEY": "sk-upstream-b", "ALICE": "sk-alice-0123456789abcdef",
       "BOB": "sk-bob-0123456789abcdef", "CAROL": "sk-carol-0123456789abcdef"}


def answer(count: int, reverse: bool = False) -> dict[str, Any]:
    """OpenAI's documented answer for ``count`` inputs: its item once per input, its vector repeated to DIMS
    numbers and told apart per input by its first number."""
    doc = load("openai", "embeddings")
    item = doc["data"][0]
    base = (item["embedding"] * (DIMS // len(item["embedding"]) + 1))[:DIMS]
    data = []
    for i in range(count):
        one = copy.deepcopy(item)
        one["embedding"], one["index"] = [float(i), *base[1:]], i
        data.append(one)
    doc["data"] = data[::-1] if reverse else data
    return doc


def raw(a: FakeUpstream, b: FakeUpstream, db: Path) -> dict[str, Any]:
    small = {"upstream": "text-embedding-3-small", "family": "text-embedding-3-small"}
    return {
        # provider: hosted, and billed at OpenAI's list price, although the fake upstreams listen on loopback.
        "backends": {"a": {"type": "openai", "base_url": a.url, "api_key": "env:A_KEY", "provider": "openai"},
                     "b": {"type": "openai", "base_url": b.url, "api_key": "env:B_KEY", "provider": "openai"},
                     "f": {"type": "fake"}},
        "models": {"small-a": {"backend": "a", **small}, "small-b": {"backend": "b", **small},
                   "qwen-embed": {"backend": "f", "family": "qwen-text-embedding-v4", "upstream": "dims-1024"},
                   "dear": {"backend": "a", **small, "input_per_mtok": 1_000_000.0, "output_per_mtok": 0.0},
                   "chat": {"backend": "f"}},
        "routes": {"embed": {"models": ["small-a", "small-b"]}},
        "store": {"url": f"sqlite:///{db}", "flush_interval": 0.05},
        "keys": {"alice": {"secret": "env:ALICE"}, "bob": {"secret": "env:BOB", "rpm": 1},
                 "carol": {"secret": "env:CAROL", "budget_usd": 1.0}},
    }


@pytest.fixture
def live(first: FakeUpstream, fallback: FakeUpstream, tmp_path: Path) -> Iterator[Live]:
    with live_gateway(raw(first, fallback, tmp_path / "ledger.db"), env=ENV) as g:
        yield g


def client(live: Live, key: str = ENV["ALICE"]) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=key, max_retries=0)


def test_a_string_through_the_sdk_default_base64(live: Live, first: FakeUpstream) -> None:
    first.json(answer(1))
    raw_answer = client(live).embeddings.with_raw_response.create(model="embed", input="The food was delicious")
    resp = raw_answer.parse()
    assert resp.object == "list" and resp.model == "small-a"
    assert [d.index for d in resp.data] == [0] and len(resp.data[0].embedding) == DIMS
    expected = answer(1)["data"][0]["embedding"]
    assert resp.data[0].embedding[:3] == pytest.approx(expected[:3], rel=1e-6)  # float32 both ways
    assert resp.usage.prompt_tokens == 8 and resp.usage.total_tokens == 8
    sent = first.received[0]
    assert sent.path.endswith("/embeddings") and sent.headers["authorization"] == f"Bearer {ENV['A_KEY']}"
    body = sent.json()
    # The SDK asked the gateway for base64; the gateway asks the upstream for floats and encodes them itself.
    assert body == {"model": "text-embedding-3-small", "input": "The food was delicious", "encoding_format": "float"}
    h = raw_answer.headers
    assert (h["x-polyroute-model"], h["x-polyroute-backend"], h["x-polyroute-attempts"]) == ("small-a", "a", "1")
    assert float(h["x-polyroute-cost-usd"]) == pytest.approx(8 * PRICE / 1e6)
    assert h["x-polyroute-request-id"] == h["x-request-id"]


def test_a_list_as_floats_comes_back_in_input_order(live: Live, first: FakeUpstream) -> None:
    first.json(answer(3, reverse=True))
    resp = client(live).embeddings.create(model="embed", input=["one", "two", "three"], encoding_format="float",
                                          dimensions=DIMS)
    assert [d.index for d in resp.data] == [0, 1, 2]
    assert [d.embedding[0] for d in resp.data] == [0.0, 1.0, 2.0]
    assert first.received[0].json()["dimensions"] == DIMS


def test_base64_asked_for_is_openais_float32(live: Live, first: FakeUpstream) -> None:
    import base64
    from array import array

    first.json(answer(1))
    r = httpx.post(f"{live.base_url}/embeddings", json={"model": "embed", "input": [[1, 2, 3]],
                                                         "encoding_format": "base64"},
                   headers={"authorization": f"Bearer {ENV['ALICE']}"}, timeout=10)
    assert r.status_code == 200
    encoded = r.json()["data"][0]["embedding"]
    assert isinstance(encoded, str)
    floats = array("f", base64.b64decode(encoded))
    assert len(floats) == DIMS and floats[1] == pytest.approx(-0.009327292, rel=1e-6)
    assert first.received[0].json()["input"] == [[1, 2, 3]]  # token ids pass on to an OpenAI-wire upstream


def test_a_503_falls_over_to_the_same_model_at_another_backend(live: Live, first: FakeUpstream,
                                                                fallback: FakeUpstream) -> None:
    first.json({"error": {"message": "The server is overloaded", "type": "server_error"}}, status=503)
    fallback.json(answer(2))
    raw_answer = client(live).embeddings.with_raw_response.create(model="embed", input=["a", "b"])
    resp = raw_answer.parse()
    assert resp.model == "small-b" and len(resp.data) == 2
    assert raw_answer.headers["x-polyroute-backend"] == "b" and raw_answer.headers["x-polyroute-attempts"] == "2"
    assert fallback.received[0].headers["authorization"] == f"Bearer {ENV['B_KEY']}"


def test_no_fall_over_to_another_family(live: Live, first: FakeUpstream, fallback: FakeUpstream) -> None:
    for up in (first, fallback):
        up.json({"error": {"message": "down", "type": "server_error"}}, status=503)
    with pytest.raises(openai.APIStatusError) as caught:
        client(live).embeddings.create(model="embed", input="x")
    assert caught.value.status_code in (502, 503)
    assert caught.value.response.headers["x-polyroute-attempts"] == "2"
    assert live.gateway.fleet.adapters["f"].calls == 0  # the other family's model was never asked


def test_an_answer_of_another_length_is_not_taken(live: Live, first: FakeUpstream, fallback: FakeUpstream) -> None:
    first.json(load("openai", "embeddings"))  # three numbers: not text-embedding-3-small's vectors
    fallback.json(answer(1))
    resp = client(live).embeddings.create(model="embed", input="x")
    assert resp.model == "small-b" and len(resp.data[0].embedding) == DIMS


def test_chat_and_embedding_models_refuse_each_other(live: Live) -> None:
    with pytest.raises(openai.BadRequestError) as chat_to_embedder:
        client(live).chat.completions.create(model="embed", messages=[{"role": "user", "content": "hi"}])
    assert "/v1/embeddings" in chat_to_embedder.value.message
    with pytest.raises(openai.BadRequestError) as embed_to_chat:
        client(live).embeddings.create(model="chat", input="hi")
    assert "is a chat model" in embed_to_chat.value.message
    assert embed_to_chat.value.body["param"] == "model"  # type: ignore[index]


@pytest.mark.parametrize("body", [
    {"model": "embed", "input": ""}, {"model": "embed", "input": []}, {"model": "embed", "input": ["a", ""]},
    {"model": "embed", "input": ["a"] * 2049}, {"model": "embed", "input": [1, "a"]},
    {"model": "embed", "input": [[1], []]}, {"model": "embed", "input": [True]}, {"model": "embed"},
    {"model": "embed", "input": "a", "encoding_format": "int8"}, {"model": "embed", "input": "a", "dimensions": 0},
    {"model": "embed", "input": None}, {"model": 3, "input": "a"}, [1, 2],
    {"model": "embed", "input": {"a": 1}}, {"model": "embed", "input": [[1.5]]}, {"model": "embed", "input": [-1]},
    {"model": "embed", "input": [[[1]]]}, {"model": "embed", "input": [["a"]]},
    {"model": "embed", "input": "a", "dimensions": True}, {"model": "embed", "input": "a", "dimensions": "3"},
    {"model": "embed", "input": "a", "encoding_format": None}, {"model": "embed", "input": "a", "user": 5},
])
def test_bad_requests_are_openai_shaped_400s(live: Live, body: object) -> None:
    r = httpx.post(f"{live.base_url}/embeddings", json=body, headers={"authorization": f"Bearer {ENV['ALICE']}"},
                   timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_bodies_that_are_not_json_objects_are_400s(live: Live) -> None:
    for body in (b"", b"{", b"\xff", b'{"model": "embed", "input": ' + b"[" * 5000 + b"]" * 5000 + b"}"):
        r = httpx.post(f"{live.base_url}/embeddings", content=body,
                       headers={"authorization": f"Bearer {ENV['ALICE']}"}, timeout=10)
        assert r.status_code == 400, (body[:40], r.text)


def test_a_keys_rpm_applies(live: Live, first: FakeUpstream) -> None:
    room_in_this_minute()
    first.json(answer(1))
    bob = client(live, ENV["BOB"])
    bob.embeddings.create(model="embed", input="one")
    with pytest.raises(openai.RateLimitError) as caught:
        bob.embeddings.create(model="embed", input="two")
    assert caught.value.response.headers.get("retry-after")
    assert len(first.received) == 1


def test_a_keys_budget_applies_at_the_models_input_price(live: Live, first: FakeUpstream) -> None:
    with pytest.raises(openai.APIStatusError) as caught:  # about 3 tokens at $1 each: past a $1 budget
        client(live, ENV["CAROL"]).embeddings.create(model="dear", input="a few words here")
    assert caught.value.status_code == 402
    assert not first.received


def test_the_ledger_row_has_the_tokens_and_the_cost(live: Live, first: FakeUpstream, tmp_path: Path) -> None:
    first.json(answer(1))
    resp = client(live).embeddings.with_raw_response.create(model="embed", input="count me")
    ledger = live.gateway.tenancy.ledger
    assert ledger is not None and ledger.flush()
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM usage")]
    assert len(rows) == 1
    row = rows[0]
    assert (row["key"], row["route"], row["model"], row["backend"], row["status"]) == (
        "alice", "embed", "small-a", "a", 200)
    assert (row["tokens_in"], row["tokens_out"]) == (8, 0)
    assert row["cost_usd"] == pytest.approx(8 * PRICE / 1e6)
    assert row["request_id"] == resp.headers["x-polyroute-request-id"]
    usage = httpx.get(f"{live.base_url}/usage", headers={"authorization": f"Bearer {ENV['ALICE']}"}, timeout=10)
    assert usage.status_code == 200


def test_a_429_with_retry_after_benches_that_offer_until_then(live: Live, first: FakeUpstream,
                                                               fallback: FakeUpstream) -> None:
    first.json({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
               status=429, headers={"retry-after": "30"})
    fallback.json(answer(1))
    fallback.json(answer(1))
    assert client(live).embeddings.create(model="embed", input="x").model == "small-b"
    raw_answer = client(live).embeddings.with_raw_response.create(model="embed", input="y")
    assert raw_answer.parse().model == "small-b" and raw_answer.headers["x-polyroute-attempts"] == "1"
    assert len(first.received) == 1  # not asked again before its Retry-After


def test_the_path_without_v1_is_served_too(live: Live, first: FakeUpstream) -> None:
    first.json(answer(1))
    r = httpx.post(f"{live.root}/embeddings", json={"model": "embed", "input": "x"},
                   headers={"authorization": f"Bearer {ENV['ALICE']}"}, timeout=10)
    assert r.status_code == 200 and r.json()["object"] == "list"


def test_the_routing_decision_is_explained_on_request(live: Live, first: FakeUpstream) -> None:
    import json

    first.json(answer(1))
    r = httpx.post(f"{live.base_url}/embeddings", json={"model": "embed", "input": "some words to embed"},
                   headers={"authorization": f"Bearer {ENV['ALICE']}", "x-polyroute-explain": "1"}, timeout=10)
    decision = json.loads(r.headers["x-polyroute-route-explain"])
    assert [m["model"] for m in decision["order"]] == ["small-a", "small-b"]
    assert decision["request"]["needs"] == ["embeddings"] and decision["request"]["output_tokens_est"] == 0
