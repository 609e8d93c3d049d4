"""The one seam where a request ends, and the one where it is let in.

Every request the gateway is handed ends exactly once, in ``Observers.finish``,
however it ends: answered, refused before any attempt (a bad key, a bad body, a
policy, a limit), every candidate failed, a stream cut, the client gone. Each
``RequestObserver`` (the router's latency statistics, the access log, the usage
ledger, the quota settlement) sees the request's context, its ``Report`` and a
``Finished`` saying how it ended. Observers are called synchronously, in order;
one that raises is logged and the others still run. An observer with slow work
(a database) queues it and returns.

Before the first attempt, a ``Gatekeeper`` (only when keys with budgets or limits
exist) checks and reserves what the request may cost; the ``Pass`` it returns
rides in ``Finished.admitted`` so that settlement happens at the same seam.

    request ─▶ context, parse, plan ──refused──────────────────────────┐
                     │                                                   ▼
                     └─▶ Gatekeeper.admit ──refused (429/402)──▶ Observers.finish(ctx, report, Finished)
                               │ Pass                                    ▲
                               └─▶ attempts (complete / stream) ─ended──┘
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from polyroute.errors import PolyrouteError

if TYPE_CHECKING:
    from polyroute.attempts import Report
    from polyroute.gateway import RequestContext
    from polyroute.routing import Plan
    from polyroute.types import ChatRequest

log = logging.getLogger("polyroute.finish")

# nginx's convention for "the client closed the connection before the answer was whole".
CLIENT_CLOSED = 499
CLIENT_CLOSED_CODE = "client_closed"  # the error code of a request its client left, whatever its status
# The message of the cancellation with which the server ends what is still being answered at a stop.
SHUTDOWN = "server_shutting_down"


class Unanswered(BaseException):
    """Ends a stream whose client left before its answer's head was sent.

    The first token may have reached the gateway, but the client got nothing: the
    request ends as ``CLIENT_CLOSED`` with the code ``client_closed``, not as a stream
    that began (200). Thrown into the gateway's chunks by the endpoint that holds them.
    """


class RequestIds:
    """Gateway-made request ids: a random prefix per process and a counter (no syscall per request)."""

    def __init__(self) -> None:
        self._prefix = "req_" + os.urandom(8).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):08x}"


@dataclass(frozen=True, slots=True)
class Finished:
    """How one request ended. Times are ``time.monotonic()`` readings."""

    request_id: str
    # The HTTP status the client got: a stream whose head was sent is 200 however it ended; one whose client
    # left before its head was sent is CLIENT_CLOSED. (A whole answer is made to its end and keeps its status.)
    status: int
    stream: bool
    started: float
    ended: float
    first_token_at: float | None = None  # streams: when the first token went to the client (None: it never did)
    error: str | None = None  # the error code when it did not end well ("stream_cut", "client_closed", ...)
    admitted: Pass | None = None

    @property
    def latency_ms(self) -> float:
        return (self.ended - self.started) * 1000

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_token_at is None else (self.first_token_at - self.started) * 1000


def ending(exc: BaseException | None) -> tuple[int, str | None]:
    """The status and error code of a request that ended with ``exc`` (None: it ended well)."""
    if exc is None:
        return 200, None
    if isinstance(exc, PolyrouteError):
        return exc.status, exc.code or exc.type
    if isinstance(exc, Exception):
        return 500, "internal_error"
    if exc.args == (SHUTDOWN,):
        return 503, SHUTDOWN  # the server's stop cut it, not the client
    return CLIENT_CLOSED, CLIENT_CLOSED_CODE  # GeneratorExit, CancelledError, Unanswered: nobody is waiting


class RequestObserver(Protocol):
    """Told once about every request that has finished. Must not block: queue slow work."""

    def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None: ...


class Pass(Protocol):
    """What admission reserved for one request; settled when the request finishes."""

    # The tokens and USD the request took, once settled; None before.
    used: tuple[float, float] | None

    def headers(self, used: tuple[float, float] | None = None) -> dict[str, str]:
        """Response headers telling the client its limits and what is left: after the request's worst case, or
        after ``used`` (the tokens and USD it took) when known, or once settled."""
        ...


class Gatekeeper(RequestObserver, Protocol):
    """Checks and reserves budgets and rate limits before the first attempt."""

    async def admit(self, req: ChatRequest, ctx: RequestContext, plan: Plan) -> Pass | None:
        """A pass, None when nothing applies to this principal; raises a ``PolyrouteError`` to refuse."""
        ...


class Observers:
    """The observers of a gateway, called in order, each shielded from the others."""

    __slots__ = ("_all",)

    def __init__(self, observers: Sequence[RequestObserver] = ()) -> None:
        self._all: tuple[RequestObserver, ...] = tuple(observers)

    def add(self, observer: RequestObserver) -> None:
        self._all = (*self._all, observer)

    def __len__(self) -> int:
        return len(self._all)

    def finish(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        for observer in self._all:
            try:
                observer.finished(ctx, report, outcome)
            except Exception:
                # A broken observer must never break the request, nor keep the others from seeing it.
                log.exception("observer %s failed on request %s", type(observer).__name__, outcome.request_id)
