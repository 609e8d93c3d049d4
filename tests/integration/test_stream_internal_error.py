"""A bug of ours in the middle of a stream still ends it with an error event, never like a success."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from polyroute.adapters import Call
from polyroute.adapters.base import make_chunk
from polyroute.adapters.fake import FakeAdapter
from polyroute.types import ChatChunk
from tests.support.live import live_gateway


class Buggy(FakeAdapter):
    async def stream(self, call: Call) -> AsyncIterator[ChatChunk]:
        yield make_chunk("c1", call.upstream_model, {"role": "assistant", "content": "half an "})
        raise RuntimeError("a bug, not an upstream failure")


def test_internal_error_mid_stream_is_an_error_event(caplog: pytest.LogCaptureFixture) -> None:
    raw = {"backends": {"f": {"type": "fake"}}, "models": {"m": {"backend": "f"}}}
    with live_gateway(raw) as g:
        g.gateway.fleet.adapters["f"] = Buggy("f", g.gateway.fleet.adapters["f"].config)
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.stream("POST", f"{g.base_url}/chat/completions", json=body) as resp:
            lines = [line for line in resp.iter_lines() if line]
    assert resp.status_code == 200
    assert "half an" in lines[0]
    assert lines[-1].startswith('data: {"error"') and "internal_error" in lines[-1]
    assert "data: [DONE]" not in lines
    assert "a bug, not an upstream failure" not in "\n".join(lines)  # details stay in the log
    assert "a bug, not an upstream failure" in caplog.text
