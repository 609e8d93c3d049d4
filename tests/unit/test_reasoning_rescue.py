"""A stream cut while the model was still reasoning: what the client reads, and what is tried next."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from polyroute.adapters import Adapter, Call
from polyroute.adapters.base import make_chunk, usage_chunk
from polyroute.errors import UpstreamUnavailable
from polyroute.types import ChatChunk, ChatResponse, chunk_has_token, make_usage
from tests.unit.failover_support import collect, config, gateway, outcomes, request, text

pytestmark = pytest.mark.anyio

THOUGHT = ["The user greets me.", " A short greeting back fits."]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Reasoner(Adapter):
    """Reasons under the field its upstream model id names, then answers; ``...-cut`` breaks mid-thought."""

    kind = "fake"

    async def complete(self, call: Call) -> ChatResponse:
        raise NotImplementedError

    async def stream(self, call: Call) -> AsyncIterator[ChatChunk]:
        model = call.upstream_model  # "<field>" or "<field>-cut"
        field = model.removesuffix("-cut")
        yield make_chunk("c1", model, {"role": "assistant", "content": ""})
        yield make_chunk("c1", model, {field: THOUGHT[0]})  # type: ignore[misc]
        if model.endswith("-cut"):
            raise UpstreamUnavailable("connection broken", backend=self.name, model=model)
        yield make_chunk("c1", model, {field: THOUGHT[1]})  # type: ignore[misc]
        yield make_chunk("c1", model, {"content": "Hello!"})
        yield make_chunk("c1", model, {}, "stop")
        yield usage_chunk("c1", model, make_usage(5, 7))


def reasoning(chunks: list[ChatChunk]) -> str:
    out = ""
    for c in chunks:
        for ch in c["choices"]:
            delta = ch["delta"]
            out += (delta.get("reasoning_content") or "") + (delta.get("reasoning") or "")
    return out


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_of_either_name_is_a_first_token(field: str) -> None:
    assert chunk_has_token(make_chunk("c", "m", {field: "Let me think."}))  # type: ignore[misc]
    assert not chunk_has_token(make_chunk("c", "m", {"role": "assistant", "content": ""}))


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_a_cut_during_reasoning_is_answered_afresh_without_the_reasoning_twice(field: str) -> None:
    # The second backend cannot continue a partial answer: after reasoning alone there is none
    # to continue, so it may serve.
    gw = gateway(config(("thinker", "r1", f"{field}-cut"), ("other", "nc2", field)))
    for name in ("r1", "nc2"):
        gw.fleet.adapters[name] = Reasoner(name, gw.fleet.adapters[name].config)
    chunks, report, exc = await collect(gw, request(stream=True))
    assert exc is None
    assert outcomes(report) == [("thinker", "stream_cut"), ("other", "ok")] and report.rescued
    assert reasoning(chunks) == THOUGHT[0]  # what the client read before the cut, once
    assert text(chunks) == "Hello!"
    assert len({c["id"] for c in chunks if c["choices"]}) == 1
    # The withheld reasoning is still billed: the rescue reported its own usage.
    assert report.usage["completion_tokens"] >= 7
