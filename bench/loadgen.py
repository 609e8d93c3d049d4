"""The load generator: fixed concurrency, bounded by request count and by time.

Each concurrent worker owns one keep-alive HTTP/1.1 connection (a raw asyncio
protocol on uvloop, responses parsed by httptools) and sends the same prebuilt
request again and again. As wrk does, it records the requests that complete
inside the measurement window (see ``_Run``): throughput is completions / window,
and stays meaningful when one request takes longer than the window. Answers
that arrive after the window are awaited (so the target is idle when the next
measurement starts) but not recorded. It records per-request latency,
time to first token for streams (the first ``data:`` line whose delta carries
content) and errors, and prints one JSON object. It stops by itself: no new
request after the window, and no request waits longer than ``--timeout``.

    python -m bench.loadgen --port 9001 --concurrency 64 --requests 20000 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import math
import resource
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import cast

import httptools
import orjson
import uvloop

from bench import stats, wire

_MAX_SAMPLES = 5
_BUFFER_CAP = 1 << 20


def _has_content(payload: bytes) -> bool:
    try:
        choices = orjson.loads(payload).get("choices")
        return bool(choices) and bool(choices[0].get("delta", {}).get("content"))
    except (orjson.JSONDecodeError, AttributeError, TypeError, IndexError):
        return False


class _Client(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.body = bytearray()
        self.tail = b""
        self.t_first = 0.0
        self.error: tuple[str, str] | None = None
        self.keep_alive = True
        self.usage_seen = False

    def send(self, request: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self._reset()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def fail(self, kind: str, detail: str) -> None:
        if self.error is None:
            self.error = (kind, detail)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def timeout(self) -> None:
        self.fail("timeout", "no complete response in time")
        if self.transport is not None:
            self.transport.abort()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail("protocol", f"bad HTTP response: {exc}")
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.fail("closed", f"connection closed mid-response ({exc or 'EOF'})")

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        if not self.stream or self.parser.get_status_code() != 200:
            if len(self.body) < _BUFFER_CAP:
                self.body += body
        elif self.t_first:
            joined = self.tail + body
            self.usage_seen = self.usage_seen or b'"completion_tokens"' in joined
            self.tail = joined[-256:]
        else:
            self._first_token(body)

    def _first_token(self, body: bytes) -> None:
        self.body += body
        end = self.body.rfind(b"\n")
        if end < 0:
            return
        for line in bytes(self.body[:end]).split(b"\n"):
            line = line.strip()
            if line.startswith(b"data:") and _has_content(line[5:].strip()):
                self.t_first = time.perf_counter()
                self.usage_seen = b'"completion_tokens"' in self.body
                self.tail = bytes(self.body[-256:])
                self.body = bytearray()
                return
        del self.body[: end + 1]

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        status = self.parser.get_status_code()
        if status != 200:
            self.fail(f"http_{status}", bytes(self.body[:300]).decode("utf-8", "replace"))
        elif self.stream:
            if not self.t_first:
                self.fail("invalid", "stream ended without a content token")
            elif b"[DONE]" not in self.tail:
                self.fail("invalid", "stream did not end with data: [DONE]")
        else:
            self._check_completion()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _check_completion(self) -> None:
        try:
            content = orjson.loads(self.body)["choices"][0]["message"]["content"]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str) or not content:
            self.fail("invalid", "completion without choices[0].message.content")


@dataclass
class Options:
    host: str
    port: int
    path: str
    model: str
    stream: bool
    concurrency: int
    requests: int
    duration: float
    warmup: float
    timeout: float
    api_key: str
    max_tokens: int


class _Run:
    """The measurement window and the counters shared by the workers (one event loop, no locks).

    The window opens when the warm-up time has passed and every connection has
    completed one request (so connection set-up never lands in it), or at the
    latest ``timeout`` seconds after that. It closes after ``duration`` seconds
    once it holds ``min(concurrency, requests)`` completions, when it holds
    ``requests``, or ``timeout`` seconds after ``duration`` whatever it holds.
    A request counts when it completes inside the window, as in wrk.
    """

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        body = wire.request_body(opts.model, stream=opts.stream, max_tokens=opts.max_tokens)
        self.request = wire.http_request(opts.host, opts.port, opts.path, body, opts.api_key)
        self.started = time.perf_counter()
        self.opened_at: float | None = None
        self.closed_at: float | None = None
        self.stop_at = math.inf  # duration elapsed: close as soon as enough completions are in
        self.min_completions = min(opts.concurrency, opts.requests)
        self.warmed = 0  # connections that have completed their first request
        self.unfinished = 0  # answers that came after the window: awaited, not recorded
        self.answered = 0  # every answer or failure, warm-up and drain included
        self.latencies: list[float] = []
        self.ttfts: list[float] = []
        self.usage_seen = 0
        self.errors: Counter[str] = Counter()
        self.samples: list[str] = []
        self.connects = 0

    # the window
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(self.opts.warmup + self.opts.timeout, self._open)

    def _warm_one(self) -> None:
        self.warmed += 1
        if self.warmed == self.opts.concurrency:
            delay = self.started + self.opts.warmup - time.perf_counter()
            asyncio.get_running_loop().call_later(max(0.0, delay), self._open)

    def _open(self) -> None:
        if self.opened_at is not None:
            return
        self.opened_at = time.perf_counter()
        self.stop_at = self.opened_at + self.opts.duration
        loop = asyncio.get_running_loop()
        loop.call_later(self.opts.duration, self._maybe_close)
        loop.call_later(self.opts.duration + self.opts.timeout, self._close)

    def _maybe_close(self) -> None:
        n = len(self.latencies) + sum(self.errors.values())
        if n >= self.opts.requests or (time.perf_counter() >= self.stop_at and n >= self.min_completions):
            self._close()

    def _close(self) -> None:
        if self.closed_at is None:
            self.closed_at = time.perf_counter()

    def may_issue(self) -> bool:
        return self.closed_at is None

    def in_window(self, t: float) -> bool:
        return self.opened_at is not None and self.opened_at <= t and self.closed_at is None

    # recording
    def record_error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.samples) < _MAX_SAMPLES:
            self.samples.append(f"{kind}: {detail}")
        self._maybe_close()

    def _record(self, client: _Client, t0: float, t1: float) -> None:
        if client.error is not None:
            self.record_error(*client.error)
            return
        self.latencies.append(t1 - t0)
        if client.stream:
            self.ttfts.append(client.t_first - t0)
            self.usage_seen += client.usage_seen
        self._maybe_close()

    # the workers
    async def connect(self) -> _Client | None:
        loop = asyncio.get_running_loop()
        self.connects += 1
        try:
            _, client = await asyncio.wait_for(
                loop.create_connection(lambda: _Client(self.opts.stream), self.opts.host, self.opts.port), 5.0
            )
            return client
        except (TimeoutError, OSError) as exc:
            if self.in_window(time.perf_counter()):
                self.record_error("connect", repr(exc))
            await asyncio.sleep(0.05)
            return None

    async def worker(self) -> None:
        loop = asyncio.get_running_loop()
        client: _Client | None = None
        first = True
        while self.may_issue():
            if client is None or client.closed:
                client = await self.connect()
                if client is None:
                    if first:
                        first = False
                        self._warm_one()
                    continue
            t0 = time.perf_counter()
            timer = loop.call_later(self.opts.timeout, client.timeout)
            await client.send(self.request)
            timer.cancel()
            t1 = time.perf_counter()
            self.answered += 1
            if self.in_window(t1):
                self._record(client, t0, t1)
            elif self.closed_at is not None:
                self.unfinished += 1
            if first:
                first = False
                self._warm_one()
            if client.error is not None or not client.keep_alive:
                if client.transport is not None:
                    client.transport.close()
                client = None
        if client is not None and client.transport is not None:
            client.transport.close()

    def result(self) -> dict[str, object]:
        opened = self.opened_at or self.started
        window = (self.closed_at or time.perf_counter()) - opened
        ok = len(self.latencies)
        failed = sum(self.errors.values())
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out: dict[str, object] = {
            "ok": ok,
            "errors": failed,
            "error_rate": failed / (ok + failed) if ok + failed else 0.0,
            "error_kinds": dict(self.errors),
            "error_samples": self.samples,
            "warmup_s": round(opened - self.started, 4),
            "window_s": round(window, 4),
            "rps": ok / window if window > 0 else 0.0,
            "latency_ms": stats.summarize_ms(self.latencies),
            "unfinished_after_window": self.unfinished,
            "answered_total": self.answered,
            "connects": self.connects,
            "loadgen_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        }
        if self.opts.stream:
            out["ttft_ms"] = stats.summarize_ms(self.ttfts)
            out["stream_usage_seen"] = self.usage_seen / ok if ok else 0.0
        return out


def hard_limit(warmup: float, duration: float, timeout: float) -> float:
    """Seconds after which a run has certainly ended: window open, closed, last answer awaited."""
    return warmup + duration + 3 * timeout + 5.0


async def run(opts: Options) -> dict[str, object]:
    """Run one bounded measurement and return its figures."""
    state = _Run(opts)
    state.start()
    tasks = [asyncio.create_task(state.worker()) for _ in range(opts.concurrency)]
    done, late = await asyncio.wait(tasks, timeout=hard_limit(opts.warmup, opts.duration, opts.timeout))
    for task in late:
        task.cancel()
    if late:
        state.record_error("stuck", f"{len(late)} workers still running at the hard limit")
    for task in done:
        if task.exception() is not None:
            state.record_error("crash", repr(task.exception()))
    return state.result()


def _options(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/v1/chat/completions")
    p.add_argument("--model", default=wire.MODEL_SLOW)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--requests", type=int, default=10_000, help="stop after this many recorded requests")
    p.add_argument("--duration", type=float, default=5.0, help="stop issuing after this many seconds")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds one request may take")
    p.add_argument("--api-key", default="sk-bench-0000")
    p.add_argument("--max-tokens", type=int, default=16)
    a = p.parse_args(argv)
    if a.host != "localhost" and not ipaddress.ip_address(a.host).is_loopback:
        p.error(f"refusing to send load to {a.host}: the benchmark stays on loopback")
    if not 1 <= a.concurrency <= 4096 or a.requests < 1 or not 0 < a.duration <= 3600:
        p.error("need 1 <= concurrency <= 4096, requests >= 1 and 0 < duration <= 3600")
    return Options(
        a.host,
        a.port,
        a.path,
        a.model,
        a.stream,
        a.concurrency,
        a.requests,
        a.duration,
        a.warmup,
        a.timeout,
        a.api_key,
        a.max_tokens,
    )


def main(argv: list[str] | None = None) -> int:
    opts = _options(argv)
    gc.disable()  # no reference cycles are made per request; a collection would only add jitter
    result = uvloop.run(run(opts))
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
