"""Every request ends once, at one seam, however it ends: the observers see each exactly once."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import openai
import pytest

from polyroute.attempts import Report
from polyroute.finish import CLIENT_CLOSED, Finished
from polyroute.gateway import RequestContext
from tests.support.live import Live, live_gateway
from tests.support.wait import wait_until

RAW = {
    "backends": {"f": {"type": "fake"}},
    "models": {
        "echo": {"backend": "f", "input_per_mtok": 1.0, "output_per_mtok": 2.0},
        "down": {"backend": "f", "upstream": "error-503"},
        "cut": {"backend": "f", "upstream": "cut-2"},
        "slow": {"backend": "f", "upstream": "gap-200+text-a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p"},
    },
    "routes": {"main": {"models": ["down", "echo"]}, "dead": {"models": ["down"]}},
}


@dataclass
class Recorder:
    seen: list[tuple[RequestContext, Report, Finished]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        with self.lock:
            self.seen.append((ctx, report, outcome))

    def wait(self, n: int, timeout: float = 10.0) -> list[Finished]:
        # Returns what was seen even short of n: the caller's assertion says what was missing.
        with contextlib.suppress(AssertionError):
            wait_until(lambda: len(self.seen) >= n, timeout)
        return [f for _, _, f in self.seen]


class Broken:
    def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        raise RuntimeError("an observer with a bug")


@pytest.fixture
def live() -> Iterator[tuple[Live, Recorder]]:
    with live_gateway(RAW) as g:
        rec = Recorder()
        g.gateway.observers.add(Broken())  # before the recorder: it must not keep it from seeing
        g.gateway.observers.add(rec)
        yield g, rec


def ask(model: str, **kw: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi there"}], **kw}


def test_a_whole_answer_is_seen_once_with_its_outcome(live: tuple[Live, Recorder]) -> None:
    g, rec = live
    client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
    out = client.chat.completions.create(model="main", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.content == "You said: hi"
    [done] = rec.wait(1)
    ctx, report, _ = rec.seen[0]
    assert done.status == 200 and done.error is None and not done.stream
    assert done.request_id == ctx.request_id and done.request_id.startswith("req_")
    assert report.model is not None and report.model.name == "echo" and len(report.attempts) == 2
    assert done.latency_ms >= 0 and done.ttft_ms is None


def test_a_stream_is_seen_once_with_its_first_token_time(live: tuple[Live, Recorder]) -> None:
    g, rec = live
    client = openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hi"}], stream=True) if c.choices)
    assert text == "You said: hi"
    [done] = rec.wait(1)
    assert done.stream and done.status == 200 and done.error is None
    assert done.ttft_ms is not None and 0 <= done.ttft_ms <= done.latency_ms


@pytest.mark.parametrize(("body", "status", "code"), [
    (ask("nope"), 404, "model_not_found"),
    ({"model": "echo"}, 400, "invalid_request"),
    (ask("dead"), 502, "all_backends_failed"),
    (ask("dead", stream=True), 502, "all_backends_failed"),
])
def test_refusals_and_failures_are_seen_once(
    live: tuple[Live, Recorder], body: dict[str, object], status: int, code: str
) -> None:
    g, rec = live
    resp = httpx.post(f"{g.base_url}/chat/completions", json=body, timeout=10)
    assert resp.status_code == status
    [done] = rec.wait(1)
    assert (done.status, done.error) == (status, code)
    # Nothing more comes for it: the next request is the second and last thing seen.
    httpx.post(f"{g.base_url}/chat/completions", json=ask("echo"), timeout=10)
    assert [f.status for f in rec.wait(2)] == [status, 200]


def test_a_stream_cut_with_nobody_to_continue_it_is_seen_as_cut(live: tuple[Live, Recorder]) -> None:
    g, rec = live
    with httpx.stream("POST", f"{g.base_url}/chat/completions", json=ask("cut", stream=True), timeout=10) as r:
        body = r.read().decode()
    assert r.status_code == 200 and "stream_cut" in body
    [done] = rec.wait(1)
    assert done.status == 200 and done.error == "stream_cut" and done.first_token_at is not None


def test_an_unknown_model_is_not_counted_as_a_route(live: tuple[Live, Recorder]) -> None:
    """The name is the client's text, of any length: the ledger and the console would show it as a route."""
    g, rec = live
    name = "zzz-" + "x" * 5000
    assert httpx.post(f"{g.base_url}/chat/completions", json=ask(name), timeout=10).status_code == 404
    httpx.post(f"{g.base_url}/chat/completions", json=ask("echo"), timeout=10)
    rec.wait(2)
    routes = [report.route for _, report, _ in rec.seen]
    assert routes == ["", "echo"]


def test_a_client_that_leaves_mid_stream_is_seen_once(live: tuple[Live, Recorder]) -> None:
    g, rec = live
    with httpx.stream("POST", f"{g.base_url}/chat/completions", json=ask("slow", stream=True), timeout=10) as r:
        lines = r.iter_lines()
        next(line for line in lines if '"content"' in line)
    [done] = rec.wait(1)
    assert done.status == 200 and done.error == "client_closed" and done.stream
    assert CLIENT_CLOSED == 499
