"""Nothing a client sends yields a 500, and no body stalls the others (issue 14, point 6).

JSON nested past orjson's limit of 255 levels in a free-form field used to pass
validation and fail at the backend as a 500; past 1024 levels the parser itself
refuses it. 100,000 messages blocked the event loop for hundreds of milliseconds.
Each is now a 400 naming the field, decided before any routing, and cheap.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest

from tests.robustness.gateway_proc import GatewayProc, Reader, chat, error_of, gateway

OTHERS_BOUND_S = 0.25  # what a hostile body may add to another client's request, on a loaded 2-core machine
DEPTHS = [255, 1024, 5000, 100_000]
ROUNDS = 10
HELLO = [{"role": "user", "content": "hi"}]


def _nested(depth: int) -> bytes:
    """A JSON value ``depth`` levels deep, alternating arrays and objects."""
    opening = (b'[{"a":' * (depth // 2 + 1))[: depth // 2 * 6] + (b"[" if depth % 2 else b"")
    closing = b"]" if depth % 2 else b""
    closing += b"}]" * (depth // 2)
    return opening + b"0" + closing


def _body(field: str, depth: int) -> tuple[bytes, str]:
    """A chat body with a value ``depth`` deep in ``field``, and what the 400's param must start with."""
    deep = _nested(depth)
    model = b'"model":"echo"'
    hello = orjson.dumps(HELLO)
    if field == "response_format":
        body = b'{%b,"messages":%b,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":%b}}}'
        return body % (model, hello, deep), "response_format.json_schema.schema"
    if field == "tools":
        body = b'{%b,"messages":%b,"tools":[{"type":"function","function":{"name":"f","parameters":%b}}]}'
        return body % (model, hello, deep), "tools[0].function.parameters"
    if field == "metadata":
        return b'{%b,"messages":%b,"metadata":{"k":%b}}' % (model, hello, deep), "metadata.k"
    if field == "content":
        body = b'{%b,"messages":[{"role":"user","content":[{"type":"text","text":"hi","x":%b}]}]}'
        return body % (model, deep), "messages[0].content[0]"
    return b'{%b,"messages":%b,"x_extra":%b}' % (model, hello, deep), "x_extra"


class Others(threading.Thread):
    """Another client: a small chat request after another on its own connection, timing each."""

    def __init__(self, gw: GatewayProc) -> None:
        super().__init__(daemon=True)
        self.gw = gw
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.statuses: set[int] = set()

    def run(self) -> None:
        with self.gw.connect(timeout=10) as sock:
            reader = Reader(sock)
            request = chat({"model": "echo", "messages": HELLO})
            while not self.stop.wait(0.01):  # pacing, not synchronisation
                started = time.monotonic()
                sock.sendall(request)
                self.statuses.add(reader.answer().status)
                self.latencies.append(time.monotonic() - started)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> GatewayProc:
    with gateway(tmp_path_factory.mktemp("bodies")) as proc:
        yield proc  # type: ignore[misc]


def _send(gw: GatewayProc, body: bytes) -> tuple[int, dict[str, object]]:
    with gw.connect(timeout=30) as sock:
        sock.sendall(chat(body))
        answer = Reader(sock).answer()
    return answer.status, error_of(answer) if answer.status != 200 else {}


@pytest.mark.parametrize("field", ["response_format", "tools", "metadata", "content", "extra"])
@pytest.mark.parametrize("depth", DEPTHS)
def test_json_nested_deep_in_any_field_is_a_400_naming_it(gw: GatewayProc, field: str, depth: int) -> None:
    body, param = _body(field, depth)
    status, error = _send(gw, body)
    assert status == 400, error
    assert str(error["param"]).startswith(param)  # the field, then the path into it (4 levels at most)
    assert error["code"] == "nesting_too_deep"
    assert "64 levels" in str(error["message"])


def test_nesting_within_the_limit_is_served(gw: GatewayProc) -> None:
    body, _ = _body("metadata", 40)
    assert _send(gw, body)[0] == 200


def test_too_many_messages_or_parts_are_400s_naming_the_limit(gw: GatewayProc) -> None:
    many = orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": f"m{i}"} for i in range(100_000)]})
    assert len(many) > 2_500_000
    status, error = _send(gw, many)
    assert (status, error["param"], error["code"]) == (400, "messages", "array_above_max_length")
    assert "2048" in str(error["message"])
    parts = [{"type": "text", "text": "x"}] * 5000
    status, error = _send(gw, orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": parts}]}))
    assert (status, error["param"]) == (400, "messages[0].content")
    assert "4096" in str(error["message"])


def test_hostile_bodies_do_not_stall_other_clients(gw: GatewayProc) -> None:
    hostile = [_body(field, depth)[0] for field in ("tools", "metadata", "content") for depth in DEPTHS]
    hostile.append(orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": "m"}] * 100_000}))
    others = Others(gw)
    others.start()
    try:
        for _ in range(ROUNDS):
            for body in hostile:
                assert _send(gw, body)[0] == 400
    finally:
        others.stop.set()
        others.join(10)
    assert others.statuses == {200}
    assert len(others.latencies) >= 5
    worst = max(others.latencies)
    print(f"\nrobustness: {len(others.latencies)} requests of another client during {ROUNDS} x {len(hostile)} "
          f"hostile bodies: worst {worst * 1000:.1f} ms")
    assert worst < OTHERS_BOUND_S, f"another client waited {worst * 1000:.0f} ms"
    assert "Traceback" not in gw.log()


def test_the_bounds_are_taken_from_the_config(tmp_path: Path) -> None:
    keys = "max_messages = 3\nmax_content_parts = 2\nmax_json_depth = 10\n"
    with gateway(tmp_path, keys) as proc:
        status, error = _send(proc, orjson.dumps({"model": "echo", "messages": HELLO * 4}))
        assert (status, error["param"]) == (400, "messages") and "limit is 3" in str(error["message"])
        parts = [{"type": "text", "text": "x"}] * 3
        status, error = _send(proc, orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": parts}]}))
        assert (status, error["param"]) == (400, "messages[0].content") and "limit is 2" in str(error["message"])
        status, error = _send(proc, _body("metadata", 12)[0])
        assert status == 400 and "10 levels" in str(error["message"])
        assert _send(proc, orjson.dumps({"model": "echo", "messages": HELLO * 3}))[0] == 200
