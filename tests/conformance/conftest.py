"""One fake upstream per provider for the whole run; a fresh adapter for each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from polyroute.adapters import Adapter, build_adapter
from tests.conformance.providers import PROVIDERS, Provider
from tests.support.upstreams import FakeUpstream


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def upstreams() -> Iterator[dict[str, FakeUpstream]]:
    servers = {p.name: FakeUpstream(p.wire).start() for p in PROVIDERS}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(params=PROVIDERS, ids=str)
def provider(request: pytest.FixtureRequest) -> Provider:
    p: Provider = request.param
    return p


@pytest.fixture
def upstream(provider: Provider, upstreams: dict[str, FakeUpstream]) -> Iterator[FakeUpstream]:
    server = upstreams[provider.name]
    server.reset()
    yield server
    server.reset()


@pytest.fixture
async def adapter(provider: Provider, upstream: FakeUpstream) -> AsyncIterator[Adapter]:
    built = build_adapter(f"{provider.name}-test", provider.config(upstream.url))
    yield built
    await built.aclose()
