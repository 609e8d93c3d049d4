"""The stall timer: one timer per stream, a deadline per wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from polyroute.stall import Deadline, StallTimer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def paced(gaps: list[float]) -> AsyncIterator[int]:
    for i, gap in enumerate(gaps):
        await asyncio.sleep(gap)
        yield i


async def test_a_wait_longer_than_the_limit_times_out() -> None:
    timer = StallTimer(0.05)
    it = paced([0, 0, 30.0])
    assert [await timer.next(it), await timer.next(it)] == [0, 1]
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await timer.next(it)
    assert 0.04 < time.monotonic() - started < 15  # at the limit, not when the item would have come
    timer.close()


async def test_time_spent_between_waits_is_not_a_stall() -> None:
    # Items come at once; the time between waits is the client's. A loaded machine would have to
    # stall the loop for the whole limit between a wait and its item to make a stall of it.
    timer = StallTimer(0.5)
    it = paced([0, 0, 0, 0])
    got = []
    for _ in range(4):
        got.append(await timer.next(it))
        await asyncio.sleep(0.6)  # a slow client: longer than the limit, but not upstream's fault
    assert got == [0, 1, 2, 3]
    timer.close()


async def test_many_short_waits_each_ending_in_a_token_add_up_to_no_stall() -> None:
    timer = StallTimer(0.5)
    it = paced([0.1] * 10)  # 1 s in all, never 0.5 s at once
    got = []
    for _ in range(10):
        got.append(await timer.next(it))
        timer.progress()  # each item carried a token
    assert got == list(range(10))
    timer.close()


async def test_short_waits_for_items_without_a_token_add_up_to_a_stall() -> None:
    timer = StallTimer(0.5)
    it = paced([0.1] * 20)  # keep-alives: 2 s in all, and no token among them
    got = []
    with pytest.raises(TimeoutError):
        for _ in range(20):
            got.append(await timer.next(it))
    assert len(got) < 20  # stalled before the keep-alives ran out
    timer.close()


async def test_an_outside_cancellation_stays_a_cancellation() -> None:
    timer = StallTimer(10)

    async def consume() -> int:
        return await timer.next(paced([5]))

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    timer.close()


async def test_the_task_survives_its_stall_and_can_go_on() -> None:
    timer = StallTimer(0.02)
    with pytest.raises(TimeoutError):
        await timer.next(paced([1.0]))
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0
    await asyncio.sleep(0.01)  # no stray cancellation is left pending
    timer.close()


async def test_the_end_of_the_iterator_is_none() -> None:
    timer = StallTimer(1.0)
    it = paced([0, 0])
    assert [await timer.next(it), await timer.next(it), await timer.next(it)] == [0, 1, None]
    timer.close()


async def test_a_deadline_that_passes_is_a_timeout_error() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with Deadline(0.03):
            await asyncio.sleep(30)
    assert 0.02 < time.monotonic() - started < 15  # at the deadline, not at the end of the work
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0


async def test_work_done_in_time_or_without_a_deadline_is_left_alone() -> None:
    async with Deadline(0.25):
        await asyncio.sleep(0)
    async with Deadline(None):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)  # past the first deadline: no timer was left behind to cancel us


async def test_an_outside_cancellation_inside_a_deadline_stays_a_cancellation() -> None:
    async def guarded() -> None:
        async with Deadline(10):
            await asyncio.sleep(5)

    task = asyncio.ensure_future(guarded())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_error_inside_a_deadline_passes_through() -> None:
    with pytest.raises(KeyError):
        async with Deadline(1.0):
            raise KeyError("x")
