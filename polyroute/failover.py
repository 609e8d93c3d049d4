"""Failover: whole answers and streams over a route's candidates.

A request walks its route's candidates in order (``polyroute.attempts``: breakers,
``max_attempts``, ``deadline``, the classification of each failure).

``Failover.stream`` returns an async iterator whose first item arrives only once
some candidate has sent a real token (``first_token_timeout``), so the server can
hold the response headers until then and a failover before the first token stays
invisible. After that, a gap longer than ``stall_timeout`` counts as a cut. A cut
stream is continued on the next candidate that can continue a partial answer (the
text sent so far goes as ``Call.prefix``), so the client reads one answer; when
none can, or when tool-call deltas were already sent, the iterator raises
``StreamCut`` and the server ends the stream with an error event, never like a
success.

For a stream the deadline bounds the waiting (for the answer to start, and to
resume after a cut), not a stream that is flowing. With ``hedge_after`` a slow
attempt gets a second one started beside it (``polyroute.hedge``).

``Failover.complete`` returns one whole answer. When a candidate's backend
assembles (``Adapter.assembles``), the answer is streamed from the upstream and
assembled (``polyroute.assemble``), so the same deadlines and the same rescue
apply: an upstream that accepts the request and never answers is left after
``first_token_timeout``, not after the backend's ``answer_timeout``. A backend
that does not assemble answers whole inside that walk, within ``answer_timeout``;
so does one that refuses the streamed form of the request with a 400. As the
client has read nothing yet, an answer that cannot be continued (cut inside a
tool call, or no candidate left can continue) starts afresh on the next candidate.
When no candidate assembles, the walk is the plain one of whole answers (``_Whole``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from polyroute.adapters import Adapter, Call
from polyroute.assemble import Assembly, as_chunks
from polyroute.attempts import Report, Slot, Walk, as_upstream
from polyroute.config import MAX_ANSWER_BYTES
from polyroute.errors import (
    PolyrouteError,
    StreamCut,
    UpstreamBadResponse,
    UpstreamContextExceeded,
    UpstreamDeclined,
    UpstreamError,
    UpstreamParamRefused,
    UpstreamRejected,
    UpstreamTimeout,
)
from polyroute.fleet import Fleet, ModelEntry, Route
from polyroute.health import Health
from polyroute.hedge import race
from polyroute.refusals import OWN, USAGE_OPTION
from polyroute.stall import Deadline, StallTimer
from polyroute.types import ChatChunk, ChatRequest, ChatResponse, Usage, chunk_has_token

__all__ = ["Failover", "Report", "StreamEnd", "close_quietly"]

# Called once when a stream is over, however it ended: its report, when its first chunk reached the
# client (None if never), and what ended it (None when it ran to its end).
StreamEnd = Callable[[Report, float | None, BaseException | None], None]


class Failover:
    def __init__(self, fleet: Fleet, health: Health | None = None) -> None:
        self.fleet = fleet
        self.health = health or Health(fleet.config.gateway.breakers)

    async def complete(
        self, route: Route, candidates: Sequence[ModelEntry], req: ChatRequest, report: Report
    ) -> ChatResponse:
        adapters = self.fleet.adapters
        for c in candidates:
            if adapters[c.backend].assembles:
                return await self._assemble(route, candidates, req, report)
        walk = _Whole(self.fleet, self.health, route, candidates, req, report)
        won = await race(walk, route.config.hedge_after)
        if won is None:
            raise walk.give_up()
        slot, resp = won
        await walk.succeeded(slot)
        if not report.bill(slot.entry, resp.get("usage")):
            answer = sum(len(text) for c in resp.get("choices") or ()
                         if isinstance(text := (c.get("message") or {}).get("content"), str))
            # The client is told the estimate, as the ledger is, not an upstream's word that could not be read.
            usage = report.bill_estimate(slot.entry, sum(len(m.text()) for m in req.messages), answer)
            resp["usage"] = cast(Usage, {**usage, "estimated": True})
        return resp

    async def _assemble(
        self, route: Route, candidates: Sequence[ModelEntry], req: ChatRequest, report: Report
    ) -> ChatResponse:
        """A whole answer, streamed from the upstream: first-token and stall deadlines, rescue."""
        walk = _Opening(self.fleet, self.health, route, candidates, req, report)
        walk.whole = True
        stream = _Stream(walk)
        assembly, fresh = Assembly(), 0
        async for chunk in stream.chunks():
            if stream.fresh != fresh:  # the answer started afresh on another candidate
                assembly, fresh = Assembly(), stream.fresh
            assembly.add(chunk)
        resp = assembly.response()
        if report.rescued or report.estimated:
            # The answer is the work of every attempt that wrote part of it: so is its bill. An estimate
            # replaces a count the upstream did not give, or gave in a form that is not a count.
            estimated = {"estimated": True} if report.estimated else {}
            resp["usage"] = cast(Usage, {**resp.get("usage", {}), **report.usage, **estimated})
        return resp

    def stream(
        self, route: Route, candidates: Sequence[ModelEntry], req: ChatRequest, report: Report,
        on_end: StreamEnd | None = None,
    ) -> AsyncIterator[ChatChunk]:
        """The stream's chunks; ``on_end(report, first_token_at, error)`` runs once it is over, however it ends."""
        walk = _Opening(self.fleet, self.health, route, candidates, req, report)  # refuses unsupported parameters now
        return _Stream(walk, on_end).chunks()


def declined(bodies: Sequence[Mapping[str, object]], choices: Sequence[Any]) -> str | None:
    """Why a classifier declined, when an answer (its messages) or a stream's first token (its deltas) is that
    refusal and nothing else: a ``refusal`` and the ``content_filter`` finish, no text, tool call or reasoning."""
    if not any(c.get("finish_reason") == "content_filter" for c in choices):
        return None
    for body in bodies:
        refusal = body.get("refusal")
        if isinstance(refusal, str) and refusal and not any(
                body.get(k) for k in ("content", "tool_calls", "reasoning_content", "reasoning_details")):
            return f"declined before any output: {refusal}"
    return None


def refuses_streaming(exc: UpstreamRejected) -> bool:
    """Whether a 400 to the streamed form is about streaming itself (``stream``, ``stream_options``).

    Only then is the same request worth sending again as a whole answer; a 400 about anything
    else would come back the same.
    """
    return "stream" in str(exc).lower() or "stream" in (exc.code or "").lower()


class _Whole(Walk):
    """Attempts at a whole answer."""

    def own_limit(self, adapter: Adapter) -> float:
        # The upstream's headers arrive with the whole answer, not before it.
        return adapter.config.answer_timeout

    def call(self, slot: Slot, prefix: str | None = None) -> Call:
        return Call(self.req, slot.entry.upstream, slot.drop, prefix=prefix, timeout=slot.timeout)

    async def run(self, slot: Slot) -> ChatResponse:
        try:
            async with Deadline(slot.timeout):
                resp = await slot.adapter.complete(self.call(slot))
        except TimeoutError:
            raise as_upstream(TimeoutError(), slot) from None
        if self.route.config.on_refusal == "next" and (why := declined(
                [c.get("message") or {} for c in resp.get("choices") or ()], resp.get("choices") or ())):
            raise UpstreamDeclined(why, backend=slot.entry.backend, model=slot.entry.name)
        return resp

    async def abandoned(self, slot: Slot, result: ChatResponse | None) -> None:
        self.bill_abandoned(slot, result.get("usage") if result else None)
        await self.release(slot)


@dataclass(slots=True)
class Head:
    """A stream that has sent its first token: the chunks so far, and the rest to come."""

    upstream: AsyncIterator[ChatChunk]
    chunks: list[ChatChunk]


class _Opening(Walk):
    """Attempts at a stream, each up to its first token."""

    prefix: str | None = None
    whole = False  # the client wants one whole answer: a backend that does not assemble answers directly

    def own_limit(self, adapter: Adapter) -> float:
        if self.whole and not adapter.assembles:
            return adapter.config.answer_timeout
        return self.route.config.first_token_timeout

    async def run(self, slot: Slot) -> Head:
        if not self.whole:
            return await self.open(slot)
        if not slot.adapter.assembles:
            return await self.run_whole(slot, slot.timeout)
        if USAGE_OPTION in slot.drop:
            # A server that refuses stream_options streams without usage: a whole answer is billed by its count.
            left = self.route.config.deadline - (time.monotonic() - self.t0)
            return await self.run_whole(slot, max(0.0, min(slot.adapter.config.answer_timeout, left)))
        try:
            return await self.open(slot)
        except UpstreamRejected as exc:
            if isinstance(exc, UpstreamContextExceeded) or not refuses_streaming(exc):
                raise
            if isinstance(exc, UpstreamParamRefused) and exc.param in OWN and exc.always:
                # Learnt here too: the next whole answer from this server is asked for whole at once.
                self.refusals.note(slot.entry.backend, slot.entry.upstream, exc.param)
            # Some models refuse to stream, or refuse stream_options; the client did not ask for either.
            left = self.route.config.deadline - (time.monotonic() - self.t0)
            return await self.run_whole(slot, max(0.0, min(slot.adapter.config.answer_timeout, left)))

    async def open(self, slot: Slot) -> Head:
        """A stream, up to its first token."""
        upstream = slot.adapter.stream(self.call(slot, self.prefix))
        held: list[ChatChunk] = []
        try:
            async with Deadline(slot.timeout):
                async for chunk in upstream:
                    held.append(chunk)
                    if chunk_has_token(chunk):
                        if self.route.config.on_refusal == "next" and (why := declined(
                                [c["delta"] for c in chunk["choices"]], chunk["choices"])):
                            raise UpstreamDeclined(why, backend=slot.entry.backend, model=slot.entry.name)
                        return Head(upstream, held)
        except TimeoutError:
            await close_quietly(upstream)
            e = slot.entry
            raise UpstreamTimeout(
                f"no first token within {slot.timeout:.2f}s", backend=e.backend, model=e.name
            ) from None
        except BaseException as exc:
            await close_quietly(upstream)
            if not isinstance(exc, asyncio.CancelledError):  # (a hedge's loser is billed as abandoned)
                for chunk in held:  # usage reported before it failed: the provider billed it
                    self.report.bill(slot.entry, chunk.get("usage"))
            raise
        e = slot.entry
        raise UpstreamBadResponse("the stream ended before any token", backend=e.backend, model=e.name)

    async def run_whole(self, slot: Slot, timeout: float) -> Head:
        """A direct answer within ``timeout``, as the chunks of a stream that has already ended."""
        call = Call(self.req, slot.entry.upstream, slot.drop, prefix=self.prefix, timeout=timeout)
        try:
            async with Deadline(timeout):
                resp = await slot.adapter.complete(call)
        except TimeoutError:
            e = slot.entry
            raise UpstreamTimeout(f"no answer within {timeout:.2f}s", backend=e.backend, model=e.name) from None
        chunks = as_chunks(resp)
        if self.prefix:  # the client has read the prefix: the continuation goes on after it
            for chunk in chunks:
                for choice in chunk["choices"]:
                    text = choice["delta"].get("content") or ""
                    if text.startswith(self.prefix):
                        choice["delta"]["content"] = text[len(self.prefix):]
        return Head(_Ended(), chunks)

    async def abandoned(self, slot: Slot, result: Head | None) -> None:
        if result is not None:
            await close_quietly(result.upstream)
        self.bill_abandoned(slot)
        await self.release(slot)

    def can_be_continued(self) -> bool:
        """Whether a candidate left could continue a partial answer."""
        return any(adapter.continues(entry.upstream) for entry, adapter, _ in self.queue)

    def rescue_from(self, content: str) -> None:
        """From now on, continue the answer the client has read so far.

        When the client has read only reasoning, there is no answer to continue: the next
        candidate answers afresh (no prefix), so any candidate will do, and its reasoning is
        withheld (``_Stream.withhold_reasoning``).
        """
        self.prefix = content or None
        self.continuing = bool(content)
        self.t0 = time.monotonic()  # the deadline bounds the wait to resume, not the stream so far
        self.report.rescued = True


# --- streams -------------------------------------------------------------------------------


def max_answer_chars(adapter: Adapter) -> int:
    """The most characters an answer may reach: its backend's max_answer_bytes (in-process backends: the default)."""
    return int(getattr(adapter.config, "max_answer_bytes", MAX_ANSWER_BYTES))


class _Text:
    """An answer's text so far, kept compact: its pieces are joined in blocks rather than kept
    as one string object a token (about 60 bytes each), which made a long answer held for a
    client that reads slowly cost ten times its size."""

    __slots__ = ("blocks", "pieces", "size")
    BLOCK = 256  # pieces joined at a time

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.pieces: list[str] = []
        self.size = 0  # characters

    def add(self, text: str) -> None:
        self.size += len(text)
        pieces = self.pieces
        pieces.append(text)
        if len(pieces) >= self.BLOCK:
            self.blocks.append("".join(pieces))
            pieces.clear()

    def clear(self) -> None:
        self.blocks.clear()
        self.pieces.clear()
        self.size = 0

    def __str__(self) -> str:
        return "".join(self.blocks) + "".join(self.pieces)


class _Stream:
    """One client stream, across the attempts that feed it."""

    def __init__(self, walk: _Opening, on_end: StreamEnd | None = None) -> None:
        self.walk = walk
        self.on_end = on_end
        self.cap = MAX_ANSWER_BYTES  # characters an answer may reach on the backend answering (max_answer_bytes)
        self.first_at: float | None = None
        self.report = walk.report
        self.stall = walk.route.config.stall_timeout
        self.content = _Text()  # the answer's text the client has read
        self.started = False
        self.tools = False  # tool-call deltas were sent: a cut cannot be rescued
        self.finished = False  # a finish_reason was sent: the answer is whole
        self.cid, self.created = "", 0
        self.chars = 0  # characters the current attempt sent, to estimate its usage
        self.usage_seen = False
        self.fresh = 0  # whole answers: how many times the answer started afresh (the client had read nothing)

    async def chunks(self) -> AsyncIterator[ChatChunk]:
        walk, report = self.walk, self.report
        ended: BaseException | None = None
        try:
            while (won := await race(walk, walk.route.config.hedge_after)) is not None:
                slot, head = won
                rescue = self.started
                report.model, report.streaming = slot.entry, True
                report.dropped |= slot.drop - OWN  # what the client sent and this model goes without
                self.chars, self.usage_seen = 0, False
                self.cap = max_answer_chars(slot.adapter)
                stall = StallTimer(self.stall)
                try:
                    for held in head.chunks:
                        if self.note(slot.entry, held, rescue):
                            yield held
                    while (chunk := await stall.next(head.upstream)) is not None:
                        if chunk_has_token(chunk):
                            stall.progress()
                        if self.note(slot.entry, chunk, rescue):
                            yield chunk
                except (UpstreamError, TimeoutError) as exc:
                    if await self.cut(slot, self.stalled(slot) if isinstance(exc, TimeoutError) else exc):
                        continue
                    return
                except BaseException:
                    self.settle_usage(slot.entry)  # the client left, but the upstream billed what it sent
                    await walk.release(slot)  # the attempt tells nothing about the backend
                    raise
                finally:
                    stall.close()
                    await close_quietly(head.upstream)
                self.settle_usage(slot.entry)
                await walk.succeeded(slot)
                return
            if self.started:
                last = report.attempts[-1] if report.attempts else None
                raise StreamCut(
                    "the stream was cut and no candidate could continue it", partial=str(self.content),
                    backend=last.backend if last else "", model=last.model if last else "", code="stream_cut",
                )
            raise walk.give_up()
        except BaseException as exc:
            ended = exc
            raise
        finally:
            if self.on_end is not None:
                self.on_end(report, self.first_at, ended)

    def too_long(self, entry: ModelEntry) -> UpstreamBadResponse:
        """An answer past its backend's ``max_answer_bytes``: ended, not continued elsewhere (nothing could take a
        prefix that long), so that an upstream that never stops cannot fill the gateway's memory."""
        err = UpstreamBadResponse(f"the answer passed {self.cap} characters (max_answer_bytes)",
                                  backend=entry.backend, model=entry.name)
        err.may_fall_over = False
        return err

    def stalled(self, slot: Slot) -> UpstreamTimeout:
        e = slot.entry
        return UpstreamTimeout(f"no token for {self.stall:.2f}s", backend=e.backend, model=e.name)

    def note(self, entry: ModelEntry, chunk: ChatChunk, rescue: bool) -> bool:
        """Account one chunk; whether the client should get it."""
        if (usage := chunk.get("usage")) and self.report.bill(entry, usage):
            self.usage_seen = True  # else estimated when the attempt ends, as if it had said nothing
        choices = chunk["choices"]
        if rescue:
            if choices and (not chunk_has_token(chunk) or self.withhold_reasoning(chunk)):
                return False  # the continuation's opening role chunk, or reasoning: the client has had them
            chunk["id"], chunk["created"] = self.cid, self.created  # one answer, one id
        elif not chunk.get("id") and self.started:  # an ending the adapter made up (a refusal in the stream)
            chunk["id"], chunk["created"] = self.cid, self.created
        if not choices:
            return True
        if not self.started:
            self.started, self.cid, self.created = True, chunk["id"], chunk["created"]
            self.report.response_id = self.cid
            self.first_at = time.monotonic()
        for choice in choices:
            delta = choice["delta"]
            if text := delta.get("content"):
                self.content.add(text)
                self.chars += len(text)
            if reasoning := delta.get("reasoning_content") or delta.get("reasoning"):
                self.chars += len(reasoning)
            part = cast(dict[str, Any], delta)  # checked by the adapter (polyroute.adapters.shape)
            if refusal := part.get("refusal"):
                self.chars += len(refusal)
            if (calls := part.get("tool_calls")) or part.get("function_call"):
                self.tools = True
                for call in calls or (part,):  # legacy function_call: the delta holds the one function
                    function = call.get("function") or call.get("function_call") or {}
                    self.chars += len(function.get("name") or "") + len(function.get("arguments") or "")
            if self.chars > self.cap or self.content.size > self.cap:
                raise self.too_long(entry)
            if choice.get("finish_reason"):
                self.finished = True
        return True

    def withhold_reasoning(self, chunk: ChatChunk) -> bool:
        """Take a continuation's reasoning out of its chunk; whether nothing else is left to send.

        The client has read the cut attempt's reasoning already. The attempt that continues
        reasons afresh about an answer the client has begun to read, which would read as the
        reasoning again, so it is counted (for the bill) but not sent.
        """
        for choice in chunk["choices"]:
            delta = choice["delta"]
            for name in ("reasoning_content", "reasoning"):
                if text := delta.pop(name, None):  # type: ignore[misc]
                    self.chars += len(text)
            delta.pop("reasoning_details", None)  # signed for another request: not the client's to send back
        return not chunk_has_token(chunk)

    async def cut(self, slot: Slot, exc: UpstreamError) -> bool:
        """Account a stream that broke after its first token; whether to go on and rescue it."""
        entry = slot.entry
        cause = as_upstream(exc, slot, self.walk.guard)
        await self.walk.health.settle(slot.ticket, cause)
        self.settle_usage(entry)
        partial = str(self.content)
        cut = StreamCut(cause.message, partial=partial, backend=entry.backend, model=entry.name, code="stream_cut")
        self.report.fail(entry, cut, slot.started)
        if self.finished:
            return False  # the answer was whole; only its end was lost
        if self.walk.whole and cause.may_fall_over and (self.tools or not self.walk.can_be_continued()):
            self.start_afresh()
            return True
        if not cause.may_fall_over:
            raise cut
        if self.tools:
            raise StreamCut(
                "the stream was cut after tool-call deltas were sent; it cannot be continued",
                partial=partial, backend=entry.backend, model=entry.name, code="stream_cut",
            )
        self.walk.rescue_from(partial)
        return True

    def start_afresh(self) -> None:
        """A whole answer the client has not read yet: what was cut is dropped, the next candidate starts over."""
        self.started = self.tools = self.finished = False
        self.content.clear()
        self.fresh += 1
        walk = self.walk
        walk.prefix, walk.continuing = None, False
        walk.t0 = time.monotonic()  # as for a rescue: the deadline bounds the wait to resume

    def settle_usage(self, entry: ModelEntry) -> None:
        """Bill an attempt that reported no usage: about four characters a token."""
        if self.usage_seen:
            return
        req = self.walk.req
        prompt_chars = sum(len(m.text()) for m in req.messages) + len(self.walk.prefix or "")
        self.report.bill_estimate(entry, prompt_chars, self.chars)


class _Ended:
    """The rest of a stream whose chunks have all been read."""

    def __aiter__(self) -> _Ended:
        return self

    async def __anext__(self) -> ChatChunk:
        raise StopAsyncIteration


async def close_quietly(it: AsyncIterator[Any]) -> None:
    """Close an upstream's chunks, whatever its own teardown says."""
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        # Closing is cleanup: a failure of the upstream's own teardown changes nothing here.
        with contextlib.suppress(PolyrouteError, RuntimeError):
            await aclose()
