"""A streamed answer over server-sent events, as the async iterator of chunks adapters return.

Every chunk of every stream passes through here, so getting one is one coroutine
(``__anext__``) over the transport's read, not a stack of async generators
(request context, bytes, events, chunks), each of which cost a resumption per
chunk and a registration with the event loop per stream. What differs between
wire formats is the ``EventReader``: it turns one event into chunks and says
when the answer is complete.

Some servers ignore ``stream: true`` and send the whole answer as one JSON body
(``Content-Type: application/json``). That body is read (within ``max_answer_bytes``)
and turned into the chunks of an answer that has already ended, as ``EventReader.whole``
says, so a streamed or assembled request to such a server still gets its answer.
"""

from __future__ import annotations

from typing import Protocol

import orjson

from polyroute.adapters.http import HttpBackend, error_from_exception
from polyroute.adapters.shape import too_deep
from polyroute.adapters.sse import MAX_EVENT_BYTES, EventTooLarge, SSEDecoder
from polyroute.adapters.transport import TransportError
from polyroute.adapters.upstream import UpstreamResponse
from polyroute.errors import UpstreamBadResponse, UpstreamUnavailable
from polyroute.types import ChatChunk


class EventReader(Protocol):
    @property
    def ended(self) -> bool:
        """The answer is complete: what follows is not read."""

    def on(self, event: str, data: str) -> list[ChatChunk]:
        """The chunks one event carries (often one, maybe none); raises an UpstreamError when it says one."""

    def missing_end(self) -> str:
        """Why a body that ended before ``ended`` is a broken stream, for the error."""

    def whole(self, doc: object) -> list[ChatChunk]:
        """A whole answer sent instead of a stream, as its chunks; the answer is then complete."""


class SSEChunks:
    """POST on the first ``__anext__``, then the chunks as they arrive; ``aclose`` lets go of the connection."""

    __slots__ = ("_args", "_decoder", "_events", "_next", "_ready", "_resp", "http", "model", "reader")

    def __init__(
        self, http: HttpBackend, reader: EventReader, url: str, payload: object, headers: dict[str, str],
        model: str, timeout: float | None,
    ) -> None:
        self.http = http
        self.reader = reader
        self.model = model
        self._args = (url, payload, headers, model, timeout)
        self._resp: UpstreamResponse | None = None
        self._decoder = SSEDecoder(min(MAX_EVENT_BYTES, http.config.max_answer_bytes))
        self._events: list[tuple[str, str]] = []  # decoded from the last read, not yet read
        self._next = 0  # the first of _events not yet read
        self._ready: list[ChatChunk] = []  # chunks of one event, not yet returned, in reverse

    def __aiter__(self) -> SSEChunks:
        return self

    async def __anext__(self) -> ChatChunk:
        ready, reader = self._ready, self.reader
        while True:
            if ready:
                return ready.pop()
            if reader.ended:
                self.release()
                raise StopAsyncIteration
            if self._next < len(self._events):
                event, data = self._events[self._next]
                self._next += 1
                chunks = reader.on(event, data)
                if len(chunks) == 1:
                    return chunks[0]
                ready.extend(reversed(chunks))
                continue
            await self._read()

    async def _read(self) -> None:
        """The next piece of the body, decoded into events; at its end, what the decoder had left."""
        resp = self._resp
        if resp is None:
            resp = self._resp = await self.http.send(*self._args)
            ctype = resp.headers.get("content-type", "")
            if ctype.startswith("application/json"):
                await self._whole(resp)
                return
            if ctype.startswith("text/html"):  # a proxy's page, a login wall: not the stream asked for
                self.release()
                raise UpstreamBadResponse(f"a {resp.status} answer that is an HTML page, not an event stream",
                                          backend=self.http.name, model=self.model)
        try:
            data = await resp.next()
        except TransportError as exc:
            raise error_from_exception(exc, backend=self.http.name, model=self.model) from None
        try:
            self._events, self._next = (self._decoder.feed(data) if data is not None else self._decoder.end()), 0
        except EventTooLarge as exc:
            self.release()
            raise UpstreamBadResponse(str(exc), backend=self.http.name, model=self.model) from None
        if data is not None:
            return
        if not self._events:
            raise UpstreamUnavailable(self.reader.missing_end(), backend=self.http.name, model=self.model)

    async def _whole(self, resp: UpstreamResponse) -> None:
        config = self.http.config
        try:
            body = await resp.read(config.timeout, config.max_answer_bytes)
            doc = orjson.loads(body)
        except (TransportError, orjson.JSONDecodeError) as exc:
            raise error_from_exception(exc, backend=self.http.name, model=self.model) from None
        finally:
            self.release()
        if too_deep(body, doc):
            raise UpstreamBadResponse("answer nests too deep", backend=self.http.name, model=self.model)
        self._ready.extend(reversed(self.reader.whole(doc)))

    def release(self) -> None:
        if self._resp is not None:
            self._resp.release()

    async def aclose(self) -> None:
        self.release()
