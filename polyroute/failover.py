"""Attempts over a route's candidates: deadlines, first-token hold, stream rescue.

``Failover.complete`` tries candidates in order until one answers. ``Failover.stream``
returns an async iterator whose first item arrives only once some candidate has sent
a real token, so the server can hold response headers until then and a failover
before the first token is invisible to the client. A stream cut after tokens were
sent is continued on the next candidate that can continue a partial answer; when
none can, the iterator raises ``StreamCut`` and the server ends the stream with an
explicit error event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from polyroute.adapters import Adapter, Call
from polyroute.adapters.base import OPTIONAL_PARAMS
from polyroute.errors import (
    AllAttemptsFailed,
    Attempt,
    InvalidRequest,
    PolyrouteError,
    StreamCut,
    UpstreamError,
    UpstreamTimeout,
)
from polyroute.fleet import Fleet, ModelEntry, Route
from polyroute.types import ChatChunk, ChatRequest, ChatResponse, Usage, chunk_has_token, chunk_text, make_usage


@dataclass
class Report:
    """What happened while answering one request: who answered, every attempt, the bill."""

    route: str
    attempts: list[Attempt] = field(default_factory=list)
    errors: list[UpstreamError] = field(default_factory=list)
    model: ModelEntry | None = None
    usage: Usage = field(default_factory=lambda: make_usage(0, 0))
    cost_usd: float = 0.0
    dropped: set[str] = field(default_factory=set)
    rescued: bool = False
    # A stream attempt that has sent tokens and is not finished yet.
    streaming: bool = False

    def attempt_count(self) -> int:
        return len(self.attempts) + int(self.streaming)

    def bill(self, entry: ModelEntry, usage: Usage | None) -> None:
        if not usage:
            return
        for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
            self.usage[k] += int(usage.get(k) or 0)  # type: ignore[literal-required]
        self.cost_usd += entry.cost(usage)

    def record(self, entry: ModelEntry, outcome: str, started: float, detail: str = "") -> None:
        self.streaming = False
        ms = (time.monotonic() - started) * 1000
        self.attempts.append(Attempt(entry.backend, entry.name, outcome, round(ms, 2), detail))

    def fail(self, entry: ModelEntry, err: UpstreamError, started: float) -> None:
        self.errors.append(err)
        self.record(entry, err.outcome, started, err.message)


def requested_params(req: ChatRequest) -> set[str]:
    present = {p for p in OPTIONAL_PARAMS if getattr(req, p, None) is not None}
    if req.max_completion_tokens is not None:
        present.add("max_tokens")
    return present


class Failover:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.unsupported = fleet.config.gateway.unsupported_params

    # -- candidate preparation ---------------------------------------------------------

    def _calls(self, route: Route, candidates: Sequence[ModelEntry], req: ChatRequest, report: Report) -> list[
        tuple[ModelEntry, Adapter, frozenset[str]]
    ]:
        wanted = requested_params(req)
        out: list[tuple[ModelEntry, Adapter, frozenset[str]]] = []
        refused: set[str] = set()
        for entry in candidates[: route.config.max_attempts]:
            adapter = self.fleet.adapters[entry.backend]
            missing = wanted - adapter.supports
            if missing and self.unsupported == "refuse":
                refused |= missing
                continue
            out.append((entry, adapter, frozenset(missing)))
        if not out:
            names = ", ".join(sorted(refused))
            raise InvalidRequest(f"no candidate of '{route.name}' supports: {names}", param=sorted(refused)[0])
        return out

    def _deadline_left(self, route: Route, t0: float) -> float:
        return route.config.deadline - (time.monotonic() - t0)

    def _give_up(self, route: Route, report: Report) -> AllAttemptsFailed:
        return AllAttemptsFailed(
            f"all {len(report.attempts)} attempt(s) for '{route.name}' failed",
            attempts=report.attempts,
            errors=report.errors,
        )

    # -- whole answers -----------------------------------------------------------------

    async def complete(
        self, route: Route, candidates: Sequence[ModelEntry], req: ChatRequest, report: Report
    ) -> ChatResponse:
        t0 = time.monotonic()
        for entry, adapter, drop in self._calls(route, candidates, req, report):
            left = self._deadline_left(route, t0)
            if left <= 0:
                break
            started = time.monotonic()
            timeout = min(adapter.config.timeout, left)
            try:
                resp = await asyncio.wait_for(adapter.complete(Call(req, entry.upstream, drop, timeout=timeout)), left)
            except (UpstreamError, TimeoutError) as exc:
                err = _as_upstream(exc, entry)
                report.fail(entry, err, started)
                if not err.may_fall_over:
                    break
                continue
            report.record(entry, "ok", started)
            report.model = entry
            report.dropped |= drop
            report.bill(entry, resp.get("usage"))
            return resp
        raise self._give_up(route, report)

    # -- streams -----------------------------------------------------------------------

    def stream(
        self, route: Route, candidates: Sequence[ModelEntry], req: ChatRequest, report: Report
    ) -> AsyncIterator[ChatChunk]:
        return self._stream(route, self._calls(route, candidates, req, report), req, report)

    async def _stream(
        self,
        route: Route,
        calls: list[tuple[ModelEntry, Adapter, frozenset[str]]],
        req: ChatRequest,
        report: Report,
    ) -> AsyncIterator[ChatChunk]:
        t0 = time.monotonic()
        sent = ""  # text the client has already received
        started_client = False
        for entry, adapter, drop in calls:
            if started_client and not adapter.can_continue:
                continue
            left = self._deadline_left(route, t0)
            if left <= 0:
                break
            started = time.monotonic()
            call = Call(req, entry.upstream, drop, prefix=sent or None, timeout=min(adapter.config.timeout, left))
            upstream = adapter.stream(call)
            got_token = False
            pending: list[ChatChunk] = []  # held until a token shows the attempt is alive
            try:
                async for chunk in _paced(upstream, route, t0):
                    if not got_token:
                        if not chunk_has_token(chunk) and chunk["choices"]:
                            pending.append(chunk)
                            continue
                        got_token = True
                        report.model = entry
                        report.dropped |= drop
                        report.rescued = started_client
                        report.streaming = True
                        if not started_client:
                            for held in pending:
                                yield held
                        started_client = True
                    if chunk.get("usage"):
                        report.bill(entry, chunk.get("usage"))
                    sent += chunk_text(chunk)
                    yield chunk
                report.record(entry, "ok", started)
                return
            except (UpstreamError, TimeoutError) as exc:
                err = _as_upstream(exc, entry)
                if got_token:
                    err = StreamCut(err.message, partial=sent, backend=entry.backend, model=entry.name)
                report.fail(entry, err, started)
                if not err.may_fall_over:
                    break
            finally:
                await _close(upstream)
        if started_client:
            raise StreamCut(
                "the stream was cut and no candidate could continue it",
                partial=sent,
                backend=report.model.backend if report.model else "",
                model=report.model.name if report.model else "",
            )
        raise self._give_up(route, report)


async def _paced(upstream: AsyncIterator[ChatChunk], route: Route, t0: float) -> AsyncIterator[ChatChunk]:
    """Apply the first-token and stall deadlines, and the route's overall deadline."""
    cfg = route.config
    first = True
    while True:
        left = cfg.deadline - (time.monotonic() - t0)
        wait = min(cfg.first_token_timeout if first else cfg.stall_timeout, left)
        try:
            chunk = await asyncio.wait_for(anext(upstream), max(wait, 0.001))
        except StopAsyncIteration:
            return
        except TimeoutError:
            what = "first token" if first else "next token"
            raise UpstreamTimeout(f"no {what} within {wait:.2f}s") from None
        if chunk_has_token(chunk):
            first = False
        yield chunk


async def _close(it: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except (PolyrouteError, RuntimeError, asyncio.CancelledError):
            pass


def _as_upstream(exc: BaseException, entry: ModelEntry) -> UpstreamError:
    if isinstance(exc, UpstreamError):
        if not exc.backend:
            exc.backend, exc.model = entry.backend, entry.name
        else:
            exc.model = entry.name
        return exc
    return UpstreamTimeout("no answer before the deadline", backend=entry.backend, model=entry.name)
