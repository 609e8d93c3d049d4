"""Streamed ``/v1/responses`` and ``/v1/messages`` against hostile upstreams: a sound end or a clear failure, always.

Both APIs are served by the chat path's streams, so a hostile OpenAI-wire upstream
(``HostileUpstream``) reaches them through the same reader; what differs is how each
API must end. A stream that broke before its first token fails over unseen, and the
client reads the next candidate's answer. One that broke after it began (no candidate
left to continue it) must end as each API says a failure ends: Responses with ``error``
then ``response.failed``, Messages with an ``error`` event and no ``message_stop``,
never an end that reads like a success. A failure before anything was sent is a
plain error answer in the API's own shape. Memory is the process's peak RSS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.robustness.hostile_upstream import ANSWER, FLOOD_WORD, HostileUpstream
from tests.robustness.test_upstreams_hostile import Gateway, serving
from tests.support.clients import gateway_lines
from tests.support.live import free_port
from tests.support.wait import wait_until

APIS = ["responses", "messages"]
# Each breaks before its first token: the next candidate answers, unseen.
BEFORE = {"sseline": "sseline", "ssedata": "ssedata", "cut0": "cut-0", "badjson0": "badjson-0",
          "nodone0": "nodone-0", "hang0": "hang-0", "body": "body-1073741824"}
# Each breaks after five words; alone on its route, nothing can continue it.
AFTER = {"cut5": "cut-5", "badjson5": "badjson-5", "nodone5": "nodone-5", "hang5": "hang-5"}
# Sound, but for a finish_reason that is an object.
ODD = {"finobj": "finobj"}
# Every route's, so that an upstream that only sends keep-alives is left within seconds.
FIRST_TOKEN_TIMEOUT, STALL_TIMEOUT = 3, 2


def _config(port: int, up: HostileUpstream) -> str:
    lines = [
        "[gateway]", f'listen = "127.0.0.1:{port}"', *gateway_lines(),
        # Every test meets each hostile upstream: none is left out by a breaker another test opened.
        "[gateway.breakers]", "failures = 1000", "min_requests = 1000",
        "[backends.good]", 'type = "openai"', f'base_url = "{up.base_url}"', 'api_key = "env:UP_KEY"',
        "[models.ok]", 'backend = "good"', 'upstream = "ok"',
        # The same sound upstream, as a backend that continues a partial answer (stream rescue).
        "[backends.rescuer]", 'type = "openai"', f'base_url = "{up.base_url}"', 'api_key = "env:UP_KEY"',
        'continuation = "prefill"', "[models.rescue]", 'backend = "rescuer"', 'upstream = "ok"',
    ]
    for name, behaviour in (BEFORE | AFTER | ODD).items():
        lines += [f"[backends.{name}]", 'type = "openai"', f'base_url = "{up.base_url}"', 'api_key = "env:UP_KEY"',
                  f"[models.{name}]", f'backend = "{name}"', f'upstream = "{behaviour}"',
                  *_route(f"{name}-alone", [name]), *_route(f"{name}-then-ok", [name, "ok"]),
                  *_route(f"{name}-then-rescue", [name, "rescue"])]
    return "\n".join(lines) + "\n"


def _route(name: str, models: list[str]) -> list[str]:
    return [f'[routes."{name}"]', f"models = {models!r}".replace("'", '"'),
            f"first_token_timeout = {FIRST_TOKEN_TIMEOUT}", f"stall_timeout = {STALL_TIMEOUT}"]


@pytest.fixture(scope="module")
def gw(up: HostileUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    port = free_port()
    with serving(tmp_path_factory.mktemp("apis"), port, _config(port, up), {"UP_KEY": "sk-up-apis"}) as gateway:
        yield gateway


def body(api: str, model: str) -> dict[str, Any]:
    if api == "responses":
        return {"model": model, "input": "hi", "stream": True, "store": False}
    return {"model": model, "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def events(resp: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """Every event of a stream, as (its ``event:`` name, its data), each checked to be named as its type."""
    out: list[tuple[str, dict[str, Any]]] = []
    name = ""
    for line in resp.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
            assert data["type"] == name, (name, data)
            out.append((name, data))
    return out


def text_of(api: str, seen: list[tuple[str, dict[str, Any]]]) -> str:
    if api == "responses":
        return "".join(d["delta"] for n, d in seen if n == "response.output_text.delta")
    return "".join(d["delta"]["text"] for n, d in seen if n == "content_block_delta"
                   and d["delta"]["type"] == "text_delta")


def ended_well(api: str, seen: list[tuple[str, dict[str, Any]]]) -> bool:
    """Whether the stream ends as a success of its API does; checked to be whole and in order when it does."""
    names = [n for n, _ in seen]
    if api == "responses":
        assert [d["sequence_number"] for _, d in seen] == list(range(len(seen)))
        assert names[:2] == ["response.created", "response.in_progress"], names
        if names[-1] == "response.completed":
            return True
        assert names[-2:] == ["error", "response.failed"], names
        assert "response.completed" not in names
        return False
    assert names[0] == "message_start", names
    if names[-1] == "message_stop":
        assert names[-2] == "message_delta", names
        return True
    assert names[-1] == "error" and "message_stop" not in names and "message_delta" not in names, names
    assert set(seen[-1][1]["error"]) >= {"type", "message"}, seen[-1]
    return False


def stream(gw: Gateway, api: str, model: str) -> tuple[httpx.Response, list[tuple[str, dict[str, Any]]]]:
    with gw.client(None) as client, client.stream("POST", f"/v1/{api}", json=body(api, model)) as resp:
        if resp.status_code != 200:
            resp.read()
            return resp, []
        return resp, events(resp)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("name", list(BEFORE))
def test_a_stream_broken_before_its_first_token_fails_over_unseen(
    gw: Gateway, up: HostileUpstream, api: str, name: str
) -> None:
    before, sent = gw.peak_rss(), up.sent.get(BEFORE[name], 0)
    resp, seen = stream(gw, api, f"{name}-then-ok")
    assert resp.status_code == 200, resp.text
    assert ended_well(api, seen) and text_of(api, seen) == ANSWER
    assert resp.headers["x-polyroute-model"] == "ok"
    grown = gw.peak_rss() - before
    assert grown < 128 * 1024 * 1024, f"peak RSS grew by {grown >> 20} MiB"
    assert up.sent[BEFORE[name]] - sent < 64 * 1024 * 1024  # past the cap, nothing more is read


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("name", list(AFTER))
def test_a_stream_broken_after_it_began_ends_as_a_failure(gw: Gateway, api: str, name: str) -> None:
    resp, seen = stream(gw, api, f"{name}-alone")
    assert resp.status_code == 200, resp.text
    assert text_of(api, seen) == FLOOD_WORD * 5
    assert not ended_well(api, seen)
    assert "Traceback" not in gw.log.read_text()


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("name", list(AFTER))
def test_a_stream_broken_after_it_began_is_continued_by_the_next_candidate(gw: Gateway, api: str, name: str) -> None:
    """A candidate that continues a partial answer is given the words already sent: the client reads one answer.
    One that cannot (no ``continuation``) leaves the stream to end as a failure."""
    resp, seen = stream(gw, api, f"{name}-then-rescue")
    assert resp.status_code == 200, resp.text
    assert ended_well(api, seen)
    assert text_of(api, seen) == FLOOD_WORD * 5 + ANSWER
    resp, seen = stream(gw, api, f"{name}-then-ok")
    assert resp.status_code == 200 and text_of(api, seen) == FLOOD_WORD * 5
    assert not ended_well(api, seen)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("name", ["cut0", "badjson0", "nodone0", "sseline", "hang0"])
def test_a_stream_broken_before_anything_was_sent_is_an_error_in_the_apis_shape(
    gw: Gateway, api: str, name: str
) -> None:
    resp, _ = stream(gw, api, f"{name}-alone")
    assert resp.status_code in (502, 503, 504), resp.text  # bad, gone (unavailable), or silent (timeout)
    doc = resp.json()
    if api == "responses":
        assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "param", "code"}, doc
    else:
        assert doc["type"] == "error" and set(doc["error"]) >= {"type", "message"}, doc
        assert resp.headers["request-id"]


@pytest.mark.parametrize("api", APIS)
def test_an_upstream_that_only_keeps_alive_is_left_and_its_connection_closed(
    gw: Gateway, up: HostileUpstream, api: str
) -> None:
    """Comments and chunks without a token are no progress: the stall deadline ends the stream, and its upstream
    connection is closed rather than kept alive for ever."""
    hangups = up.hangups.count("hang-5")
    resp, seen = stream(gw, api, "hang5-alone")
    assert resp.status_code == 200 and text_of(api, seen) == FLOOD_WORD * 5
    assert not ended_well(api, seen)
    wait_until(lambda: up.hangups.count("hang-5") > hangups, 30, "the keep-alive upstream's connection closed")


def whole_text(api: str, doc: dict[str, Any]) -> str:
    if api == "responses":
        assert doc["object"] == "response" and doc["status"] == "completed", doc
        return "".join(part["text"] for item in doc["output"] if item["type"] == "message"
                       for part in item["content"] if part["type"] == "output_text")
    assert doc["type"] == "message" and doc["stop_reason"] == "end_turn", doc
    return "".join(block["text"] for block in doc["content"] if block["type"] == "text")


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("name", list(BEFORE | AFTER))
def test_a_whole_answer_from_a_broken_stream_is_the_next_candidates(
    gw: Gateway, up: HostileUpstream, api: str, name: str
) -> None:
    """Not streamed, the answer is assembled from the upstream's stream: a broken one is started afresh on the next
    candidate (the client has read nothing), and alone it is a plain error in the API's shape."""
    before = gw.peak_rss()
    with gw.client(None) as client:
        resp = client.post(f"/v1/{api}", json={**body(api, f"{name}-then-ok"), "stream": False})
        alone = client.post(f"/v1/{api}", json={**body(api, f"{name}-alone"), "stream": False})
    assert resp.status_code == 200, resp.text
    assert whole_text(api, resp.json()) == ANSWER and resp.headers["x-polyroute-model"] == "ok"
    assert alone.status_code in (502, 503, 504), alone.text
    doc = alone.json()
    if api == "responses":
        assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "param", "code"}, doc
    else:
        assert doc["type"] == "error" and set(doc["error"]) >= {"type", "message"}, doc
    grown = gw.peak_rss() - before
    assert grown < 128 * 1024 * 1024, f"peak RSS grew by {grown >> 20} MiB"


@pytest.mark.parametrize("streamed", [True, False])
def test_a_turn_whose_upstream_broke_is_not_added_to_its_conversation(gw: Gateway, streamed: bool) -> None:
    """Only answered turns join a conversation: a stream cut after five words leaves no half turn behind."""
    def said(item: dict[str, Any]) -> str:
        content = item.get("content")
        return content if isinstance(content, str) else "".join(part.get("text", "") for part in content or [])

    with gw.client(None) as client:
        made = client.post("/v1/conversations", json={"items": [{"type": "message", "role": "user",
                                                                  "content": "first"}]})
        assert made.status_code == 200, made.text
        conversation = made.json()["id"]
        turn = {"input": "second", "conversation": conversation, "stream": streamed}
        with client.stream("POST", "/v1/responses", json={**turn, "model": "cut5-alone"}) as broken:
            broken.read()
        answered = client.post("/v1/responses", json={**turn, "input": "third", "model": "ok"})
        items = client.get(f"/v1/conversations/{conversation}/items", params={"order": "asc"})
    assert broken.status_code in (200, 502, 503), broken.text
    assert b"response.completed" not in broken.content
    assert answered.status_code == 200, answered.text
    assert [said(item) for item in items.json()["data"]] == ["first", "third", ANSWER]


@pytest.mark.parametrize("streamed", [True, False])
def test_a_finish_reason_that_is_an_object_is_no_500_on_responses(gw: Gateway, streamed: bool) -> None:
    """The chat path passes a finish_reason of another shape through (some servers send an object); the Responses
    API reads it to say how the answer ended, and must not trip over it."""
    with gw.client(None) as client:
        resp = client.post("/v1/responses", json={**body("responses", "finobj-alone"), "stream": streamed})
    assert resp.status_code == 200, resp.text
    if streamed:
        seen = [(n, json.loads(d)) for n, d in _sse(resp.text)]
        assert ended_well("responses", seen) and text_of("responses", seen) == ANSWER
    else:
        assert whole_text("responses", resp.json()) == ANSWER
    assert "Traceback" not in gw.log.read_text()


@pytest.mark.parametrize("streamed", [True, False])
def test_a_finish_reason_that_is_an_object_is_no_500_on_messages(
    up: HostileUpstream, tmp_path: Path, streamed: bool
) -> None:
    port = free_port()  # a gateway of its own: the traceback it logs is no other test's
    config = "\n".join(["[gateway]", f'listen = "127.0.0.1:{port}"', *gateway_lines(),
                        "[backends.odd]", 'type = "openai"', f'base_url = "{up.base_url}"', 'api_key = "env:UP_KEY"',
                        "[models.finobj]", 'backend = "odd"', 'upstream = "finobj"']) + "\n"
    with serving(tmp_path, port, config, {"UP_KEY": "sk-up-apis"}) as gateway, gateway.client(None) as client:
        resp = client.post("/v1/messages", json={**body("messages", "finobj"), "stream": streamed})
    assert resp.status_code == 200, resp.text
    if streamed:
        seen = [(n, json.loads(d)) for n, d in _sse(resp.text)]
        assert ended_well("messages", seen) and text_of("messages", seen) == ANSWER
    else:
        assert whole_text("messages", resp.json()) == ANSWER


def _sse(text: str) -> list[tuple[str, str]]:
    """(event name, data) of each event of a stream read whole."""
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            out.append((lines.get("event", ""), lines["data"]))
    return out
