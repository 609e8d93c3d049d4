"""Waiting in tests for a condition, not for a time.

A test that sleeps a fixed time and then checks bets that the machine was fast
enough; on a loaded machine the bet is lost now and then. These poll a
condition instead and return as soon as it holds. The timeout only bounds a
failure, so it is generous: a passing test never waits for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

TIMEOUT = 20.0  # seconds: far beyond any wait of a passing test, even on a busy machine
_POLL = 0.005


def wait_until(predicate: Callable[[], object], timeout: float = TIMEOUT, what: str = "") -> None:
    """Return once ``predicate()`` is true; ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what or predicate}")
        time.sleep(_POLL)


def room_in_this_minute(seconds: float = 10.0) -> None:
    """Return once at least ``seconds`` are left of this wall-clock minute.

    Per-minute limits (``rpm``, ``tpm``) count in wall-clock minutes: a test that asks
    for a limit's requests and its refusal must not straddle two of them (at most a
    minute's wait, when a test starts just before the minute turns)."""
    wait_until(lambda: 60 - time.time() % 60 >= seconds, 61, f"{seconds:g}s left in the minute")


async def await_until(predicate: Callable[[], object], timeout: float = TIMEOUT, what: str = "") -> None:
    """``wait_until`` for a test on an event loop: the loop runs while it waits."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what or predicate}")
        await asyncio.sleep(_POLL)
