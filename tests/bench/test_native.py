"""The native saturation tools (bench/native): they build, the upstream answers real
clients (the openai SDK, httpx, raw sockets) with bench.wire's bytes, and the load
generator's figures and error kinds mean what bench.loadgen's do."""

from __future__ import annotations

import os
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from bench import markdown, native, procs, runner, wire
from bench.plan import CHAT, SATURATE, Plan, Scenario
from bench.targets import INSTANT, SLOW
from tests.support.fault_upstream import FaultUpstream, closed_port

TOKENS = 7
LATENCY_KEYS = {"count", "mean", "min", "p50", "p90", "p99", "p999", "max"}


@pytest.fixture(scope="module")
def tools() -> native.Tools:
    built = native.build()
    if built is None:
        pytest.skip("no C compiler here")
    return built


@pytest.fixture(scope="module")
def upstream(tools: native.Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = procs.free_port()
    log = tmp_path_factory.mktemp("native") / "upstream.log"
    service = procs.Service("native-upstream", [str(tools.upstream), "--port", str(port), "--tokens", str(TOKENS)], log)
    try:
        procs.wait_for_port(port, service, timeout=10.0)
        yield port
    finally:
        service.stop()
    assert service.proc.returncode == 0  # SIGTERM is a clean exit


def _loadgen(tools: native.Tools, port: int, *args: str, model: str = wire.MODEL_INSTANT) -> dict[str, Any]:
    body = wire.request_body(model, stream=False, max_tokens=TOKENS).decode()
    argv = [str(tools.loadgen), "--port", str(port), "--body", body, "--warmup", "0.1", "--duration", "0.4", *args]
    proc = subprocess.run(argv, capture_output=True, timeout=60, check=True)
    result: dict[str, Any] = orjson.loads(proc.stdout)
    return result


# -- building --------------------------------------------------------------------------------


def test_build_compiles_once_and_again_when_a_source_is_newer(tmp_path: Path) -> None:
    first = native.build(tmp_path)
    assert first is not None and os.access(first.loadgen, os.X_OK) and os.access(first.upstream, os.X_OK)
    built_at = first.loadgen.stat().st_mtime_ns
    assert native.build(tmp_path) == first and first.loadgen.stat().st_mtime_ns == built_at  # up to date
    os.utime(first.loadgen, (0, 0))  # older than its source
    native.build(tmp_path)
    assert first.loadgen.stat().st_mtime_ns > 0


def test_no_compiler_means_python_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(native, "compiler", lambda: None)
    assert native.build(tmp_path) is None
    tools, note = runner.native_tools()
    assert tools is None and note is not None and "Python" in note
    assert runner.tools_used(tools, note)["saturate"]["loadgen"] == "bench/loadgen.py"


def test_a_failing_compiler_is_a_build_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CC", "false")
    with pytest.raises(native.BuildError, match="exited with 1"):
        native.build(tmp_path)


# -- the upstream ----------------------------------------------------------------------------


def test_openai_sdk_reads_the_completion(upstream: int) -> None:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{upstream}/v1", api_key="sk-any", max_retries=0)
    answer = client.chat.completions.create(model="any-model", messages=[{"role": "user", "content": "hi"}])
    assert answer.object == "chat.completion" and answer.model == "any-model"
    assert answer.choices[0].message.content == wire.TOKEN_TEXT * TOKENS
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == TOKENS
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + TOKENS
    assert [m.id for m in client.models.list()] == [wire.MODEL_SLOW, wire.MODEL_INSTANT]


def test_same_bytes_as_the_python_upstream(upstream: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{upstream}") as client:
        body = wire.request_body('m "quoted"', stream=False, max_tokens=3)
        got = client.post("/v1/chat/completions", content=body)
        ident = int(got.json()["id"].removeprefix("chatcmpl-bench"))
        assert got.content == wire.completion('m "quoted"', ident, TOKENS)
        for usage in (True, False):
            payload = {"model": "s", "messages": [], "stream": True, "stream_options": {"include_usage": usage}}
            got = client.post("/v1/chat/completions", json=payload)
            assert got.headers["content-type"] == "text/event-stream"
            ident = int(orjson.loads(got.content.split(b"\n")[0][6:])["id"].removeprefix("chatcmpl-bench"))
            events = wire.StreamEvents("s", ident, TOKENS, usage)
            assert got.content == events.first + events.token * TOKENS + events.last


def test_openai_sdk_reads_the_stream(upstream: int) -> None:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{upstream}/v1", api_key="sk-any", max_retries=0)
    chunks = list(
        client.chat.completions.create(model="m", messages=[], stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == wire.TOKEN_TEXT * TOKENS
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == TOKENS


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        ("GET", "/v1/nowhere", None, {}, 404),
        ("GET", "/v1/chat/completions", None, {}, 405),
        ("POST", "/v1/models", b"{}", {}, 405),
        ("POST", "/v1/chat/completions", b'{"model": 1}', {}, 400),
        ("POST", "/v1/chat/completions", b'{"model": "m",}', {}, 400),
        ("POST", "/v1/chat/completions", b'{"model": "m"} x', {}, 400),
        ("POST", "/v1/chat/completions", b'{"model":"m"}', {"Transfer-Encoding": "chunked"}, 411),
    ],
)
def test_errors_are_json_in_openais_shape(
    upstream: int, method: str, path: str, body: bytes | None, headers: dict[str, str], status: int
) -> None:
    if "Transfer-Encoding" in headers:
        body_parts: Any = iter([body or b""])  # an iterator makes httpx send a chunked body
    else:
        body_parts = body
    got = httpx.request(method, f"http://127.0.0.1:{upstream}{path}", content=body_parts, headers=headers)
    assert got.status_code == status
    assert isinstance(got.json()["error"]["message"], str)


def _read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """count JSON answers off a raw socket, framed by their Content-Length."""
    data = b""
    answers: list[bytes] = []
    while len(answers) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            length = int(data.split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(data) >= head_end + 4 + length:
                answers.append(data[head_end + 4 : head_end + 4 + length])
                data = data[head_end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        assert chunk, "the upstream closed the connection"
        data += chunk
    return answers


def test_pipelined_and_split_requests(upstream: int) -> None:
    models = [f"model-{i}" for i in range(3)]
    requests = [
        wire.http_request(
            "127.0.0.1", upstream, "/v1/chat/completions", wire.request_body(m, stream=False, max_tokens=1), "k"
        )
        for m in models
    ]
    with socket.create_connection(("127.0.0.1", upstream), timeout=5) as sock:
        sock.sendall(b"".join(requests))  # pipelined: one write
        assert [orjson.loads(a)["model"] for a in _read_answers(sock, 3)] == models
        for i in range(0, len(requests[0]), 7):  # split: many writes, many reads
            sock.sendall(requests[0][i : i + 7])
            time.sleep(0.002)
        assert orjson.loads(_read_answers(sock, 1)[0])["model"] == models[0]
        sock.sendall(requests[1].replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
        assert orjson.loads(_read_answers(sock, 1)[0])["model"] == models[1]
        assert sock.recv(1) == b""  # closed after the answer, as asked


# -- the load generator ----------------------------------------------------------------------


def test_loadgen_figures_are_sane_and_keyed_as_bench_loadgen(tools: native.Tools, upstream: int) -> None:
    r = _loadgen(tools, upstream, "--concurrency", "8", "--requests", "1000000")
    assert r["errors"] == 0 and r["error_kinds"] == {} and r["ok"] > 0
    lat = r["latency_ms"]
    assert set(lat) == LATENCY_KEYS and lat["count"] == r["ok"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"]
    assert r["rps"] == pytest.approx(r["ok"] / r["window_s"], rel=1e-3)
    assert r["window_s"] >= 0.4 and r["warmup_s"] >= 0.1
    assert r["connects"] == 8 and r["answered_total"] >= r["ok"] + r["unfinished_after_window"]
    assert r["loadgen_cpu_s"] > 0
    argv = ["--port", str(upstream), "--model", wire.MODEL_INSTANT, "--concurrency", "2", "--duration", "0.2"]
    python = subprocess.run(
        [runner._python(), "-m", "bench.loadgen", *argv, "--warmup", "0"],
        capture_output=True,
        timeout=60,
        check=True,
        env=runner._child_env(),
    )
    assert set(orjson.loads(python.stdout)) == set(r)  # the keys runner.py and report.py read


def test_coalescing_tools_measure_the_same_thing(tools: native.Tools, tmp_path: Path) -> None:
    port = procs.free_port()
    argv = [str(tools.upstream), "--port", str(port), "--coalesce-us", "300"]
    service = procs.Service("coalescing-upstream", argv, tmp_path / "upstream.log")
    try:
        procs.wait_for_port(port, service, timeout=10.0)
        r = _loadgen(tools, port, "--concurrency", "16", "--coalesce-us", "300")
    finally:
        service.stop()
    assert r["errors"] == 0 and r["ok"] > 0 and 0 < r["latency_ms"]["min"] <= r["latency_ms"]["max"]


def test_loadgen_stops_at_the_request_count(tools: native.Tools, upstream: int) -> None:
    r = _loadgen(tools, upstream, "--concurrency", "4", "--requests", "50")
    assert r["ok"] == 50 and r["errors"] == 0


@pytest.mark.parametrize(
    ("model", "kind"),
    [("status-503", "http_503"), ("reset", "closed"), ("badjson", "invalid"), ("slowheaders-30000", "timeout")],
)
def test_loadgen_counts_errors_by_kind(tools: native.Tools, model: str, kind: str) -> None:
    # A short timeout only where a timeout is the point: an answer at once may take a loaded machine a while.
    timeout = "0.3" if kind == "timeout" else "10"
    with FaultUpstream() as up:
        r = _loadgen(tools, up.port, "--concurrency", "2", "--timeout", timeout, model=model)
    assert r["ok"] == 0 and r["errors"] > 0 and set(r["error_kinds"]) == {kind}, r
    assert r["error_samples"][0].startswith(f"{kind}: ")


def test_loadgen_counts_refused_connections(tools: native.Tools) -> None:
    r = _loadgen(tools, closed_port(), "--concurrency", "2")
    assert r["ok"] == 0 and set(r["error_kinds"]) == {"connect"} and r["connects"] > 2


class _Canned(socketserver.ThreadingTCPServer):
    """Answers every request with fixed bytes, written in small pieces (so they arrive over many reads)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer: bytes, close: bool) -> None:
        self.answer, self.close_after = answer, close
        super().__init__(("127.0.0.1", 0), _CannedHandler)


class _CannedHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: _Canned = self.server  # type: ignore[assignment]
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                chunk = self.request.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(data) < length:
                data += self.request.recv(65536)
            data = data[length:]
            for i in range(0, len(server.answer), 40):
                self.request.sendall(server.answer[i : i + 40])
            if server.close_after:
                return


def _chunked(body: bytes, close: bool) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n"
    chunks = b"".join(
        b"%x;ext=1\r\n%s\r\n" % (len(body[i : i + 50]), body[i : i + 50]) for i in range(0, len(body), 50)
    )
    return head + (b"connection: close\r\n" if close else b"") + b"\r\n" + chunks + b"0\r\n\r\n"


@pytest.mark.parametrize("close", [False, True])
def test_loadgen_reads_chunked_split_answers_and_reconnects(tools: native.Tools, close: bool) -> None:
    server = _Canned(_chunked(wire.completion("m", 1, 3), close), close)
    with server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        r = _loadgen(tools, server.server_address[1], "--concurrency", "2", "--requests", "100", "--duration", "20")
        server.shutdown()
    assert r["errors"] == 0 and r["ok"] == 100, r
    assert (r["connects"] > 2) == close  # a closed connection is reopened; a kept one is reused


def test_loadgen_refuses_other_hosts(tools: native.Tools) -> None:
    proc = subprocess.run(
        [str(tools.loadgen), "--host", "10.1.2.3", "--port", "80", "--body", "{}"], capture_output=True
    )
    assert proc.returncode == 2 and b"loopback" in proc.stderr


# -- through the runner ----------------------------------------------------------------------


def test_runner_uses_the_native_tools_for_saturation_only(tools: native.Tools) -> None:
    plan = Plan.smoke()
    saturate = runner._loadgen_argv(Scenario(SATURATE, 4), plan, 9, "m", tools)
    assert saturate[0] == str(tools.loadgen) and saturate[-2:] == ["--coalesce-us", str(plan.coalesce_us)]
    assert runner._loadgen_argv(Scenario(CHAT, 4), plan, 9, "m", tools)[1:3] == ["-m", "bench.loadgen"]
    assert runner._upstream_argv(plan, INSTANT, 9, tools)[0] == str(tools.upstream)
    assert runner._upstream_argv(plan, SLOW, 9, tools)[1:3] == ["-m", "bench.upstream"]
    assert runner._loadgen_argv(Scenario(SATURATE, 4), plan, 9, "m", None)[1:3] == ["-m", "bench.loadgen"]


def test_runner_measures_saturation_with_the_native_tools(tools: native.Tools, tmp_path: Path) -> None:
    plan = Plan.smoke().with_(chat_concurrency=(), stream_concurrency=())
    results = runner.run_all(plan, ["direct"], tmp_path, command="test", llamacpp_hook=False)
    sat = results["targets"]["direct"]["scenarios"]["saturate-c4"]
    assert sat["tools"] == "native" and sat["errors"] == 0 and sat["ok"] == plan.max_requests
    assert results["plan"]["coalesce_us"] == plan.coalesce_us > 0  # the runner asks the native tools to coalesce
    assert results["tools"]["saturate"] == {"loadgen": "bench/native/loadgen.c", "upstream": "bench/native/upstream.c"}
    assert results["figures"]["saturation"]["direct"]["instrument_cpu_ms_per_req"] > 0
    assert "saturation: bench/native/loadgen.c against bench/native/upstream.c" in markdown.render(results)
