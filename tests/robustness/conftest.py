"""What the robustness tests share: a hostile upstream on loopback, one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.robustness.hostile_upstream import HostileUpstream


@pytest.fixture(scope="module")
def up() -> Iterator[HostileUpstream]:
    with HostileUpstream() as server:
        yield server
