"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fault_upstream import FaultUpstream


@pytest.fixture(scope="module")
def up() -> Iterator[FaultUpstream]:
    """A fault-injecting OpenAI-compatible upstream on loopback, one per test module."""
    with FaultUpstream() as server:
        yield server
