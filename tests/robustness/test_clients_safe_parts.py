"""The clever parts stay safe to run (issue 14, point 9).

- The scheduling slice is opt-in: ``gateway.sched_slice_us`` is 0 unless configured.
- ``polyroute.eager`` uses the standard eager task start where Python has it (3.12+),
  its own steps on 3.11, and plain tasks when neither is there; never an import error.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from polyroute import config as cfg
from polyroute import eager
from tests.support.http11_app import Probe, make_app
from tests.support.live import serve_app


def test_the_scheduling_slice_is_opt_in() -> None:
    assert cfg.parse({}, source="<test>", env={}).gateway.sched_slice_us == 0
    assert cfg.parse({"gateway": {"sched_slice_us": 250}}, source="<test>", env={}).gateway.sched_slice_us == 250


def test_the_mode_is_the_best_this_python_has() -> None:
    expected = "standard" if sys.version_info >= (3, 12) else "private"
    assert expected == eager.MODE


@pytest.fixture
def reload_eager(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Reload ``polyroute.eager`` under what a test takes away; reloaded as it was afterwards."""
    yield monkeypatch
    monkeypatch.undo()
    importlib.reload(eager)
    assert ("standard" if sys.version_info >= (3, 12) else "private") == eager.MODE


def _run_one(loop: asyncio.AbstractEventLoop) -> tuple[Any, list[str]]:
    """Start an EagerTask from a loop callback; its result and the order things happened in."""
    seen: list[str] = []

    async def work() -> str:
        seen.append("first step")
        await asyncio.sleep(0)
        seen.append("second step")
        return "answer"

    async def main() -> Any:
        done: asyncio.Future[Any] = loop.create_future()

        def callback() -> None:
            task = eager.EagerTask(loop, work())
            task.start()
            seen.append("after start")
            done.set_result(task.task)

        loop.call_soon(callback)
        return await (await done)

    return loop.run_until_complete(main()), seen


def test_without_the_private_names_tasks_are_plain_and_work(reload_eager: pytest.MonkeyPatch) -> None:
    reload_eager.delattr(asyncio.tasks, "_enter_task")
    reload_eager.delattr(asyncio.tasks, "_leave_task")
    reload_eager.delattr(asyncio, "eager_task_factory", raising=False)
    importlib.reload(eager)
    assert eager.MODE == "plain"
    loop = asyncio.new_event_loop()
    try:
        result, seen = _run_one(loop)
    finally:
        loop.close()
    assert result == "answer"
    assert seen == ["after start", "first step", "second step"]  # its first step takes its turn
    eager.step_now(None)  # a no-op, as for any task that is not an eager one


def test_without_the_private_names_the_server_still_serves(reload_eager: pytest.MonkeyPatch) -> None:
    reload_eager.delattr(asyncio.tasks, "_enter_task")
    reload_eager.delattr(asyncio, "eager_task_factory", raising=False)
    importlib.reload(eager)
    assert eager.MODE == "plain"
    import httpx

    with serve_app(make_app(Probe())) as root:
        assert httpx.get(f"{root}/hello", timeout=10).json() == {"hello": "world"}
        assert httpx.get(f"{root}/where", timeout=10).json() == {"in_data_received": False}


@pytest.mark.skipif(sys.version_info < (3, 12), reason="the private mode is this Python's")
def test_where_the_standard_start_exists_the_private_one_is_not_used() -> None:
    assert eager.MODE == "standard"
