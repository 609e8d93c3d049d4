"""Hostile clients on ``/v1/embeddings``, ``/v1/responses``, ``/v1/messages`` and ``/v1/conversations``.

What the chat path's client tests check (test_clients_send_timeout, test_clients_bodies,
test_clients_slow, test_clients_not_reading), asked of the newer endpoints over raw
sockets: a client that stops reading a long stream is cut after ``send_timeout`` and its
upstream closed; a huge ``input`` array or JSON nested past the limit is a 400 before any
work, in each API's own error shape; a body shorter or longer than its Content-Length is
a 400 or a 408, never a 500; pipelined requests on these paths are answered in order.
A real ``polyroute serve`` process; the long streams come from ``HostileUpstream``'s ``flood``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.robustness.gateway_proc import Answer, GatewayProc, Reader, post
from tests.robustness.hostile_upstream import ANSWER, HostileUpstream
from tests.robustness.test_clients_bodies import _nested
from tests.robustness.test_upstreams_hostile import Gateway, serving
from tests.support.clients import gateway_lines
from tests.support.live import free_port
from tests.support.wait import wait_until

SEND_TIMEOUT = 3
BODY_TIMEOUT = 3
CUT_WITHIN_S = 60.0  # bounds a failure only: a passing test waits a few seconds
STOPPED_READING = "it has stopped reading"
OTHERS_BOUND_S = 0.25  # what a hostile body may add to another client's request (test_clients_bodies' bound)
# Endless for these tests: one upstream model per API, so each one's hang-up is seen apart.
CUT = {"responses": "flood-2000011", "messages": "flood-2000012"}
LEFT = {"responses": "flood-2000013", "messages": "flood-2000014"}
APIS = ["embeddings", "responses", "messages", "conversations"]


@pytest.fixture(scope="module")
def gw(up: HostileUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    port = free_port()
    config = "\n".join([
        "[gateway]", f'listen = "127.0.0.1:{port}"', f"send_timeout = {SEND_TIMEOUT}",
        f"body_timeout = {BODY_TIMEOUT}", *gateway_lines(),
        "[backends.fast]", 'type = "openai"', f'base_url = "{up.base_url}"', 'api_key = "env:UP_KEY"',
        "[models.cut-responses]", 'backend = "fast"', f'upstream = "{CUT["responses"]}"',
        "[models.cut-messages]", 'backend = "fast"', f'upstream = "{CUT["messages"]}"',
        "[models.left-responses]", 'backend = "fast"', f'upstream = "{LEFT["responses"]}"',
        "[models.left-messages]", 'backend = "fast"', f'upstream = "{LEFT["messages"]}"',
        "[models.ok]", 'backend = "fast"', 'upstream = "ok"',
        "[models.embed]", 'backend = "fast"', 'upstream = "emb-ok"', 'family = "text-embedding-3-small"',
    ]) + "\n"
    with serving(tmp_path_factory.mktemp("clients-apis"), port, config, {"UP_KEY": "sk-up-apis"}) as gateway:
        yield gateway


def _proc(gw: Gateway) -> GatewayProc:
    return GatewayProc(gw.proc, int(gw.url.rsplit(":", 1)[1]), gw.log)


def sound(api: str, stream: bool = False, model: str = "ok") -> dict[str, Any]:
    """A small valid body for ``api``."""
    if api == "embeddings":
        return {"model": "embed", "input": ["one", "two"], "dimensions": 8}
    if api == "responses":
        return {"model": model, "input": "hi", "stream": stream, "store": False}
    if api == "messages":
        return {"model": model, "max_tokens": 50, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    return {"metadata": {"topic": "tests"}, "items": [{"type": "message", "role": "user", "content": "hi"}]}


def request(api: str, body: dict[str, Any] | bytes) -> bytes:
    return post(f"/v1/{api}", body if isinstance(body, bytes) else orjson.dumps(body))


def send(gw: Gateway, data: bytes, timeout: float = 30) -> Answer:
    with _proc(gw).connect(timeout=timeout) as sock:
        sock.sendall(data)
        return Reader(sock).answer()


def error_in_shape(api: str, answer: Answer) -> dict[str, Any]:
    """The answer's error, checked to be in its API's shape: Anthropic's for Messages, else OpenAI's."""
    doc = answer.json()
    assert "Traceback" not in answer.body.decode(errors="replace")
    if api == "messages":
        assert doc["type"] == "error" and set(doc["error"]) == {"type", "message"}, doc
        assert answer.headers.get("request-id"), answer.headers
        err: dict[str, Any] = doc["error"]
        return err
    assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "param", "code"}, doc
    err = doc["error"]
    return err


# -- a client that stops reading a long stream ------------------------------------------------------------


@pytest.mark.parametrize("api", ["responses", "messages"])
def test_a_stream_whose_client_stops_reading_is_cut_and_its_upstream_stopped(
    gw: Gateway, up: HostileUpstream, api: str
) -> None:
    model = CUT[api]
    with _proc(gw).connect(rcvbuf=4096, timeout=CUT_WITHIN_S) as sock, \
            httpx.Client(base_url=gw.url, timeout=30) as other:
        sock.sendall(request(api, sound(api, stream=True, model=f"cut-{api}")))
        sent_at = time.monotonic()
        wait_until(lambda: any(h.model == model for h in up.hits), CUT_WITHIN_S, "the upstream asked")
        served = 0
        while model not in up.hangups:  # another client is served while the stuck stream waits for its cut
            assert other.get("/healthz").status_code == 200
            served += 1
            assert served < CUT_WITHIN_S * 100, "the upstream's connection was never closed"
            time.sleep(0.01)  # pacing the other client, not synchronisation
        cut_after = time.monotonic() - sent_at
        port = sock.getsockname()[1]
        gw.logged(f"127.0.0.1:{port}: {STOPPED_READING}")
        assert Reader(sock).at_eof()
    print(f"\nrobustness: a /v1/{api} stream not read (send_timeout {SEND_TIMEOUT} s): its upstream closed "
          f"{cut_after:.1f} s after the request; another client served {served} times meanwhile")


@pytest.mark.parametrize("api", ["responses", "messages"])
def test_a_client_that_leaves_mid_stream_has_its_upstream_closed(gw: Gateway, up: HostileUpstream, api: str) -> None:
    with _proc(gw).connect(timeout=CUT_WITHIN_S) as sock:
        sock.sendall(request(api, sound(api, stream=True, model=f"left-{api}")))
        reader = Reader(sock)
        assert reader.head()[0] == 200
        assert reader.chunk()  # the stream has begun
    wait_until(lambda: LEFT[api] in up.hangups, CUT_WITHIN_S, "the upstream's connection closed")


def test_a_large_embeddings_answer_to_a_client_that_never_reads_is_cut(gw: Gateway) -> None:
    """512 vectors of 3072 numbers, about 11 MB of answer, far more than the sockets' buffers: nobody takes it."""
    ask = request("embeddings", {"model": "embed", "input": [f"text {i}" for i in range(512)], "dimensions": 3072})
    with _proc(gw).connect(rcvbuf=4096, timeout=CUT_WITHIN_S) as sock:
        sock.sendall(ask)
        port = sock.getsockname()[1]
        gw.logged(f"127.0.0.1:{port}: {STOPPED_READING}", CUT_WITHIN_S)
        assert Reader(sock).at_eof()
    assert send(gw, request("embeddings", sound("embeddings"))).status == 200


# -- bodies that would cost work ---------------------------------------------------------------------------


def test_a_huge_embeddings_input_array_is_a_400_before_any_work(gw: Gateway, up: HostileUpstream) -> None:
    asked = len(up.hits)
    answer = send(gw, request("embeddings", {"model": "embed", "input": ["x"] * 100_000}))
    err = error_in_shape("embeddings", answer)
    assert answer.status == 400 and err["param"] == "input" and "2048" in err["message"], err
    answer = send(gw, request("embeddings", {"model": "embed", "input": [[1]] * 100_000}))
    assert answer.status == 400 and error_in_shape("embeddings", answer)["param"] == "input"
    assert len(up.hits) == asked  # no upstream was asked


def test_a_huge_responses_input_array_is_a_400_before_any_work(gw: Gateway, up: HostileUpstream) -> None:
    asked = len(up.hits)
    items = [{"type": "message", "role": "user", "content": "m"}] * 50_000  # within max_body_bytes
    answer = send(gw, request("responses", {"model": "ok", "input": items}))
    err = error_in_shape("responses", answer)
    assert answer.status == 400 and (err["param"], err["code"]) == ("input", "array_above_max_length"), err
    refs = [{"type": "item_reference", "id": f"msg_{i}"} for i in range(50_000)]  # each would cost a store read
    answer = send(gw, request("responses", {"model": "ok", "input": refs}))
    assert answer.status == 400 and error_in_shape("responses", answer)["param"] == "input"
    assert len(up.hits) == asked


def test_a_huge_conversation_items_array_or_metadata_is_a_400_before_any_work(gw: Gateway) -> None:
    items = [{"type": "message", "role": "user", "content": "m"}] * 50_000
    answer = send(gw, request("conversations", {"items": items}))
    assert answer.status == 400 and error_in_shape("conversations", answer)["param"] == "items", answer.body
    metadata = {f"k{i}": "v" for i in range(50_000)}
    answer = send(gw, request("conversations", {"metadata": metadata}))
    assert answer.status == 400 and error_in_shape("conversations", answer)["param"] == "metadata", answer.body


def many_parts(odd_one: int | None = None) -> bytes:
    """A Responses body with one message of 120,000 text parts (the limit is 4096), just within max_body_bytes;
    with ``odd_one``, that part is of no type the API knows."""
    parts: list[dict[str, str]] = [{"type": "input_text", "text": "x"}] * 120_000
    if odd_one is not None:
        parts[odd_one] = {"type": "no_such_part"}
    return orjson.dumps({"model": "ok", "input": [{"type": "message", "role": "user", "content": parts}]})


def test_too_many_content_parts_are_counted_before_any_is_translated(gw: Gateway) -> None:
    """Refused for the count, naming the field the client sent, whatever its parts say: translating 120,000 parts
    into a chat request first took the event loop about half a second, every other client waiting."""
    for odd_one in (None, 100_000):
        answer = send(gw, request("responses", many_parts(odd_one)))
        err = error_in_shape("responses", answer)
        assert answer.status == 400 and "too many content parts" in err["message"], err
        assert err["param"] == "input[0].content", err


def deep_bodies(api: str, depth: int) -> list[bytes]:
    """Bodies of ``api`` with a value ``depth`` levels deep in a free-form field, each otherwise sound."""
    deep = _nested(depth)
    if api == "embeddings":
        return [b'{"model":"embed","input":"hi","x_extra":%b}' % deep]
    if api == "responses":
        return [b'{"model":"ok","input":"hi","store":false,"metadata":{"k":%b}}' % deep,
                b'{"model":"ok","input":"hi","store":false,"text":{"format":{"type":"json_schema","name":"x",'
                b'"schema":%b}}}' % deep,
                b'{"model":"ok","input":"hi","store":false,"tools":[{"type":"function","name":"f",'
                b'"parameters":%b}]}' % deep]
    if api == "messages":
        return [b'{"model":"ok","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"tools":[{"name":"f",'
                b'"input_schema":%b}]}' % deep]  # what it does not carry to the model (metadata's other keys) is left
    return [b'{"metadata":{"k":%b}}' % deep,
            b'{"items":[{"type":"message","role":"user","content":"hi","x":%b}]}' % deep]


@pytest.mark.parametrize("depth", [100, 300, 5000, 100_000])
@pytest.mark.parametrize("api", APIS)
def test_json_nested_deep_is_a_400_in_the_apis_shape(gw: Gateway, api: str, depth: int) -> None:
    for body in deep_bodies(api, depth):
        answer = send(gw, request(api, body))
        err = error_in_shape(api, answer)
        assert answer.status == 400, (body[:80], err)
    assert gw.proc.poll() is None


def deep_tool_use(depth: int) -> bytes:
    """A Messages body whose earlier tool call's ``input`` is ``depth`` levels deep."""
    turns = (b'[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"tool_use","id":"t1",'
             b'"name":"f","input":{"k":%b}}]},{"role":"user","content":[{"type":"tool_result",'
             b'"tool_use_id":"t1","content":"ok"}]}]' % _nested(depth))
    return b'{"model":"ok","max_tokens":5,"messages":%b}' % turns


def test_a_deep_tool_use_input_within_the_parsers_reach_is_served_or_refused_never_a_500(gw: Gateway) -> None:
    for depth in (100, 5000):
        answer = send(gw, request("messages", deep_tool_use(depth)))
        assert answer.status in (200, 400), answer.body


def test_a_tool_use_input_nested_past_the_encoders_limit_is_a_400(gw: Gateway) -> None:
    answer = send(gw, request("messages", deep_tool_use(300)))
    error_in_shape("messages", answer)
    assert answer.status == 400, answer.body


class Others(threading.Thread):
    """Another client: a small chat request after another on its own connection, timing each."""

    def __init__(self, gw: Gateway) -> None:
        super().__init__(daemon=True)
        self.gw = gw
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.statuses: set[int] = set()

    def run(self) -> None:
        with _proc(self.gw).connect(timeout=10) as sock:
            reader = Reader(sock)
            ask = post("/v1/chat/completions", orjson.dumps(
                {"model": "ok", "messages": [{"role": "user", "content": "hi"}]}))
            while not self.stop.wait(0.01):  # pacing, not synchronisation
                started = time.monotonic()
                sock.sendall(ask)
                self.statuses.add(reader.answer().status)
                self.latencies.append(time.monotonic() - started)


def test_hostile_bodies_on_these_paths_do_not_stall_other_clients(gw: Gateway) -> None:
    hostile = [request(api, body) for api in APIS for body in deep_bodies(api, 5000)]
    hostile += [request("conversations", {"items": [{"type": "message", "role": "user", "content": "m"}] * 50_000}),
                request("embeddings", {"model": "embed", "input": ["x"] * 100_000}),
                request("responses", {"model": "ok", "input": [{"role": "user", "content": "m"}] * 50_000})]
    others = Others(gw)
    others.start()
    rounds = 0
    try:
        # At least five rounds, and on until the other client has been timed twenty times meanwhile.
        while rounds < 5 or len(others.latencies) < 20:
            for data in hostile:
                assert send(gw, data).status == 400
            rounds += 1
            assert rounds < 500, "the other client was not served"
    finally:
        others.stop.set()
        others.join(10)
    assert others.statuses == {200}
    worst = max(others.latencies)
    print(f"\nrobustness: {len(others.latencies)} requests of another client during {rounds} x {len(hostile)} hostile "
          f"bodies on the newer paths: worst {worst * 1000:.1f} ms")
    assert worst < OTHERS_BOUND_S, f"another client waited {worst * 1000:.0f} ms"


# -- bodies that are not as long as they say ----------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_a_body_shorter_than_its_content_length_is_a_408_in_the_apis_shape(gw: Gateway, api: str) -> None:
    body = orjson.dumps(sound(api))
    head = f"POST /v1/{api} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
    with _proc(gw).connect(timeout=CUT_WITHIN_S) as sock:
        sock.sendall(f"{head}Content-Length: {len(body) + 100}\r\n\r\n".encode() + body)
        reader = Reader(sock)
        answer = reader.answer()
        assert answer.status == 408, answer.body
        error_in_shape(api, answer)
        assert reader.at_eof()


@pytest.mark.parametrize("api", APIS)
def test_a_body_longer_than_its_content_length_is_a_400_never_a_500(gw: Gateway, api: str) -> None:
    body = orjson.dumps(sound(api))
    head = f"POST /v1/{api} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
    with _proc(gw).connect(timeout=CUT_WITHIN_S) as sock:
        # The body cut after half: the JSON is broken, and its other half reads as the next request's head.
        sock.sendall(f"{head}Content-Length: {len(body) // 2}\r\n\r\n".encode() + body + b"\r\n\r\n")
        reader = Reader(sock)
        first = reader.answer()
        assert first.status == 400, first.body
        error_in_shape(api, first)
        second = reader.answer()
        assert second.status == 400, second.body
        assert reader.at_eof()


@pytest.mark.parametrize("api", APIS)
def test_a_gzipped_body_is_refused_not_inflated(gw: Gateway, api: str) -> None:
    """A gzip bomb (4 KiB that inflate to 16 MiB) is a 415 in the API's shape; the gateway reads no encoded body."""
    import gzip

    bomb = gzip.compress(b'{"model": "ok", "input": "' + b" " * (16 << 20) + b'"}')
    before = _proc(gw).rss_kib()
    answer = send(gw, post(f"/v1/{api}", bomb, "Content-Encoding: gzip\r\n"))
    assert answer.status == 415, answer.body
    error_in_shape(api, answer)
    assert _proc(gw).rss_kib() - before < 12 * 1024  # not inflated: 16 MiB would show


# -- pipelining ---------------------------------------------------------------------------------------------


def test_pipelined_requests_on_these_paths_are_answered_in_order(gw: Gateway) -> None:
    asks = [("embeddings", False), ("responses", True), ("messages", False), ("conversations", False),
            ("messages", True), ("responses", False), ("embeddings", False)]
    with _proc(gw).connect(timeout=30) as sock:
        sock.sendall(b"".join(request(api, sound(api, stream)) for api, stream in asks))
        reader = Reader(sock)
        answers = [reader.answer() for _ in asks]
    for (api, stream), answer in zip(asks, answers, strict=True):
        assert answer.status == 200, (api, answer.body)
        if stream:
            assert answer.headers["content-type"].startswith("text/event-stream")
            assert ANSWER.encode() in answer.body
            assert (b"response.completed" if api == "responses" else b"message_stop") in answer.body
            continue
        doc = answer.json()
        expected = {"embeddings": "list", "responses": "response", "messages": "message",
                    "conversations": "conversation"}[api]
        assert doc.get("object", doc.get("type")) == expected, doc
