"""The attempts of one text completion request, over the candidates its plan left.

The walk is the chat path's (``polyroute.attempts.Walk``: breakers, ``max_attempts``,
the deadline, account-wide refusals, the classification of each failure, Retry-After)
and so is ``race`` (``hedge_after``). A whole answer is bounded by its backend's
``answer_timeout``; a stream by the route's ``first_token_timeout`` until its first
text, then by ``stall_timeout`` between texts.

A failure before the first text falls over to the next candidate, unseen by the client.
A stream cut after it is not continued elsewhere: a text completion's prompt is the
client's own document, and another model appending to half an answer would give the
client a text no model wrote. The stream ends with an error event instead
(``StreamCut``), never like a success.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from polyroute.adapters import Adapter
from polyroute.attempts import Report, Slot, Walk, as_upstream
from polyroute.errors import StreamCut, UpstreamBadResponse, UpstreamError, UpstreamTimeout
from polyroute.failover import close_quietly
from polyroute.fleet import Fleet
from polyroute.health import Health
from polyroute.routing import Plan
from polyroute.stall import Deadline, StallTimer
from polyroute.winner import answered_by, won_by

from .types import CompletionRequest, TextCall, TextChunk, TextCompletion, has_text

# Called once when a stream is over: its report, when its first text reached the client, what ended it.
TextStreamEnd = Callable[[Report, float | None, BaseException | None], None]


class TextWalk(Walk):
    """Attempts at one whole text completion."""

    def __init__(self, fleet: Fleet, health: Health, plan: Plan, req: CompletionRequest, report: Report) -> None:
        super().__init__(fleet, health, plan.route, plan.candidates, req.stand_in(), report)
        self.request = req

    def own_limit(self, adapter: Adapter) -> float:
        return adapter.config.answer_timeout

    def text_call(self, slot: Slot) -> TextCall:
        return TextCall(self.request, slot.entry.upstream, timeout=min(slot.adapter.config.timeout, slot.timeout))

    async def run(self, slot: Slot) -> TextCompletion:
        try:
            async with Deadline(slot.timeout):
                return await slot.adapter.complete_text(self.text_call(slot))
        except TimeoutError:
            raise as_upstream(TimeoutError(), slot) from None

    async def abandoned(self, slot: Slot, result: TextCompletion | None) -> None:
        self.bill(slot, result.get("usage") if result else None, answer_chars(result))
        await self.release(slot)

    def bill(self, slot: Slot, usage: object, chars: int) -> None:
        """Add an attempt's tokens: the upstream's count, else an estimate from the characters."""
        if not self.report.bill(slot.entry, usage):
            self.report.bill_estimate(slot.entry, self.request.prompt_chars(), chars)


def answer_chars(doc: TextCompletion | None) -> int:
    return sum(len(c.get("text") or "") for c in doc["choices"]) if doc else 0


async def complete_over(fleet: Fleet, health: Health, plan: Plan, req: CompletionRequest,
                        report: Report) -> TextCompletion:
    """The answer of the first candidate of ``plan`` that gives one; AllAttemptsFailed when none does."""
    walk = TextWalk(fleet, health, plan, req, report)
    slot, got = await answered_by(walk, plan.route.config.hedge_after)
    walk.bill(slot, got.get("usage"), answer_chars(got))
    return got


@dataclass(slots=True)
class TextHead:
    """A stream that has sent its first text: the chunks so far, and the rest to come."""

    upstream: AsyncIterator[TextChunk]
    chunks: list[TextChunk]


class TextOpening(TextWalk):
    """Attempts at a stream, each up to its first text."""

    def own_limit(self, adapter: Adapter) -> float:
        return self.route.config.first_token_timeout

    async def run(self, slot: Slot) -> TextHead:  # type: ignore[override]
        upstream = slot.adapter.stream_text(self.text_call(slot))
        held: list[TextChunk] = []
        entry = slot.entry
        try:
            async with Deadline(slot.timeout):
                async for chunk in upstream:
                    held.append(chunk)
                    if has_text(chunk):
                        return TextHead(upstream, held)
        except TimeoutError:
            await close_quietly(upstream)
            raise UpstreamTimeout(f"no first text within {slot.timeout:.2f}s", backend=entry.backend,
                                  model=entry.name) from None
        except BaseException as exc:
            await close_quietly(upstream)
            if not isinstance(exc, asyncio.CancelledError):  # (a hedge's loser is billed as abandoned)
                for chunk in held:  # usage reported before it failed: the provider billed it
                    self.report.bill(entry, chunk.get("usage"))
            raise
        raise UpstreamBadResponse("the stream ended before any text", backend=entry.backend, model=entry.name)

    async def abandoned(self, slot: Slot, result: TextHead | None) -> None:  # type: ignore[override]
        if result is not None:
            await close_quietly(result.upstream)
        self.bill(slot, None, 0)
        await self.release(slot)


async def stream_over(fleet: Fleet, health: Health, plan: Plan, req: CompletionRequest, report: Report,
                      on_end: TextStreamEnd) -> AsyncIterator[TextChunk]:
    """The chunks of the first candidate that sends text; ``on_end`` is told once, however the stream ended."""
    walk = TextOpening(fleet, health, plan, req, report)
    first_at: float | None = None
    ended: BaseException | None = None
    try:
        slot, head = await won_by(walk, plan.route.config.hedge_after)
        report.model, report.streaming = slot.entry, True
        report.response_id = head.chunks[0].get("id") or None
        relay = _Relay(walk, slot)
        try:
            for chunk in head.chunks:
                relay.note(chunk)
                first_at = first_at or time.monotonic()
                yield chunk
            while (more := await relay.stall.next(head.upstream)) is not None:
                relay.note(more)
                yield more
        except (UpstreamError, TimeoutError) as exc:
            raise await relay.cut(exc) from None
        except BaseException:
            relay.settle()  # the client left, but the upstream billed what it sent
            await walk.release(slot)  # the attempt tells nothing about the backend
            raise
        finally:
            relay.stall.close()
            await close_quietly(head.upstream)
        relay.settle()
        await walk.succeeded(slot)
    except BaseException as exc:
        ended = exc
        raise
    finally:
        on_end(report, first_at, ended)


class _Relay:
    """The accounts of the one attempt a stream's client reads."""

    __slots__ = ("chars", "slot", "stall", "usage", "walk")

    def __init__(self, walk: TextOpening, slot: Slot) -> None:
        self.walk, self.slot = walk, slot
        self.stall = StallTimer(walk.route.config.stall_timeout)
        self.chars = 0
        self.usage: object = None

    def note(self, chunk: TextChunk) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk["choices"]:
            if text := choice.get("text"):
                self.chars += len(text)
                self.stall.progress()

    def settle(self) -> None:
        self.walk.bill(self.slot, self.usage, self.chars)

    async def cut(self, exc: UpstreamError | TimeoutError) -> StreamCut:
        """Account a stream that broke after its first text: the error its client reads."""
        entry, walk = self.slot.entry, self.walk
        if isinstance(exc, TimeoutError):
            cause: UpstreamError = UpstreamTimeout(f"no text for {self.stall.limit:.2f}s", backend=entry.backend,
                                                   model=entry.name)
        else:
            cause = as_upstream(exc, self.slot, walk.guard)
        await walk.health.settle(self.slot.ticket, cause)
        self.settle()
        cut = StreamCut(cause.message, backend=entry.backend, model=entry.name, code="stream_cut")
        walk.report.fail(entry, cut, self.slot.started)
        return cut
