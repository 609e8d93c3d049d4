"""``/v1/conversations``: OpenAI's Conversations API over the gateway's kept conversations.

    POST   /v1/conversations                     {items?, metadata?}  -> conversation
    GET    /v1/conversations/{id}                                     -> conversation
    POST   /v1/conversations/{id}                {metadata}           -> conversation
    DELETE /v1/conversations/{id}                                     -> conversation.deleted
    POST   /v1/conversations/{id}/items          {items}, ?include    -> list of the items added
    GET    /v1/conversations/{id}/items          ?after&limit&order&include -> a page of items
    GET    /v1/conversations/{id}/items/{item}   ?include             -> the item
    DELETE /v1/conversations/{id}/items/{item}                        -> conversation

Each in OpenAI's shapes and with OpenAI's limits (``conversations_items``): up to 20
items added per call; a page of ``limit`` (1 to 100, 20 by default) items, newest first
unless ``order=asc`` (``conversations_paging``); what ``include`` adds to the items shown
(``responses_include``). A key reaches only the conversations it made (``polyroute.tenancy.
conversations``); any other id is the same 404. A conversation holds at most
``[gateway] max_messages`` items, since a response with it sends them all.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import orjson

from polyroute.errors import InvalidRequest, MethodNotAllowed, NotFound, PolyrouteError
from polyroute.gateway import Gateway
from polyroute.routing import Principal
from polyroute.server.answers import Reply
from polyroute.server.bounds import Bounds
from polyroute.server.chat import read_object
from polyroute.server.conversations_items import about_items, checked_items
from polyroute.server.conversations_metadata import checked_metadata
from polyroute.server.conversations_paging import listed, paging
from polyroute.server.conversations_turn import missing
from polyroute.server.dispatch import request_key
from polyroute.server.errors import error_response
from polyroute.server.http11 import Request
from polyroute.server.responses_include import include_query, shown_items
from polyroute.tenancy.conversations import ConversationKeeper, StoredConversation

__all__ = ["ConversationsEndpoint"]


class ConversationsEndpoint:
    """The routes of ``/v1/conversations`` (``root``, one route) and under it (``handle``, a prefix)."""

    def __init__(self, gateway: Gateway, prefix: str, bounds: Bounds) -> None:
        self.gateway = gateway
        self.prefix = prefix  # "/v1/conversations/"
        self.bounds = bounds

    @property
    def kept(self) -> ConversationKeeper:
        return self.gateway.tenancy.conversations

    async def root(self, request: Request) -> Reply:
        try:
            principal = self.gateway.keys.authenticate(request_key(request))
            raw = _read(request.body, self.bounds)
            metadata = checked_metadata(raw.get("metadata"))
            items = await checked_items(raw.get("items"), False, request.body, self.bounds,
                                        self.gateway.tenancy.responses, self.kept, principal.key)
            self._fits(0, len(items))
            made, _ = await self.kept.create(metadata, items, principal.key, principal.team)
            return _json(made.shown())
        except PolyrouteError as exc:
            return error_response(exc)

    async def handle(self, request: Request) -> Reply:
        try:
            principal = self.gateway.keys.authenticate(request_key(request))
            parts = [unquote(p) for p in request.path.removeprefix(self.prefix).split("/")]
            if len(parts) == 1:
                return await self._conversation(request, parts[0], principal)
            if len(parts) == 2 and parts[1] == "items":
                return await self._items(request, parts[0], principal)
            if len(parts) == 3 and parts[1] == "items" and parts[2]:
                return await self._item(request, parts[0], parts[2], principal)
            raise NotFound(f"Unknown path: {request.path}")
        except PolyrouteError as exc:
            return error_response(exc)

    async def _conversation(self, request: Request, conversation_id: str, principal: Principal) -> Reply:
        key = principal.key
        if request.method == "GET":
            return _json(_shown(await self.kept.get(conversation_id, key), conversation_id))
        if request.method == "DELETE":
            if not await self.kept.delete(conversation_id, key):
                raise missing(conversation_id)
            return _json({"id": conversation_id, "object": "conversation.deleted", "deleted": True})
        raw = _read(request.body, self.bounds)
        if raw.get("metadata") is None:
            raise InvalidRequest("Missing required parameter: 'metadata'.", param="metadata")
        metadata = checked_metadata(raw["metadata"])
        return _json(_shown(await self.kept.update(conversation_id, key, metadata), conversation_id))

    async def _items(self, request: Request, conversation_id: str, principal: Principal) -> Reply:
        key = principal.key
        params = request.params()
        include = include_query(params)
        if request.method == "POST":
            raw = _read(request.body, self.bounds)
            items = await checked_items(raw.get("items"), True, request.body, self.bounds,
                                        self.gateway.tenancy.responses, self.kept, key)
            self._fits(0, len(items))
            added = await self.kept.append(conversation_id, key, items, self.bounds.max_messages)
            if added is None:
                raise missing(conversation_id)
            if items and not added.items:
                self._fits(added.size, len(items))
            return _json(listed(shown_items(added.items, include), False))
        if request.method != "GET":
            raise MethodNotAllowed(f"Method {request.method} is not allowed on {request.path}.")
        asked = paging(params)
        page = await self.kept.page(conversation_id, key, asked.after, asked.limit, asked.newest_first)
        if page is None:
            raise missing(conversation_id)
        items, more = page
        return _json(listed(shown_items(items, include), more))

    async def _item(self, request: Request, conversation_id: str, item_id: str, principal: Principal) -> Reply:
        key = principal.key
        if request.method == "GET":
            include = include_query(request.params())
            if (conversation := await self.kept.get(conversation_id, key)) is None:
                raise missing(conversation_id)
            found = await self.kept.item(conversation.id, key, item_id)
            if found is None:
                raise _no_item(item_id)
            return _json(shown_items([found], include)[0])
        if request.method != "DELETE":
            raise MethodNotAllowed(f"Method {request.method} is not allowed on {request.path}.")
        conversation, deleted = await self.kept.delete_item(conversation_id, key, item_id)
        if conversation is None:
            raise missing(conversation_id)
        if not deleted:
            raise _no_item(item_id)
        return _json(conversation.shown())

    def _fits(self, size: int, adding: int) -> None:
        cap = self.bounds.max_messages
        if size + adding > cap:
            raise InvalidRequest(f"Invalid 'items': the conversation holds {size} items, and {adding} more would pass "
                                 f"its limit of {cap}; start a new conversation, or delete some of its items.",
                                 param="items", code="array_above_max_length")


def _read(body: bytes, bounds: Bounds) -> dict[str, Any]:
    """The body's object, within ``bounds`` as a chat request's (its count of messages is a count of items
    here)."""
    try:
        raw = read_object(body, bounds)
        bounds.check(raw, body)
    except InvalidRequest as exc:
        raise about_items(exc) from None
    return raw


def _shown(conversation: StoredConversation | None, conversation_id: str) -> dict[str, Any]:
    if conversation is None:
        raise missing(conversation_id)
    return conversation.shown()


def _no_item(item_id: str) -> NotFound:
    return NotFound(f"Item with id '{item_id}' not found in this conversation.", param="item_id")


def _json(doc: Any) -> Reply:
    return Reply(orjson.dumps(doc), 200)
