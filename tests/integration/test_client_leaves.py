"""A client that leaves mid-stream: the gateway lets go of the upstream at once and bills what it sent."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.faults import Fleet, upstream
from tests.support.fault_upstream import ANSWER, FaultUpstream
from tests.support.live import Live
from tests.support.wait import wait_until

# The route waits this long for a first or a next token: leaving must not wait for it. Long, so that
# the gateway letting go because of its own timers is never mistaken for letting go because the client left.
STALL = 60.0


@pytest.fixture(scope="module")
def live(up: FaultUpstream) -> Iterator[Live]:
    fleet = Fleet(up)
    fleet.route("leave", "stall-3", stall_timeout=STALL, first_token_timeout=STALL,
                limits={"timeout": STALL, "answer_timeout": STALL})
    with fleet.serve() as g:
        yield g


def test_a_client_leaving_mid_stream_frees_the_upstream_at_once(
    live: Live, up: FaultUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"model": "leave", "stream": True, "messages": [{"role": "user", "content": "Spell the NATO alphabet"}]}
    caplog.set_level(logging.INFO, logger="polyroute.access")
    with httpx.Client(timeout=10) as c, c.stream("POST", f"{live.base_url}/chat/completions", json=body) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        # Read every token the upstream sends before its stall: the client then leaves while the
        # upstream stalls, not while it is still writing (which would race the gateway's close with
        # the upstream's writes, and depend on how the threads were scheduled).
        text = ""
        for line in resp.iter_lines():
            if line.startswith("data: "):
                text += "".join(c["delta"].get("content") or "" for c in json.loads(line[6:])["choices"])
            if text == " ".join(ANSWER.split()[:3]):
                break
        assert text == "Alpha bravo charlie"
    left = time.monotonic()  # the connection is closed here, while the upstream stalls
    model = upstream("leave", 0, "stall-3")
    wait_until(lambda: up.hangups, what="the gateway letting go of the stalled upstream")
    assert [h.model for h in up.hangups] == [model]
    assert time.monotonic() - left < STALL / 2  # not the stall timeout: the gateway let go when the client did
    wait_until(lambda: any("route=leave" in r.getMessage() for r in caplog.records), what="the access log line")
    line = next(r.getMessage() for r in caplog.records if "route=leave" in r.getMessage())
    assert "cancelled" in line and "tokens=0" not in line  # the attempt was let go of, and billed
