"""Where Conversations API conversations live: a protocol, the in-process store, and the async front.

A conversation (``conv_...``, OpenAI's Conversations API) is an ordered list of items
(messages, function calls and their outputs, reasoning) with metadata, owned like a
stored response (``polyroute.tenancy.responses``): by the key that made it (its name;
None on a gateway without keys) and that key's team. ``POST /v1/responses`` with
``conversation`` reads its items before the request's input and appends the turn's
input and output items after it; the ``/v1/conversations`` routes read and write it
directly.

Three stores implement ``ConversationStore``: a bounded LRU in this process (a
gateway without ``[store]``), the store's SQLite file and its PostgreSQL database
(``conversations_sqlite``, ``conversations_postgres``). A conversation has an end
(``expires_at``), pushed back by every write to it, so one in use is kept; past it a
store no longer returns it, and it is deleted with its items at the next sweep.

An item id is unique within its conversation: an appended item whose id the
conversation holds already (a client adding the same output twice) is given a new
one, so that every item can still be read and deleted by its id. A Responses request's
``item_reference`` may name an item of any of the key's conversations (``find_item``);
ids a client gave may repeat across its conversations, and the one added last wins.

The ``ConversationKeeper`` front is what the server calls: it runs a blocking store's
calls in a worker thread, sweeps expired rows now and then, and hands out only what
belongs to the asking key.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from polyroute.errors import InvalidRequest
from polyroute.tenancy.kept import Kept

if TYPE_CHECKING:
    from polyroute.config import Config
    from polyroute.tenancy.stores import Store

__all__ = ["MEMORY_CONVERSATIONS", "Appended", "ConversationKeeper", "ConversationStore", "MemoryConversations",
           "StoredConversation", "fresh_ids", "new_item_id", "open_conversations"]

# How many conversations a gateway without a store keeps in its process (the least recently used go first).
MEMORY_CONVERSATIONS = 1000
# And how many bytes of their items (their JSON) it keeps: images and long answers add up. The least recently used
# conversations go first; one larger than that alone is not kept.
MEMORY_CONVERSATION_BYTES = 128 << 20
# Ids made for items that came without one, by their type (as OpenAI's are prefixed).
_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}

Held = tuple["StoredConversation", list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class StoredConversation:
    id: str  # conv_...
    key: str | None  # the key it belongs to (None: a gateway without keys)
    team: str | None
    created_at: float  # epoch seconds
    expires_at: float
    metadata: dict[str, str]
    size: int = 0  # how many items it holds (as read; ignored when written)

    def shown(self) -> dict[str, Any]:
        """The ``conversation`` object of OpenAI's API."""
        return {"id": self.id, "object": "conversation", "created_at": int(self.created_at),
                "metadata": self.metadata}


@dataclass(frozen=True, slots=True)
class Appended:
    """What ``append`` did: the items as stored (empty when they would have passed the cap), and the size after."""

    items: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0


def new_item_id(kind: Any) -> str:
    prefix = _ID_PREFIXES.get(kind, "item") if isinstance(kind, str) else "item"
    return f"{prefix}_{secrets.token_hex(24)}"


def fresh_ids(items: list[dict[str, Any]], taken: set[str]) -> list[dict[str, Any]]:
    """``items`` with an id each that no other item of the conversation (``taken``, updated) has."""
    out = []
    for item in items:
        given = item.get("id")
        made = given if isinstance(given, str) and given and given not in taken else new_item_id(item.get("type"))
        taken.add(made)
        out.append({**item, "id": made})
    return out


class ConversationStore(Protocol):
    """Blocking calls when ``blocking`` (run in a worker thread), else instant ones."""

    @property
    def blocking(self) -> bool: ...

    def create(self, conversation: StoredConversation, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Keep a new conversation and its first items; the items as stored (``fresh_ids``)."""
        ...

    def get(self, conversation_id: str, now: float) -> StoredConversation | None:
        """The conversation with its size, unless it is unknown, deleted or past its end."""
        ...

    def update(self, conversation_id: str, metadata: dict[str, str], expires_at: float) -> None: ...

    def delete(self, conversation_id: str) -> bool:
        """Forget the conversation and its items; whether it was there."""
        ...

    def append(self, conversation_id: str, items: list[dict[str, Any]], expires_at: float,
               cap: int | None) -> Appended | None:
        """Add items at the end, unless that would take it past ``cap`` items; None when it is not there."""
        ...

    def items(self, conversation_id: str) -> list[dict[str, Any]]:
        """All its items, oldest first."""
        ...

    def page(self, conversation_id: str, after: str | None, limit: int,
             newest_first: bool) -> tuple[list[dict[str, Any]], bool] | None:
        """Up to ``limit`` items after the item ``after`` in that order, and whether more follow; None when it
        holds no item ``after``."""
        ...

    def item(self, conversation_id: str, item_id: str) -> dict[str, Any] | None: ...

    def find_item(self, item_id: str, key: str | None, now: float) -> dict[str, Any] | None:
        """The item of that id added last to any conversation of ``key``'s that has not passed its end."""
        ...

    def delete_item(self, conversation_id: str, item_id: str) -> bool: ...

    def expire(self, now: float) -> None:
        """Delete the conversations past their end, and their items."""
        ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _Held:
    conversation: StoredConversation
    items: list[dict[str, Any]]
    size: int = 0  # bytes of its items' JSON


class MemoryConversations:
    """``ConversationStore`` in this process: at most ``limit`` conversations and ``max_bytes`` of their items, the
    least recently used dropped first."""

    blocking = False

    def __init__(self, limit: int = MEMORY_CONVERSATIONS, max_bytes: int = MEMORY_CONVERSATION_BYTES) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self._held: OrderedDict[str, _Held] = OrderedDict()
        # Item id -> {conversation id: when it was added}, so that ``find_item`` reads no conversation it need not.
        self._where: dict[str, dict[str, int]] = {}
        self._added = 0

    def create(self, conversation: StoredConversation, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        stored = fresh_ids(items, set())
        size = len(orjson.dumps(stored))
        self._held[conversation.id] = _Held(replace(conversation, size=0), stored, size)
        self.held_bytes += size
        self._index(conversation.id, stored)
        self._trim()
        return stored

    def _trim(self) -> None:
        while self._held and (len(self._held) > self.limit or self.held_bytes > self.max_bytes):
            self._forget(next(iter(self._held)))

    def _index(self, conversation_id: str, items: list[dict[str, Any]]) -> None:
        for item in items:
            self._added += 1
            self._where.setdefault(item["id"], {})[conversation_id] = self._added

    def _unindex(self, conversation_id: str, item_id: str) -> None:
        places = self._where.get(item_id)
        if places is not None:
            places.pop(conversation_id, None)
            if not places:
                del self._where[item_id]

    def _forget(self, conversation_id: str) -> bool:
        held = self._held.pop(conversation_id, None)
        for item in held.items if held is not None else ():
            self._unindex(conversation_id, item["id"])
        if held is not None:
            self.held_bytes -= held.size
        return held is not None

    def _find(self, conversation_id: str, now: float | None = None) -> _Held | None:
        held = self._held.get(conversation_id)
        if held is None or (now is not None and held.conversation.expires_at <= now):
            return None
        self._held.move_to_end(conversation_id)
        return held

    def get(self, conversation_id: str, now: float) -> StoredConversation | None:
        held = self._find(conversation_id, now)
        return None if held is None else replace(held.conversation, size=len(held.items))

    def update(self, conversation_id: str, metadata: dict[str, str], expires_at: float) -> None:
        if (held := self._find(conversation_id)) is not None:
            held.conversation = replace(held.conversation, metadata=metadata, expires_at=expires_at)

    def delete(self, conversation_id: str) -> bool:
        return self._forget(conversation_id)

    def append(self, conversation_id: str, items: list[dict[str, Any]], expires_at: float,
               cap: int | None) -> Appended | None:
        held = self._find(conversation_id)
        if held is None:
            return None
        if cap is not None and len(held.items) + len(items) > cap:
            return Appended([], len(held.items))
        stored = fresh_ids(items, {item["id"] for item in held.items})
        held.items.extend(stored)
        added = len(orjson.dumps(stored))
        held.size += added
        self.held_bytes += added
        self._index(conversation_id, stored)
        held.conversation = replace(held.conversation, expires_at=max(expires_at, held.conversation.expires_at))
        count = len(held.items)
        self._trim()
        return Appended(stored, count)

    def items(self, conversation_id: str) -> list[dict[str, Any]]:
        held = self._find(conversation_id)
        return [] if held is None else list(held.items)

    def page(self, conversation_id: str, after: str | None, limit: int,
             newest_first: bool) -> tuple[list[dict[str, Any]], bool] | None:
        ordered = self.items(conversation_id)
        if newest_first:
            ordered.reverse()
        if after is not None:
            at = next((i for i, item in enumerate(ordered) if item["id"] == after), None)
            if at is None:
                return None
            ordered = ordered[at + 1:]
        return ordered[:limit], len(ordered) > limit

    def item(self, conversation_id: str, item_id: str) -> dict[str, Any] | None:
        return next((item for item in self.items(conversation_id) if item["id"] == item_id), None)

    def find_item(self, item_id: str, key: str | None, now: float) -> dict[str, Any] | None:
        places = sorted((self._where.get(item_id) or {}).items(), key=lambda place: place[1], reverse=True)
        for conversation_id, _ in places:
            held = self._held[conversation_id]
            if held.conversation.key == key and held.conversation.expires_at > now:
                return next(item for item in held.items if item["id"] == item_id)
        return None

    def delete_item(self, conversation_id: str, item_id: str) -> bool:
        held = self._find(conversation_id)
        if held is None:
            return False
        kept = [item for item in held.items if item["id"] != item_id]
        found = len(kept) < len(held.items)
        gone = sum(len(orjson.dumps(item)) for item in held.items if item["id"] == item_id)
        held.size -= gone
        self.held_bytes -= gone
        held.items = kept
        self._unindex(conversation_id, item_id)
        return found

    def expire(self, now: float) -> None:
        for gone in [k for k, held in self._held.items() if held.conversation.expires_at <= now]:
            self._forget(gone)

    def close(self) -> None:
        self._held.clear()
        self._where.clear()


class ConversationKeeper(Kept[ConversationStore]):
    """The conversations as the server reads and writes them: a key reaches only its own, nothing past its end,
    and every write pushes the end back by ``retention_s``."""

    async def create(self, metadata: dict[str, str], items: list[dict[str, Any]], key: str | None,
                     team: str | None) -> tuple[StoredConversation, list[dict[str, Any]]]:
        now = self.clock()
        made = StoredConversation(f"conv_{secrets.token_hex(24)}", key, team, now, now + self.retention_s, metadata)
        stored = await self._call(self.store.create, made, items)
        await self._sweep(now)
        return replace(made, size=len(stored)), stored

    def _owned(self, conversation_id: str, key: str | None) -> StoredConversation | None:
        """Blocking: the conversation when it is this key's."""
        found = self.store.get(conversation_id, self.clock())
        return found if found is not None and found.key == key else None

    async def get(self, conversation_id: str, key: str | None) -> StoredConversation | None:
        return await self._call(self._owned, conversation_id, key)

    async def update(self, conversation_id: str, key: str | None,
                     metadata: dict[str, str]) -> StoredConversation | None:
        def run() -> StoredConversation | None:
            found = self._owned(conversation_id, key)
            if found is None:
                return None
            expires_at = self.clock() + self.retention_s
            self.store.update(conversation_id, metadata, expires_at)
            return replace(found, metadata=metadata, expires_at=expires_at)
        return await self._call(run)

    async def delete(self, conversation_id: str, key: str | None) -> bool:
        def run() -> bool:
            return self._owned(conversation_id, key) is not None and self.store.delete(conversation_id)
        return await self._call(run)

    async def append(self, conversation_id: str, key: str | None, items: list[dict[str, Any]],
                     cap: int | None) -> Appended | None:
        """Add items at the end of this key's conversation (None: it has none of that id)."""
        def run() -> Appended | None:
            if self._owned(conversation_id, key) is None:
                return None
            return self.store.append(conversation_id, items, self.clock() + self.retention_s, cap)
        return await self._call(run)

    async def read(self, conversation_id: str, key: str | None) -> Held | None:
        """The conversation and all its items, oldest first."""
        def run() -> Held | None:
            found = self._owned(conversation_id, key)
            return None if found is None else (found, self.store.items(conversation_id))
        return await self._call(run)

    async def page(self, conversation_id: str, key: str | None, after: str | None, limit: int,
                   newest_first: bool) -> tuple[list[dict[str, Any]], bool] | None:
        """A page of items and whether more follow; None when the key has no such conversation."""
        def run() -> tuple[list[dict[str, Any]], bool] | None:
            if self._owned(conversation_id, key) is None:
                return None
            found = self.store.page(conversation_id, after, limit, newest_first)
            if found is None:
                raise InvalidRequest(f"Invalid value for 'after': this conversation has no item with id '{after}'.",
                                     param="after")
            return found
        return await self._call(run)

    async def item(self, conversation_id: str, key: str | None, item_id: str) -> dict[str, Any] | None:
        def run() -> dict[str, Any] | None:
            return None if self._owned(conversation_id, key) is None else self.store.item(conversation_id, item_id)
        return await self._call(run)

    def item_lookup(self, key: str | None) -> Callable[[str], dict[str, Any] | None]:
        """A blocking reader of the items of this key's conversations by id (for ``responses_references``, run
        where the store's calls run)."""
        now = self.clock()

        def find(item_id: str) -> dict[str, Any] | None:
            return self.store.find_item(item_id, key, now)
        return find

    async def delete_item(self, conversation_id: str, key: str | None,
                          item_id: str) -> tuple[StoredConversation | None, bool]:
        """The conversation (None: not this key's) and whether it held the item, deleted now."""
        def run() -> tuple[StoredConversation | None, bool]:
            found = self._owned(conversation_id, key)
            return found, found is not None and self.store.delete_item(conversation_id, item_id)
        return await self._call(run)

    def close(self) -> None:
        self.store.close()


def open_conversations(config: Config, store: Store | None) -> ConversationKeeper:
    """Where conversations are kept: where stored responses are (the store's database, else this process), as
    long as they are (``[store] responses_retention_days``, from the last write)."""
    from polyroute.config import POSTGRES_SCHEMES

    kept: ConversationStore
    if store is None:
        kept = MemoryConversations()
    elif (s := config.store).url is not None and s.url.startswith(POSTGRES_SCHEMES):
        from polyroute.tenancy.conversations_postgres import PostgresConversations

        kept = PostgresConversations(s.url, s.password.get() if s.password else None)
    else:
        from polyroute.tenancy.conversations_sqlite import SqliteConversations

        kept = SqliteConversations(store.where)
    return ConversationKeeper(kept, config.store.responses_retention_days * 86400)
