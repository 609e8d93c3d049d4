"""POST /v1/completions through a live gateway with the real ``openai`` SDK, against OpenAI-wire fake upstreams
answering as OpenAI's documented text completion and its stream."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.live import Live, live_gateway
from tests.support.upstreams import FakeUpstream, load
from tests.support.wait import wait_until

ENV = {"A_KEY": "sk-upstream-a", "B_KEY": "sk-upstream-b", "C_KEY": "sk-upstream-c",
       "ALICE": "sk-alice-0123456789abcdef", "CAROL": "sk-carol-0123456789abcdef"}
INPUT, OUTPUT = 1.5, 2.0  # the config's prices per million tokens
DOCUMENTED = "\n\nThis is indeed a test"  # OpenAI's documented answer


def raw(a: FakeUpstream, b: FakeUpstream, db: Path) -> dict[str, Any]:
    instruct = {"upstream": "gpt-3.5-turbo-instruct", "input_per_mtok": INPUT, "output_per_mtok": OUTPUT}
    return {
        "backends": {"a": {"type": "openai", "base_url": a.url, "api_key": "env:A_KEY"},
                     "b": {"type": "openai", "base_url": b.url, "api_key": "env:B_KEY"},
                     "c": {"type": "anthropic", "base_url": b.url, "api_key": "env:C_KEY"},
                     "f": {"type": "fake"}},
        "models": {"inst-a": {"backend": "a", **instruct}, "inst-b": {"backend": "b", **instruct},
                   "claude": {"backend": "c", "upstream": "claude-sonnet-4-5"},
                   "echo": {"backend": "f"}, "cutter": {"backend": "f", "upstream": "cut-2"},
                   "dear": {"backend": "a", "upstream": "gpt-3.5-turbo-instruct", "input_per_mtok": 1_000_000.0,
                            "output_per_mtok": 1_000_000.0}},
        "routes": {"instruct": {"models": ["inst-a", "inst-b"]}, "mixed": {"models": ["claude", "inst-a"]},
                   "claude-only": {"models": ["claude"]}},
        "store": {"url": f"sqlite:///{db}", "flush_interval": 0.05},
        "metrics": {"public": True},
        "keys": {"alice": {"secret": "env:ALICE"}, "carol": {"secret": "env:CAROL", "budget_usd": 1.0, "rpm": 100}},
    }


@pytest.fixture
def live(first: FakeUpstream, fallback: FakeUpstream, tmp_path: Path) -> Iterator[Live]:
    with live_gateway(raw(first, fallback, tmp_path / "ledger.db"), env=ENV) as g:
        yield g


@pytest.fixture(scope="module")
def bare() -> Iterator[Live]:
    """A gateway that answers with the fake alone, for requests refused before any upstream."""
    config = {"backends": {"f": {"type": "fake"}}, "models": {"instruct": {"backend": "f"}},
              "keys": {"alice": {"secret": "env:ALICE"}}}
    with live_gateway(config, env=ENV) as g:
        yield g


def client(live: Live, key: str = ENV["ALICE"]) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key=key, max_retries=0)


def post(live: Live, body: object, path: str = "/completions") -> httpx.Response:
    return httpx.post(f"{live.base_url}{path}", json=body, headers={"authorization": f"Bearer {ENV['ALICE']}"},
                      timeout=10)


def test_a_whole_completion_through_the_sdk(live: Live, first: FakeUpstream) -> None:
    first.json(load("openai", "text_completion"))
    raw_answer = client(live).completions.with_raw_response.create(
        model="instruct", prompt="Say this is a test", max_tokens=7, temperature=0)
    resp = raw_answer.parse()
    assert resp.object == "text_completion" and resp.model == "inst-a" and resp.id == "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7"
    assert [(c.index, c.text, c.finish_reason) for c in resp.choices] == [(0, DOCUMENTED, "length")]
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (5, 7)
    sent = first.received[0]
    assert sent.path == "/completions" and sent.headers["authorization"] == f"Bearer {ENV['A_KEY']}"
    assert sent.json() == {"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test", "max_tokens": 7,
                           "temperature": 0, "stream": False}
    h = raw_answer.headers
    assert (h["x-polyroute-model"], h["x-polyroute-backend"], h["x-polyroute-attempts"]) == ("inst-a", "a", "1")
    assert float(h["x-polyroute-cost-usd"]) == pytest.approx((5 * INPUT + 7 * OUTPUT) / 1e6)
    assert h["x-polyroute-request-id"] == h["x-request-id"]


def test_openais_defaults_reach_the_upstream_and_fim_fields_pass_on(live: Live, first: FakeUpstream) -> None:
    first.json(load("openai", "text_completion"))
    client(live).completions.create(model="instruct", prompt="def add(a, b):\n    ", suffix="\n\nprint(add(1, 2))",
                                    stop=["\n\n"], echo=False, seed=7, extra_body={"top_k": 20})
    body = first.received[0].json()
    assert body["max_tokens"] == 16  # OpenAI's default, said out loud: llama-server's own is no limit
    assert (body["suffix"], body["stop"], body["seed"], body["top_k"]) == ("\n\nprint(add(1, 2))", ["\n\n"], 7, 20)


def test_a_stream_with_usage_through_the_sdk(live: Live, first: FakeUpstream) -> None:
    first.stream(load("openai", "text_completion_stream"))
    chunks = list(client(live).completions.create(model="instruct", prompt="Say this is a test", max_tokens=7,
                                                  stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == DOCUMENTED
    assert {c.object for c in chunks} == {"text_completion"} and {c.model for c in chunks} == {"inst-a"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.total_tokens == 12
    assert first.received[0].json()["stream_options"] == {"include_usage": True}


def test_a_stream_without_usage_asked_still_bills_the_upstreams_count(live: Live, first: FakeUpstream) -> None:
    first.stream(load("openai", "text_completion_stream"))
    r = post(live, {"model": "instruct", "prompt": "Say this is a test", "max_tokens": 7, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["choices"] and "usage" not in c for c in chunks)
    # The upstream was asked for usage all the same: the bill is its count, not an estimate.
    assert first.received[0].json()["stream_options"] == {"include_usage": True}
    ledger = live.gateway.tenancy.ledger
    assert ledger is not None and ledger.flush()


def test_a_503_falls_over_before_the_first_text(live: Live, first: FakeUpstream, fallback: FakeUpstream) -> None:
    first.json({"error": {"message": "The server is overloaded", "type": "server_error"}}, status=503)
    fallback.json(load("openai", "text_completion"))
    raw_answer = client(live).completions.with_raw_response.create(model="instruct", prompt="x")
    assert raw_answer.parse().model == "inst-b" and raw_answer.headers["x-polyroute-attempts"] == "2"
    assert fallback.received[0].headers["authorization"] == f"Bearer {ENV['B_KEY']}"


def test_a_stream_falls_over_before_the_first_text(live: Live, first: FakeUpstream, fallback: FakeUpstream) -> None:
    first.json({"error": {"message": "The server is overloaded", "type": "server_error"}}, status=503)
    fallback.stream(load("openai", "text_completion_stream"))
    stream = client(live).completions.with_raw_response.create(model="instruct", prompt="x", stream=True)
    assert stream.headers["x-polyroute-model"] == "inst-b" and stream.headers["x-polyroute-attempts"] == "2"
    assert "".join(c.choices[0].text for c in stream.parse() if c.choices) == DOCUMENTED


def test_every_upstream_failing_is_one_error_with_the_attempts(live: Live, first: FakeUpstream,
                                                               fallback: FakeUpstream) -> None:
    for up in (first, fallback):
        up.json({"error": {"message": "down", "type": "server_error"}}, status=503)
    with pytest.raises(openai.APIStatusError) as caught:
        client(live).completions.create(model="instruct", prompt="x")
    assert caught.value.status_code in (502, 503)
    assert caught.value.response.headers["x-polyroute-attempts"] == "2"


def test_a_cut_after_the_first_text_ends_with_an_error_not_done(live: Live) -> None:
    r = post(live, {"model": "cutter", "prompt": "one two three four", "stream": True})
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert r.status_code == 200 and json.loads(events[0])["choices"][0]["text"] == "You"
    assert "[DONE]" not in events and json.loads(events[-1])["error"]["code"] == "stream_cut"


def test_a_backend_without_text_completions_is_skipped(live: Live, first: FakeUpstream) -> None:
    first.json(load("openai", "text_completion"))
    raw_answer = client(live).completions.with_raw_response.create(model="mixed", prompt="x")
    assert raw_answer.parse().model == "inst-a" and raw_answer.headers["x-polyroute-attempts"] == "1"
    with pytest.raises(openai.BadRequestError) as caught:
        client(live).completions.create(model="claude-only", prompt="x")
    assert "no text completions endpoint" in caught.value.message
    assert caught.value.body["param"] == "model"  # type: ignore[index]


def test_the_fake_gives_n_choices_for_each_prompt(live: Live) -> None:
    resp = client(live).completions.create(model="echo", prompt=["one", "two"], n=2, max_tokens=3)
    assert [(c.index, c.text) for c in resp.choices] == [
        (0, "You said: one"), (1, "You said: one"), (2, "You said: two"), (3, "You said: two")]


def test_a_keys_budget_applies(live: Live, first: FakeUpstream) -> None:
    with pytest.raises(openai.APIStatusError) as caught:  # a token at $1 is past a $1 budget
        client(live, ENV["CAROL"]).completions.create(model="dear", prompt="a few words here")
    assert caught.value.status_code == 402
    assert not first.received


@pytest.mark.parametrize("stream", [False, True])
def test_the_keys_limits_and_budget_come_back_in_headers(live: Live, first: FakeUpstream, stream: bool) -> None:
    if stream:
        first.stream(load("openai", "text_completion_stream"))
    else:
        first.json(load("openai", "text_completion"))
    r = httpx.post(f"{live.base_url}/completions", json={"model": "instruct", "prompt": "x", "stream": stream},
                   headers={"authorization": f"Bearer {ENV['CAROL']}"}, timeout=10)
    assert r.status_code == 200
    assert r.headers["x-ratelimit-limit-requests"] == "100" and int(r.headers["x-ratelimit-remaining-requests"]) < 100
    assert 0 < float(r.headers["x-polyroute-budget-remaining-usd"]) < 1.0


def test_the_ledger_row_has_the_tokens_and_the_cost(live: Live, first: FakeUpstream, tmp_path: Path) -> None:
    first.json(load("openai", "text_completion"))
    resp = client(live).completions.with_raw_response.create(model="instruct", prompt="Say this is a test")
    ledger = live.gateway.tenancy.ledger
    assert ledger is not None and ledger.flush()
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM usage")]
    assert len(rows) == 1
    row = rows[0]
    assert (row["key"], row["route"], row["model"], row["backend"], row["status"]) == (
        "alice", "instruct", "inst-a", "a", 200)
    assert (row["tokens_in"], row["tokens_out"]) == (5, 7)
    assert row["cost_usd"] == pytest.approx((5 * INPUT + 7 * OUTPUT) / 1e6)
    assert row["request_id"] == resp.headers["x-polyroute-request-id"]


def test_metrics_count_whole_and_streamed_completions(live: Live, first: FakeUpstream) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    first.json(load("openai", "text_completion"))
    first.stream(load("openai", "text_completion_stream"))
    client(live).completions.create(model="instruct", prompt="Say this is a test")
    list(client(live).completions.create(model="instruct", prompt="Say this is a test", stream=True))
    scraped = httpx.get(f"{live.root}/metrics", timeout=10).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(scraped) for s in family.samples}
    where = (("model", "inst-a"), ("route", "instruct"))
    assert samples[("polyroute_requests_total", (*where, ("status", "200")))] == 2
    assert samples[("polyroute_tokens_total", (*where, ("type", "output")))] == 14
    assert samples[("polyroute_cost_usd_total", where)] == pytest.approx(2 * (5 * INPUT + 7 * OUTPUT) / 1e6)


def test_the_path_without_v1_is_served_too(live: Live, first: FakeUpstream) -> None:
    first.json(load("openai", "text_completion"))
    r = httpx.post(f"{live.root}/completions", json={"model": "instruct", "prompt": "x"},
                   headers={"authorization": f"Bearer {ENV['ALICE']}"}, timeout=10)
    assert r.status_code == 200 and r.json()["object"] == "text_completion"


def test_no_key_is_a_401(bare: Live) -> None:
    r = httpx.post(f"{bare.base_url}/completions", json={"model": "instruct", "prompt": "x"}, timeout=10)
    assert r.status_code == 401


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "instruct"}, "prompt"), ({"model": "instruct", "prompt": 5}, "prompt"),
    ({"model": "instruct", "prompt": []}, "prompt"), ({"model": "instruct", "prompt": [1, "a"]}, "prompt"),
    ({"model": "instruct", "prompt": [[1], []]}, "prompt"), ({"model": "instruct", "prompt": [-1]}, "prompt"),
    ({"model": "instruct", "prompt": "x", "n": 0}, "n"), ({"model": "instruct", "prompt": "x", "n": 129}, "n"),
    ({"model": "instruct", "prompt": "x", "n": 2, "best_of": 1}, "best_of"),
    ({"model": "instruct", "prompt": "x", "stream": True, "best_of": 2}, "best_of"),
    ({"model": "instruct", "prompt": "x", "logprobs": 6}, "logprobs"),
    ({"model": "instruct", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": "instruct", "prompt": "x", "max_tokens": -1}, "max_tokens"),
    ({"model": "instruct", "prompt": "x", "max_tokens": "7"}, "max_tokens"),
    ({"model": "instruct", "prompt": "x", "temperature": 3}, "temperature"),
    ({"model": "instruct", "prompt": "x", "logit_bias": {"x": 1}}, "logit_bias"),
    ({"model": "instruct", "prompt": "x", "logit_bias": {"50256": 101}}, "logit_bias"),
    ({"model": "instruct", "prompt": "x", "echo": "yes"}, "echo"),
    ({"model": "instruct", "prompt": "x", "suffix": 3}, "suffix"),
    ({"model": "nope", "prompt": "x"}, "model"), ({"model": 3, "prompt": "x"}, "model"),
])
def test_bad_requests_are_openai_shaped_400s_naming_the_field(bare: Live, body: object, param: str) -> None:
    r = post(bare, body)
    assert r.status_code in (400, 404), r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


def test_bodies_that_are_not_json_objects_are_400s(bare: Live) -> None:
    for body in (b"", b"{", b"\xff", b"[1, 2]", b'{"model": "instruct", "prompt": ' + b"[" * 5000 + b"]" * 5000 + b"}"):
        r = httpx.post(f"{bare.base_url}/completions", content=body,
                       headers={"authorization": f"Bearer {ENV['ALICE']}"}, timeout=10)
        assert r.status_code == 400, (body[:40], r.text)


def test_when_every_attempt_fails_the_backend_left_out_is_named(live: Live, first: FakeUpstream) -> None:
    first.json({"error": {"message": "down", "type": "server_error"}}, status=503)
    with pytest.raises(openai.APIStatusError) as caught:
        client(live).completions.create(model="mixed", prompt="x")
    assert "claude: backends of type 'anthropic' have no text completions endpoint" in caught.value.message


def test_a_stream_whose_every_attempt_fails_is_one_error_before_any_event(live: Live, first: FakeUpstream,
                                                                          fallback: FakeUpstream) -> None:
    for up in (first, fallback):
        up.json({"error": {"message": "down", "type": "server_error"}}, status=503)
    r = post(live, {"model": "instruct", "prompt": "x", "stream": True})
    assert r.status_code in (502, 503) and r.headers["content-type"].startswith("application/json")
    assert r.headers["x-polyroute-attempts"] == "2" and r.json()["error"]["message"]


def test_the_routing_decision_is_explained_on_request(live: Live, first: FakeUpstream) -> None:
    first.json(load("openai", "text_completion"))
    r = httpx.post(f"{live.base_url}/completions", json={"model": "mixed", "prompt": "x", "max_tokens": 5},
                   headers={"authorization": f"Bearer {ENV['ALICE']}", "x-polyroute-explain": "1"}, timeout=10)
    decision = json.loads(r.headers["x-polyroute-route-explain"])
    assert r.status_code == 200 and [m["model"] for m in decision["order"]] == ["inst-a"]
    assert [(m["model"], m["reason"]) for m in decision["excluded"]] == [
        ("claude", "backends of type 'anthropic' have no text completions endpoint")]
    assert decision["request"]["output_tokens_est"] == 5


def test_a_client_leaving_mid_stream_finishes_the_request_once_and_bills_it(caplog: pytest.LogCaptureFixture) -> None:
    # The fake stalls after two words; the route waits far longer than the wait below bounds: only the client
    # leaving can end the request in time.
    config = {"backends": {"f": {"type": "fake"}}, "models": {"stall": {"backend": "f", "upstream": "stall-2"}},
              "routes": {"leave": {"models": ["stall"], "stall_timeout": 600, "first_token_timeout": 600}}}
    caplog.set_level(logging.INFO, logger="polyroute.access")
    with live_gateway(config) as g:
        body = {"model": "leave", "prompt": "one two three", "stream": True}
        with httpx.Client(timeout=10) as c, c.stream("POST", f"{g.base_url}/completions", json=body) as resp:
            text = ""
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    text += "".join(ch["text"] for ch in json.loads(line[6:])["choices"])
                if text == "You said:":
                    break
        wait_until(lambda: any("route=leave" in r.getMessage() for r in caplog.records), what="the access log line")
    lines = [r.getMessage() for r in caplog.records if "route=leave" in r.getMessage()]
    assert len(lines) == 1 and "cancelled" in lines[0] and "tokens=0" not in lines[0]
