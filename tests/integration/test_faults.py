"""Every fault, through the real gateway on localhost, as the client sees it.

Each row names the fault of the first candidate (the second answers normally),
whether the request streams, what the client must read, how many attempts the
gateway reports, and how many requests each candidate received. No row waits on a
wall-clock window: a fault that ends an attempt at once must show as that fault in
the attempt log, never as a timeout; a slow fault must show as a timeout that came
long before the slow upstream would have answered.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.integration.faults import SLOW_MS, TIMEOUT, Fleet, Sse, stream, upstream
from tests.support.fault_upstream import ANSWER, FaultUpstream
from tests.support.live import Live


@dataclass(frozen=True)
class Row:
    id: str
    fault: str  # the first candidate's; "refused" means its port is closed
    stream: bool
    expect: str  # "answer", "rescued", "error-event", or an HTTP status
    attempts: int  # x-polyroute-attempts: at the first token for streams
    hits: tuple[int, int]  # requests the fault upstream got for each candidate
    fallback: str = "ok"
    continuation: str = "prefix"

    @property
    def slow(self) -> bool:
        """The first candidate only ends by the gateway's own timer (a timeout, or a stall)."""
        return self.fault.startswith(("slow", "stall"))


ROWS = [
    Row("refused", "refused", False, "answer", 2, (0, 1)),
    Row("refused-s", "refused", True, "answer", 2, (0, 1)),
    Row("reset", "reset", False, "answer", 2, (1, 1)),
    Row("reset-s", "reset", True, "answer", 2, (1, 1)),
    Row("429", "status-429+retry-30", False, "answer", 2, (1, 1)),
    Row("500", "status-500", False, "answer", 2, (1, 1)),
    Row("502-s", "status-502", True, "answer", 2, (1, 1)),
    Row("503", "status-503", False, "answer", 2, (1, 1)),
    Row("408-s", "status-408", True, "answer", 2, (1, 1)),
    Row("block", "block", False, "answer", 2, (1, 1)),
    Row("block-s", "block", True, "answer", 2, (1, 1)),
    Row("auth", "auth", False, "answer", 2, (1, 1)),
    Row("slow-headers", f"slowheaders-{SLOW_MS}", False, "answer", 2, (1, 1)),
    Row("slow-headers-s", f"slowheaders-{SLOW_MS}", True, "answer", 2, (1, 1)),
    Row("slow-first-s", f"slowfirst-{SLOW_MS}", True, "answer", 2, (1, 1)),
    Row("badjson", "badjson", False, "answer", 2, (1, 1)),
    Row("badjson-s", "badjson", True, "answer", 2, (1, 1)),
    Row("reset-body", "resetbody-3", False, "answer", 2, (1, 1)),
    Row("malformed-first-s", "malformed-0", True, "answer", 2, (1, 1)),
    Row("stall-s", "stall-3", True, "rescued", 1, (1, 1)),
    Row("cut-s", "cut-3", True, "rescued", 1, (1, 1)),
    Row("reset-body-s", "resetbody-3", True, "rescued", 1, (1, 1)),
    Row("malformed-s", "malformed-3", True, "rescued", 1, (1, 1)),
    Row("error-event-s", "errorevent-3", True, "rescued", 1, (1, 1)),
    Row("no-continuation-s", "cut-3", True, "error-event", 1, (1, 0), continuation="none"),
    Row("tool-call-cut-s", "tools+cut-2", True, "error-event", 1, (1, 0)),
    Row("bad-request", "bad400", False, "400", 1, (1, 0)),
    Row("bad-request-s", "bad400", True, "400", 1, (1, 0)),
    Row("all-down", "status-503", False, "502", 2, (1, 1), fallback="status-500"),
    Row("all-blocked-s", "block", True, "503", 2, (1, 1), fallback="block"),
]


@pytest.fixture(scope="module")
def live(up: FaultUpstream) -> Iterator[Live]:
    fleet = Fleet(up)
    for row in ROWS:
        fleet.route(row.id, row.fault, row.fallback, refused=(0,) if row.fault == "refused" else (),
                    continuation=row.continuation)
    fleet.route("ctx", "context", "ok", "ok", windows=(8192, 8192, 131072))
    fleet.route("ctx-none", "context", "ok", windows=(8192, 8192))
    fleet.route("rate", "status-429+retry-30", "ok")
    fleet.route("blocked", "block", "block")
    fleet.route("keyless", "auth", "ok")
    fleet.route("sdk-rescue", "stall-4", "ok")
    fleet.route("sdk-cut", "cut-4", "ok", continuation="none")
    with fleet.serve() as g:
        yield g


@pytest.fixture(scope="module")
def client(live: Live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)


def ask() -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": "Spell the NATO alphabet"}]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_fault(row: Row, live: Live, client: openai.OpenAI, up: FaultUpstream) -> None:
    if row.stream:
        check_stream(row, stream(live, row.id))
    else:
        check_whole(row, client)
    first = "ok" if row.fault == "refused" else row.fault
    assert (up.count(upstream(row.id, 0, first)), up.count(upstream(row.id, 1, row.fallback))) == row.hits


def check_cause(row: Row, seconds: float, attempt_log: str) -> None:
    """What ended the first attempt: the gateway's timer for a slow fault, the fault itself for any other."""
    assert seconds < SLOW_MS / 1000  # never the slow upstream's own pace
    first = attempt_log.split("; ")[0]
    if row.slow and row.expect == "answer":  # a timeout before the first token (a stall shows in no header)
        assert f"{row.id}-0 timeout " in first, attempt_log
    elif not row.slow:  # failed over at once: every attempt ended before any limit could fire
        assert all(int(entry.rsplit(" ", 1)[1].removesuffix("ms")) < TIMEOUT * 1000
                   for entry in attempt_log.split("; ") if entry), attempt_log


def check_whole(row: Row, client: openai.OpenAI) -> None:
    started = time.monotonic()
    if row.expect == "answer":
        raw = client.chat.completions.with_raw_response.create(model=row.id, messages=ask())
        assert raw.parse().choices[0].message.content == ANSWER
        headers = raw.headers
    else:
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model=row.id, messages=ask())
        assert str(info.value.status_code) == row.expect
        headers = info.value.response.headers
    check_cause(row, time.monotonic() - started, headers["x-polyroute-attempt-log"])
    assert headers["x-polyroute-attempts"] == str(row.attempts)
    assert len(headers["x-polyroute-attempt-log"].split("; ")) == row.attempts


def check_stream(row: Row, sse: Sse) -> None:
    # At the first token: a stream's head lists the attempts that had ended by then (maybe none).
    check_cause(row, sse.seconds, sse.headers.get("x-polyroute-attempt-log", ""))
    assert sse.headers["x-polyroute-attempts"] == str(row.attempts)
    if row.expect in ("answer", "rescued"):
        assert sse.status == 200 and sse.done and sse.text == ANSWER
        assert sse.usage is not None and sse.usage["total_tokens"] > 0
        assert sse.usage.get("estimated", False) is (row.expect == "rescued")
        rescued = row.expect == "rescued"
        assert sse.trailer == {"attempts": row.attempts + int(rescued), "rescued": rescued}
        ids = {e["id"] for e in sse.events if isinstance(e, dict) and e.get("choices")}
        assert len(ids) == 1  # a rescued answer reads as one
    elif row.expect == "error-event":
        assert sse.status == 200 and not sse.done and sse.error is not None
        assert sse.error["code"] == "stream_cut"
    else:
        assert str(sse.status) == row.expect and sse.error is not None


def test_block_is_reported_as_a_block(live: Live, client: openai.OpenAI) -> None:
    for attempts in ("2", "0"):
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="blocked", messages=ask())
        assert info.value.status_code == 503
        assert info.value.response.headers["x-polyroute-attempts"] == attempts
    # Both backends are now out for the block cooldown: nothing is tried, and the answer says why.
    assert "skipped: blocked" in info.value.message
    client.chat.completions.create(model="keyless", messages=ask())
    health = httpx.get(f"{live.root}/v1/health/backends").json()
    blocked = health["backends"]["blocked-b0"]
    assert (blocked["state"], blocked["reason"]) == ("open", "blocked")
    assert blocked["detail"] == "Country, region, or territory not supported"
    assert health["backends"]["keyless-b0"]["reason"] == "auth_error"
    assert health["models"]["blocked-0"]["state"] == "closed"  # a block is the backend's, not the model's


def test_retry_after_skips_the_backend_until_then(live: Live, client: openai.OpenAI, up: FaultUpstream) -> None:
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(model="rate", messages=ask())
        assert raw.parse().choices[0].message.content == ANSWER
    assert up.count(upstream("rate", 0, "status-429+retry-30")) == 1
    assert raw.headers["x-polyroute-attempts"] == "1"


def test_context_length_moves_to_a_larger_window(client: openai.OpenAI, up: FaultUpstream) -> None:
    raw = client.chat.completions.with_raw_response.create(model="ctx", messages=ask())
    assert raw.parse().choices[0].message.content == ANSWER
    assert raw.headers["x-polyroute-model"] == "ctx-2" and raw.headers["x-polyroute-attempts"] == "2"
    assert up.count(upstream("ctx", 1, "ok")) == 0  # same window: skipped
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="ctx-none", messages=ask())
    assert info.value.code == "context_length_exceeded"


def test_sdk_reads_a_rescued_stream_as_one_answer(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="sdk-rescue", messages=ask(), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_sdk_raises_on_a_stream_that_could_not_be_rescued(client: openai.OpenAI) -> None:
    got = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(model="sdk-cut", messages=ask(), stream=True):
            got.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(got) == "Alpha bravo charlie delta"
    assert "cut" in info.value.message
