"""``POST /v1/responses``: OpenAI's Responses API, served by the chat endpoint's own path.

A Responses request is translated into a chat request (``responses_request``) and
validated as one; from there keys, admission, routing, failover, budgets, the ledger
and metrics are the chat endpoint's, unchanged. Only the answer's shape differs: a
``response`` object (``responses_answer``) or its events (``responses_stream``).

What it names of stored responses and conversations (``previous_response_id``, ``item_reference``) is put
in first (``responses_references``). Unless it says ``store: false``, the response is then
stored (``polyroute.tenancy.responses``) before its last bytes leave: a whole answer
before its body is sent, a stream before ``response.completed``. A client sends its next
turn only after reading the answer, so the next turn always finds it. A store that fails
then costs the client only the storing: the answer is sent, and the failure logged.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from pydantic import PrivateAttr, ValidationError

from polyroute.errors import InvalidRequest, PolyrouteError, StoreUnavailable
from polyroute.failover import Report
from polyroute.gateway import RequestContext
from polyroute.server.bounds import Bounds, too_many_input_items, too_many_items
from polyroute.server.chat import ChatEndpoint, close_iterator, read_object
from polyroute.server.conversations_turn import append_turn, before_input, conversation_named
from polyroute.server.errors import from_validation
from polyroute.server.responses_answer import from_chat
from polyroute.server.responses_kept import with_ids
from polyroute.server.responses_references import ResolvedInput, names_stored, resolve
from polyroute.server.responses_request import seals_reasoning, stores, to_chat
from polyroute.server.responses_stream import ResponseEvents
from polyroute.types import ChatChunk, ChatRequest, ChatResponse

log = logging.getLogger("polyroute.access")


class ResponsesChatRequest(ChatRequest):
    """The chat request a Responses request became, and what that request asked of its answer's shape (kept off
    the JSON an upstream is sent)."""

    _sealed: bool = PrivateAttr(default=False)
    _stored: bool = PrivateAttr(default=True)
    _resolved: ResolvedInput | None = PrivateAttr(default=None)
    _conversation: str | None = PrivateAttr(default=None)

    @property
    def sealed(self) -> bool:
        """Whether reasoning items carry ``encrypted_content`` (``include: ["reasoning.encrypted_content"]``)."""
        return self._sealed

    @property
    def stored(self) -> bool:
        """Whether its response is stored (``store`` is not false)."""
        return self._stored

    @property
    def resolved(self) -> ResolvedInput:
        """Its own input, and the conversation of its ``previous_response_id``."""
        return self._resolved or ResolvedInput(None, [], None)

    @property
    def conversation(self) -> str | None:
        """The id of the conversation it goes on (``conversation``), which its turn is added to."""
        return self._conversation

    def shown(self) -> dict[str, Any]:
        """What its response object says of how it was kept."""
        shown: dict[str, Any] = {"store": self.stored, "previous_response_id": self.resolved.previous_id}
        if self._conversation is not None:
            shown["conversation"] = {"id": self._conversation}
        return shown


def parse_responses(body: bytes, bounds: Bounds, raw: dict[str, Any] | None = None,
                    resolved: ResolvedInput | None = None) -> ResponsesChatRequest:
    """The chat request a Responses request's body asks for (``raw``, when it was read already, with what it
    named of stored responses put in), checked and validated as chat's own are."""
    raw = read_object(body, bounds) if raw is None else raw
    if resolved is not None:
        raw = {**raw, "input": resolved.input(), "previous_response_id": None}
    try:
        chat = to_chat(raw)
    except InvalidRequest as exc:
        raise _as_sent(exc, len(resolved.earlier) if resolved is not None else 0) from None
    bounds.check(chat, body)
    try:
        req = ResponsesChatRequest.from_json(chat)
    except ValidationError as exc:
        raise from_validation(exc) from None
    assert isinstance(req, ResponsesChatRequest)
    req._sealed = seals_reasoning(raw)
    req._stored = stores(raw)
    req._resolved = resolved or ResolvedInput(raw.get("input"), [], None)
    return req


_INPUT_INDEX = re.compile(r"input\[(\d+)\]")


def _as_sent(exc: InvalidRequest, earlier: int) -> InvalidRequest:
    """``exc`` naming the input item as the client numbered it: ``previous_response_id`` put ``earlier`` stored
    items before the request's own, which the error counted."""
    found = _INPUT_INDEX.match(exc.param or "")
    if not earlier or found is None or int(found[1]) < earlier:
        return exc
    sent = f"input[{int(found[1]) - earlier}]"
    exc.param = sent + (exc.param or "")[found.end():]
    exc.message = exc.message.replace(found[0], sent, 1)
    exc.args = (exc.message,)
    return exc


def _sealed(req: ChatRequest) -> bool:
    return isinstance(req, ResponsesChatRequest) and req.sealed


def _sealed_apart(resp: ChatResponse, req: ChatRequest, request_id: str) -> dict[str, str]:
    """The ``encrypted_content`` of a whole answer's reasoning items, by item id, when it is shown without it."""
    if _sealed(req) or not any(c["message"].get("reasoning_details") for c in resp["choices"]):
        return {}
    whole = from_chat(resp, req, request_id, sealed=True)
    return {item["id"]: item["encrypted_content"] for item in whole["output"] if "encrypted_content" in item}


class ResponsesEndpoint(ChatEndpoint):
    async def read(self, body: bytes, ctx: RequestContext) -> ChatRequest:
        try:
            raw = read_object(body, self.bounds)
        except InvalidRequest as exc:
            if exc.code == "array_above_max_length":  # "role"s counted in the bytes: here they are input items
                raise too_many_input_items(self.bounds.max_messages) from None
            raise
        if (too_many := too_many_items(raw.get("input"), self.bounds.max_messages)) is not None:
            raise too_many
        self.bounds.check_input_parts(raw.get("input"), body)
        resolved = None
        conversation = conversation_named(raw)
        tenancy, key = self.gateway.tenancy, ctx.principal.key
        if names_stored(raw):
            resolved = await resolve(raw, tenancy.responses, tenancy.conversations, key)
        if conversation is not None:
            given = resolved.given if resolved is not None else raw.get("input")
            resolved = await before_input(conversation, given, tenancy.conversations, key,
                                          self.bounds.max_messages)
        req = parse_responses(body, self.bounds, raw, resolved)
        req._conversation = conversation
        return req

    async def whole(self, resp: ChatResponse, req: ChatRequest, ctx: RequestContext) -> bytes:
        doc = from_chat(resp, req, ctx.request_id, sealed=_sealed(req))
        await self.keep(doc, req, ctx, _sealed_apart(resp, req, ctx.request_id))
        return orjson.dumps(doc)

    async def keep(self, doc: dict[str, Any], req: ChatRequest, ctx: RequestContext,
                   sealed_apart: dict[str, str]) -> None:
        """Say in ``doc`` whether it is stored and what it followed, and store it unless asked not to, its
        reasoning items with their ``encrypted_content`` (``sealed_apart``, by item id, where ``doc`` has none):
        a reasoning item named again gives the model back its whole reasoning, as OpenAI's stored ones do."""
        if not isinstance(req, ResponsesChatRequest):
            return
        resolved = req.resolved
        doc.update(req.shown())
        if doc["status"] == "failed":
            return
        given = resolved.given
        items = [{"type": "message", "role": "user", "content": given}] if isinstance(given, str) else given
        stored = doc
        if sealed_apart:
            stored = {**doc, "output": [{**item, "encrypted_content": sealed_apart[item["id"]]}
                                        if item.get("id") in sealed_apart else item for item in doc["output"]]}
        if req.conversation is not None:
            await append_turn(self.gateway.tenancy.conversations, req.conversation, given, stored["output"],
                              ctx.request_id, ctx.principal.key)
        if not req.stored:
            return
        try:
            await self.gateway.tenancy.responses.put(stored, with_ids(items, ctx.request_id), resolved.previous_id,
                                                      ctx.principal.key, ctx.principal.team)
        except StoreUnavailable as exc:  # an outage: said without a traceback, the answer is sent
            log.warning("response %s was answered but not stored: %s", doc["id"], exc.message)
        except Exception:
            log.exception("response %s was answered but could not be stored", doc["id"])

    async def frames(
        self, first: ChatChunk | None, chunks: AsyncIterator[ChatChunk], req: ChatRequest, report: Report,
        ctx: RequestContext,
    ) -> AsyncIterator[bytes]:
        name = report.model.name if report.model else req.model
        events = ResponseEvents(ctx.request_id, req, name, int(time.time()), sealed=_sealed(req))
        if isinstance(req, ResponsesChatRequest):
            events.response.update(req.shown())
        try:
            yield events.opening()
            if first is not None and (framed := events.chunk(first)):
                yield framed
            async for chunk in chunks:
                if chunk["choices"] and (framed := events.chunk(chunk)):
                    yield framed
            closing = events.closing(self.usage_chunk(None, name, report)["usage"])
            # Stored before response.completed leaves: the next turn may name it.
            await self.keep(events.response, req, ctx, events.sealed_apart)
            yield closing
        except PolyrouteError as exc:
            yield events.failed(exc.to_body()["error"])
        except Exception:
            log.exception("unexpected error while streaming route %s", report.route)
            yield events.failed({"code": "internal_error", "message": "The gateway hit an internal error; it has "
                                 "been logged."})
        finally:
            await close_iterator(chunks)
