"""The front of a request to an endpoint beside chat's: who asks, what, its plan, its admission, its errors.

``POST /v1/embeddings`` and ``POST /v1/completions`` pass the chat path's door, in the
same steps: the context from the headers (``ChatEndpoint.context``: the key, the policy
and quality asked for, explain, the trace), the body parsed, the plan. A
``PolyrouteError`` before the gateway has the request finishes it at the gateway's
seam, refused, and is answered with the request-id headers. Then the explain header,
admission through the gatekeeper (the request stands in as a chat request of its
size), and the endpoint's own answer; an error after admission carries the key's
limits, after what its attempts cost once settled.

What differs stays with each endpoint, in four methods: how a body is parsed
(``parse``), how it is planned and what its walk is told of the plan (``plan``),
whether a refused request counts as a stream (``asks_stream``), and how it is answered
(``respond``). Chat's own handler stays apart: it sets the explain header once
admitted, and its error headers keep a stream's limits.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import orjson

from polyroute.errors import AllAttemptsFailed, PolyrouteError, UnknownModel
from polyroute.failover import Report
from polyroute.finish import Pass
from polyroute.gateway import Gateway, RequestContext
from polyroute.routing import Plan
from polyroute.routing.explain import header_value
from polyroute.server import sse
from polyroute.server.answers import Reply
from polyroute.server.bounds import Bounds
from polyroute.server.chat import EXPLAIN_RESPONSE, OPENAI_REQUEST_ID, REQUEST_ID, ChatEndpoint, wanted_headers
from polyroute.server.errors import error_response
from polyroute.server.http11 import Request
from polyroute.types import ChatRequest


class Asking(Protocol):
    """What the front reads of an endpoint's request."""

    @property
    def model(self) -> str: ...

    def stand_in(self) -> ChatRequest:
        """A chat request of the same size, for the router and the gatekeeper."""
        ...


A = TypeVar("A", bound=Asking)  # the endpoint's request
L = TypeVar("L")  # what its walk is told the plan left out (None: the gateway reads it from the plan)
R = TypeVar("R", bound=Reply | sse.EventStream)  # the endpoint's answer
G = TypeVar("G")  # what the upstream gave, before the endpoint frames it


@dataclass(slots=True)
class Opened(Generic[A, L]):
    """A request past the front: who asks, what, its plan, and the headers its answer and errors carry."""

    ctx: RequestContext
    req: A
    plan: Plan
    left_out: L
    extra: dict[str, str]
    admitted: Pass | None = None

    def limits(self) -> dict[str, str]:
        """An error's headers with the key's limits, after what its attempts cost once settled."""
        return self.extra if self.admitted is None else {**self.extra, **self.admitted.headers()}


class FrontEndpoint(ABC, Generic[A, L, R]):
    """An endpoint whose requests pass the chat path's door; what it does of its own is in four methods."""

    def __init__(self, gateway: Gateway, debug_headers: bool, bounds: Bounds | None = None) -> None:
        self.gateway = gateway
        self.bounds = bounds or Bounds()
        # Who is asking, and the headers of an answer, exactly as for chat.
        self.chat = ChatEndpoint(gateway, debug_headers, self.bounds)

    @abstractmethod
    def parse(self, body: bytes) -> A:
        """The request a body asks for, validated, or a 400 naming the field."""

    @abstractmethod
    def plan(self, req: A, ctx: RequestContext) -> tuple[Plan, L]:
        """The candidates to try, in order, and what the walk is told the plan left out."""

    def asks_stream(self, req: A) -> bool:
        """Whether the request asked for a stream, as a refusal of it is counted."""
        return False

    @abstractmethod
    async def respond(self, opened: Opened[A, L]) -> R:
        """The answer to an admitted request; a ``PolyrouteError`` raised here is answered with its limits."""

    async def handle(self, request: Request) -> Reply | R:
        started = time.monotonic()
        ctx: RequestContext | None = None
        req: A | None = None
        try:
            ctx = await self.chat.context(wanted_headers(request.headers), started)
            req = self.parse(request.body)
            plan, left_out = self.plan(req, ctx)
        except PolyrouteError as exc:
            ctx = ctx or RequestContext(started=started)
            # A name no route has is the client's text: not a route to count by (nor to show as one).
            route = req.model if req and not isinstance(exc, UnknownModel) else ""
            self.gateway.refused(ctx, exc, route=route, stream=req is not None and self.asks_stream(req))
            return error_response(exc, {REQUEST_ID: ctx.request_id, OPENAI_REQUEST_ID: ctx.request_id})
        opened = Opened(ctx, req, plan, left_out, {REQUEST_ID: ctx.request_id, OPENAI_REQUEST_ID: ctx.request_id})
        if ctx.explain:
            opened.extra[EXPLAIN_RESPONSE] = header_value(plan)
        try:
            if self.gateway.gatekeeper is not None:
                opened.admitted = await self.gateway.admit(req.stand_in(), ctx, plan)
            return await self.respond(opened)
        except AllAttemptsFailed as exc:
            return error_response(exc, {"x-polyroute-attempts": str(len(exc.attempts)),
                                        **self.chat.attempt_log(exc), **opened.limits()})
        except PolyrouteError as exc:
            return error_response(exc, opened.limits())

    def whole_reply(self, opened: Opened[A, L], got: G, report: Report,
                    frame: Callable[[G, A, Report], Any]) -> Reply:
        """A whole answer, framed by the endpoint, with chat's headers and the key's limits after what it cost."""
        if opened.admitted is not None:
            opened.extra.update(opened.admitted.headers((float(report.usage["total_tokens"]), report.cost_usd)))
        body = orjson.dumps(frame(got, opened.req, report))
        return Reply(body, headers={**self.chat.headers(report), **opened.extra})
