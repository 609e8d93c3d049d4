"""The HTTP/1.1 server under test: one per module, serving the handlers of tests.support.http11_app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.http11_app import Probe, make_app
from tests.support.live import serve_app


@pytest.fixture(scope="module")
def probe() -> Probe:
    return Probe()


@pytest.fixture(scope="module")
def root(probe: Probe) -> Iterator[str]:
    with serve_app(make_app(probe)) as url:
        yield url


@pytest.fixture
def port(root: str) -> int:
    return int(root.rsplit(":", 1)[1])
