"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fault_upstream import FaultUpstream
from tests.support.upstreams import ANTHROPIC, OPENAI, FakeUpstream


@pytest.fixture(scope="module")
def up() -> Iterator[FaultUpstream]:
    """A fault-injecting OpenAI-compatible upstream on loopback, one per test module."""
    with FaultUpstream() as server:
        yield server


@pytest.fixture
def first() -> Iterator[FakeUpstream]:
    """An OpenAI-compatible upstream that answers as scripted: a route's first model."""
    with FakeUpstream(OPENAI) as server:
        yield server


@pytest.fixture
def fallback() -> Iterator[FakeUpstream]:
    """Another, for the model a route falls over to."""
    with FakeUpstream(OPENAI) as server:
        yield server


@pytest.fixture
def claude() -> Iterator[FakeUpstream]:
    """An upstream speaking Anthropic's Messages API, as scripted."""
    with FakeUpstream(ANTHROPIC) as server:
        yield server
