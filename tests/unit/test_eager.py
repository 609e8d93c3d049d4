"""Eager tasks: steps run at once from a loop callback, and the task carries on as if they had not."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvloop

from polyroute.eager import EagerTask, step_now

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="outside")


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop() if request.param == "asyncio" else uvloop.new_event_loop()
    yield lp
    lp.close()


def from_callback(loop: asyncio.AbstractEventLoop, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` as the loop runs a protocol callback (no task current), and return what it returned."""
    done: asyncio.Future[Any] = loop.create_future()
    loop.call_soon(lambda: done.set_result(fn()))
    return loop.run_until_complete(done)


def test_the_first_step_runs_at_once_under_its_own_task(loop: asyncio.AbstractEventLoop) -> None:
    seen: list[object] = []
    gate = loop.create_future()

    async def work() -> str:
        seen.append(asyncio.current_task())
        await gate
        seen.append("after the wait")
        return "answer"

    def start() -> EagerTask[Any]:
        eager = EagerTask(loop, work())
        eager.start()
        assert seen == [eager.task]  # ran before start() returned
        return eager

    eager = from_callback(loop, start)
    gate.set_result(None)
    assert loop.run_until_complete(eager.task) == "answer"
    assert seen == [eager.task, "after the wait"]


def test_a_coroutine_done_in_its_first_step_gives_the_task_its_result(loop: asyncio.AbstractEventLoop) -> None:
    async def work() -> int:
        return 42

    def start() -> EagerTask[Any]:
        eager = EagerTask(loop, work())
        eager.start()
        return eager

    assert loop.run_until_complete(from_callback(loop, start).task) == 42


def test_an_error_in_the_first_step_is_the_tasks(loop: asyncio.AbstractEventLoop) -> None:
    async def work() -> None:
        raise ValueError("bad input")

    def start() -> EagerTask[Any]:
        eager = EagerTask(loop, work())
        eager.start()
        return eager

    task = from_callback(loop, start).task
    with pytest.raises(ValueError, match="bad input"):
        loop.run_until_complete(task)


def test_a_cancel_before_the_tasks_turn_lands_where_the_coroutine_waits(loop: asyncio.AbstractEventLoop) -> None:
    cleaned: list[str] = []

    async def work() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.append("finally ran")

    def start_and_cancel() -> asyncio.Task[None]:
        eager = EagerTask(loop, work())
        eager.start()
        eager.task.cancel()
        return eager.task

    task = from_callback(loop, start_and_cancel)
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    assert task.cancelled() and cleaned == ["finally ran"]


def test_step_now_runs_the_step_after_a_resolved_wait(loop: asyncio.AbstractEventLoop) -> None:
    seen: list[str] = []
    first, second = loop.create_future(), loop.create_future()

    async def work() -> str:
        await first
        seen.append("past the first wait")
        await second
        seen.append("past the second wait")
        return "done"

    def start() -> EagerTask[Any]:
        eager = EagerTask(loop, work())
        eager.start()
        return eager

    eager = from_callback(loop, start)
    loop.run_until_complete(asyncio.sleep(0))  # the task has taken its turn and waits on `first`

    def resolve_first() -> list[str]:
        first.set_result(None)
        step_now(eager.task)
        return list(seen)

    assert from_callback(loop, resolve_first) == ["past the first wait"]

    def resolve_second() -> list[str]:
        second.set_result(None)
        step_now(eager.task)  # twice ahead of the task, which has not had its turn since
        return list(seen)

    assert from_callback(loop, resolve_second) == ["past the first wait", "past the second wait"]
    assert loop.run_until_complete(eager.task) == "done"


def test_step_now_leaves_an_exception_to_the_task(loop: asyncio.AbstractEventLoop) -> None:
    seen: list[str] = []
    fut = loop.create_future()

    async def work() -> None:
        try:
            await fut
        except KeyError:
            seen.append("caught")
            raise

    def start() -> EagerTask[Any]:
        eager = EagerTask(loop, work())
        eager.start()
        return eager

    eager = from_callback(loop, start)

    def fail() -> list[str]:
        fut.set_exception(KeyError("gone"))
        step_now(eager.task)
        return list(seen)

    assert from_callback(loop, fail) == []  # not stepped early: delivered on the task's turn
    with pytest.raises(KeyError):
        loop.run_until_complete(eager.task)
    assert seen == ["caught"]


def test_inside_a_task_steps_wait_their_turn(loop: asyncio.AbstractEventLoop) -> None:
    seen: list[str] = []

    async def work() -> None:
        seen.append("ran")

    async def caller() -> list[str]:
        eager = EagerTask(asyncio.get_running_loop(), work())
        eager.start()  # a task is current: nothing runs now
        before = list(seen)
        await eager.task
        return before

    assert loop.run_until_complete(caller()) == []
    assert seen == ["ran"]


def test_step_now_ignores_plain_tasks_and_none(loop: asyncio.AbstractEventLoop) -> None:
    async def work() -> int:
        await asyncio.sleep(0)
        return 1

    task = loop.create_task(work())
    from_callback(loop, lambda: step_now(task))
    step_now(None)
    assert loop.run_until_complete(task) == 1


def test_early_steps_run_in_the_tasks_context(loop: asyncio.AbstractEventLoop) -> None:
    fut = loop.create_future()

    async def work() -> tuple[str, str]:
        VAR.set("inside")
        before = VAR.get()
        await fut
        return before, VAR.get()

    def start() -> EagerTask[Any]:
        eager = EagerTask(loop, work())
        eager.start()
        assert VAR.get() == "outside"  # the step's change stayed in the task's context
        return eager

    eager = from_callback(loop, start)

    def resolve() -> None:
        fut.set_result(None)
        step_now(eager.task)

    from_callback(loop, resolve)
    assert loop.run_until_complete(eager.task) == ("inside", "inside")
    assert VAR.get() == "outside"
