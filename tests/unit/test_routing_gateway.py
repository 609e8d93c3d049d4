"""The gateway feeds every request's outcome to the router: ``fastest`` learns from real traffic."""

from __future__ import annotations

import asyncio

from polyroute import config as cfg
from polyroute.catalog import load_catalog
from polyroute.gateway import Gateway, RequestContext
from polyroute.types import ChatRequest

RAW = {
    "backends": {"f": {"type": "fake"}},
    "models": {
        # Slow enough that no pause of a loaded machine makes "quick" look slower, or "slow" faster.
        "slow": {"backend": "f", "upstream": "slow-1000+gap-100+text-one-two-three-four"},
        "quick": {"backend": "f", "upstream": "text-one-two-three-four"},
    },
    "routes": {"r": {"models": ["slow", "quick"], "strategy": "fastest"}},
}


def gateway() -> Gateway:
    return Gateway.from_config(cfg.parse(RAW, env={}), load_catalog())


def ask(stream: bool = False) -> ChatRequest:
    return ChatRequest.from_json({"model": "r", "messages": [{"role": "user", "content": "hi"}], "stream": stream})


def first_choice(g: Gateway) -> str:
    return g.plan(ask(), RequestContext()).candidates[0].name


async def whole(g: Gateway) -> str:
    _, report = await g.complete(ask(), RequestContext())
    assert report.model is not None
    return report.model.name


async def streamed(g: Gateway) -> str:
    chunks, report = g.stream(ask(stream=True), RequestContext())
    async for _ in chunks:
        pass
    assert report.model is not None
    return report.model.name


def test_fastest_learns_from_whole_answers() -> None:
    g = gateway()

    async def run() -> list[str]:
        return [await whole(g) for _ in range(4)]

    # Nothing measured: listed order; then the unmeasured one is tried; then the measured fastest.
    assert asyncio.run(run()) == ["slow", "quick", "quick", "quick"]
    stats = g.router.stats.models
    # 1 s less 4 tokens at the 50 tokens/s prior, against next to nothing.
    assert stats["slow"].ttft_s >= 0.9 > stats["quick"].ttft_s
    assert first_choice(g) == "quick"


def test_fastest_learns_time_to_first_token_and_speed_from_streams() -> None:
    g = gateway()

    async def run() -> list[str]:
        return [await streamed(g) for _ in range(3)]

    assert asyncio.run(run()) == ["slow", "quick", "quick"]
    slow, quick = g.router.stats.models["slow"], g.router.stats.models["quick"]
    assert slow.ttft_s > 0.9 > quick.ttft_s
    # Four tokens 100 ms apart: at most 4 / 0.3 s, below the 50 tokens/s prior, so measured, not assumed.
    assert slow.tokens_per_s is not None and 0 < slow.tokens_per_s < 50
    assert quick.tokens_per_s is not None and quick.tokens_per_s > slow.tokens_per_s
