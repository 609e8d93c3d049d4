"""Steps of a request's task run at once when what it waited for arrives, not a turn later.

A task made with ``loop.create_task`` takes its first step on a later turn of the
event loop, after every callback already queued; a task woken by a future takes its
next step the same way. Under load the callbacks ahead of it are the steps of the
other requests and streams woken in the same turn (a burst of upstream chunks):
with many streams in flight a new request waited behind them before the gateway
even read it, longer than its own work up to the upstream write, and an upstream's
first token waited as long again before it was relayed.

An ``EagerTask`` runs its coroutine's first step at once, in the protocol callback
that completed the request, as Python 3.12's eager tasks do; ``step_now(task)`` runs
its next step at once, from the protocol callback that resolved the future it
waited on (the transport does so for an upstream's response head: the first token,
or a whole answer). The steps of chunks in the middle of a stream keep their turn.

The task exists before its first step: ``asyncio.current_task()`` is that task in
every step run early, and each runs in the task's own context, so the code under it
cannot tell the difference. The task itself, when its own turn comes, picks up from
where the coroutine waits by then; a cancellation that comes meanwhile is thrown into
the coroutine there, exactly as it would have been.

How, depends on the Python that runs it (``MODE``):

- ``"standard"`` (3.12 and later): the first step is the standard library's own
  eager start (``asyncio.Task(..., eager_start=True)``), maintained upstream;
  ``step_now`` does nothing there.
- ``"private"`` (3.11): the steps are run by hand, with asyncio's private
  ``_enter_task`` and ``_leave_task`` so that the task is the current one.
- ``"plain"``: neither is there; tasks are plain ones and take their turn.
"""

from __future__ import annotations

import asyncio
import asyncio.tasks
import contextvars
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")

_Switch = Callable[[asyncio.AbstractEventLoop, "asyncio.Task[Any]"], None]
_enter_task: _Switch | None = getattr(asyncio.tasks, "_enter_task", None)
_leave_task: _Switch | None = getattr(asyncio.tasks, "_leave_task", None)

Mode = Literal["standard", "private", "plain"]


def _mode() -> Mode:
    if hasattr(asyncio, "eager_task_factory"):
        return "standard"
    if callable(_enter_task) and callable(_leave_task):
        return "private"
    return "plain"


MODE: Mode = _mode()


class EagerTask(Generic[T]):
    """``task`` is made now; ``start()`` runs the coroutine up to its first wait.

    Under the standard eager start (``MODE == "standard"``) the first step runs as the
    task is made, inside the constructor, and ``start()`` has nothing left to do; a
    caller that keeps the task somewhere the coroutine reads must allow for that."""

    __slots__ = ("_resume", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> None:
        self._resume: _Resume | None = None
        if MODE == "standard":
            make: Any = asyncio.Task  # eager_start is 3.12's: unknown to the 3.11 stubs
            self.task: asyncio.Task[T] = make(coro, loop=loop, eager_start=True)
        elif MODE == "private":
            ctx = contextvars.copy_context()
            self._resume = _Resume(coro, loop, ctx)
            self.task = loop.create_task(self._resume, context=ctx)
            self._resume.task = self.task
        else:
            self.task = loop.create_task(coro)

    def start(self) -> None:
        if self._resume is not None:
            self._resume.step(first=True)


def step_now(task: asyncio.Task[Any] | None) -> None:
    """Run ``task``'s next step now, if it is an eager one whose awaited future has just got its result."""
    if task is not None:
        coro = task.get_coro()
        if type(coro) is _Resume:
            coro.step(first=False)


class _Resume(Coroutine[Any, Any, Any]):
    """What the task drives: the coroutine, or what it waits on already when a step ran early."""

    __slots__ = ("_coro", "_ctx", "_loop", "_outcome", "_started", "_waiting_on", "ahead", "task")

    def __init__(self, coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop,
                 ctx: contextvars.Context) -> None:
        self._coro = coro
        self._loop = loop
        self._ctx = ctx
        self.task: asyncio.Task[Any] | None = None
        self._started = False
        self._waiting_on: Any = None  # what the coroutine's last step yielded
        self.ahead = False  # a step ran early: the task's next send gets its result, not the coroutine
        self._outcome: BaseException | None = None  # how an early step ended the coroutine, if it did

    def step(self, first: bool) -> None:
        task = self.task
        if task is None or self._outcome is not None or self._started != (not first):
            return
        if not first:
            fut = self._waiting_on
            # Only a plain result: an exception or a cancellation is the task's to deliver.
            if fut is None or not fut.done() or fut.cancelled() or fut.exception() is not None:
                return
        if asyncio.current_task(self._loop) is not None:
            return  # called from inside a task: the step waits its turn
        enter, leave = _enter_task, _leave_task
        if enter is None or leave is None:
            return
        self._started = self.ahead = True
        enter(self._loop, task)
        try:
            self._ctx.run(self._early)
        finally:
            leave(self._loop, task)

    def _early(self) -> None:
        try:
            self._waiting_on = self._coro.send(None)
        except BaseException as exc:  # its StopIteration (the result) included: the task raises it
            self._outcome, self._waiting_on = exc, None

    def send(self, value: Any) -> Any:
        self._started = True
        if self.ahead:
            self.ahead = False
            if self._outcome is not None:
                outcome, self._outcome = self._outcome, None
                raise outcome
            return self._waiting_on
        self._waiting_on = self._coro.send(value)
        return self._waiting_on

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        # Into the coroutine where it waits by now; one that an early step finished raises it back.
        self._started, self.ahead, self._outcome = True, False, None
        self._waiting_on = self._coro.throw(typ) if val is None else self._coro.throw(typ, val, tb)
        return self._waiting_on

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, Any]:
        raise TypeError("an eager task's coroutine is driven by its task only")
