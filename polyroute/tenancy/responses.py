"""Where stored Responses API responses live: a protocol, the in-process store, and the async front.

``POST /v1/responses`` keeps each response it answers (unless the request says
``store: false``) so that a later request may name it (``previous_response_id``) or
one of its output items (``item_reference``), as OpenAI's Responses API does. A
stored response is its ``response`` object, the input items it was asked with
(references already replaced by what they named), the response it followed, and
whose it is: the key's name (None on a gateway without keys) and team.

Three stores implement ``ResponseStore``: a bounded LRU in this process (a gateway
without ``[store]``), one SQLite file and one PostgreSQL database (the tables of
``[store] url``; ``responses_sqlite``, ``responses_postgres``). Every stored row
has an end (``expires_at``); past it a store no longer returns it, and it is deleted
at the next sweep. Output items are found by their own id (``msg_``, ``fc_``,
``rs_``), which is unique because it holds the gateway's request id. Input items are
found by their id too (``input_item``), but only among the asking key's responses:
a client may give an input item any id, another key's included, so such an id names
nothing beyond its own key's, and when several of its responses hold it, the one
stored last wins.

The ``ResponseKeeper`` front is what the server calls: it runs a blocking store's calls in a
worker thread, sweeps expired rows now and then, and hands out only what belongs
to the asking key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson

from polyroute.tenancy.kept import Kept

__all__ = ["MEMORY_RESPONSES", "MEMORY_RESPONSE_BYTES", "MemoryResponses", "ResponseKeeper", "ResponseStore",
           "StoredItem", "StoredResponse", "inputs_with_ids"]

# How many responses a gateway without a store keeps in its process, and how many bytes of them (their JSON): the
# least recently used go first when either is passed. A response alone larger than the bytes is not kept.
MEMORY_RESPONSES = 2000
MEMORY_RESPONSE_BYTES = 128 << 20

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str  # resp_...
    key: str | None  # the key it belongs to (None: a gateway without keys)
    team: str | None
    created_at: float  # epoch seconds
    expires_at: float
    previous_id: str | None  # the response it followed (previous_response_id)
    input: list[dict[str, Any]]  # its own input items, references replaced
    response: dict[str, Any]  # the response object, output items with their ids

    def items(self) -> list[dict[str, Any]]:
        """Its output items that carry an id: what ``item_reference`` can name."""
        return [item for item in self.response.get("output") or [] if isinstance(item.get("id"), str)]


@dataclass(frozen=True, slots=True)
class StoredItem:
    """An output item of a stored response, and whose it is."""

    key: str | None
    response_id: str
    item: dict[str, Any]


class ResponseStore(Protocol):
    """Blocking calls when ``blocking`` (run in a worker thread), else instant ones."""

    @property
    def blocking(self) -> bool: ...

    def put(self, stored: StoredResponse) -> None:
        """Keep a response and index its output items (a response kept again replaces itself)."""
        ...

    def get(self, response_id: str, now: float) -> StoredResponse | None:
        """The response, unless it is unknown, deleted or past its end."""
        ...

    def item(self, item_id: str, now: float) -> StoredItem | None:
        """The output item of that id, unless its response is unknown, deleted or past its end."""
        ...

    def input_item(self, item_id: str, key: str | None, now: float) -> dict[str, Any] | None:
        """The input item of that id of ``key``'s response stored last, unless past its end."""
        ...

    def delete(self, response_id: str) -> bool:
        """Forget the response and its items; whether it was there."""
        ...

    def expire(self, now: float) -> None:
        """Delete the rows past their end."""
        ...

    def close(self) -> None: ...


class MemoryResponses:
    """``ResponseStore`` in this process: at most ``limit`` responses and ``max_bytes`` of them (a long answer, an
    image sent as input), the least recently used dropped first."""

    blocking = False

    def __init__(self, limit: int = MEMORY_RESPONSES, max_bytes: int = MEMORY_RESPONSE_BYTES) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self._sizes: dict[str, int] = {}
        self._responses: OrderedDict[str, StoredResponse] = OrderedDict()
        self._items: dict[str, str] = {}  # item id -> response id
        self._inputs: dict[str, dict[str, None]] = {}  # input item id -> the responses holding it, oldest first

    def put(self, stored: StoredResponse) -> None:
        self.delete(stored.id)
        self._responses[stored.id] = stored
        self._sizes[stored.id] = size = len(orjson.dumps(stored.input)) + len(orjson.dumps(stored.response))
        self.held_bytes += size
        for item in stored.items():
            self._items[item["id"]] = stored.id
        for item_id in _input_ids(stored):
            self._inputs.setdefault(item_id, {})[stored.id] = None
        while self._responses and (len(self._responses) > self.limit or self.held_bytes > self.max_bytes):
            self.delete(next(iter(self._responses)))

    def get(self, response_id: str, now: float) -> StoredResponse | None:
        stored = self._responses.get(response_id)
        if stored is None or stored.expires_at <= now:
            return None
        self._responses.move_to_end(response_id)
        return stored

    def item(self, item_id: str, now: float) -> StoredItem | None:
        response_id = self._items.get(item_id)
        stored = None if response_id is None else self.get(response_id, now)
        if stored is None:
            return None
        found = next(item for item in stored.items() if item["id"] == item_id)
        return StoredItem(stored.key, stored.id, found)

    def input_item(self, item_id: str, key: str | None, now: float) -> dict[str, Any] | None:
        for response_id in reversed(self._inputs.get(item_id) or {}):
            stored = self._responses[response_id]
            if stored.key == key and stored.expires_at > now:
                return next(item for item in stored.input if item.get("id") == item_id)
        return None

    def delete(self, response_id: str) -> bool:
        stored = self._responses.pop(response_id, None)
        if stored is None:
            return False
        self.held_bytes -= self._sizes.pop(response_id, 0)
        for item in stored.items():
            self._items.pop(item["id"], None)
        for item_id in _input_ids(stored):
            holding = self._inputs.get(item_id) or {}
            holding.pop(response_id, None)
            if not holding:
                self._inputs.pop(item_id, None)
        return True

    def expire(self, now: float) -> None:
        for stored in [s for s in self._responses.values() if s.expires_at <= now]:
            self.delete(stored.id)

    def close(self) -> None:
        self._responses.clear()
        self._sizes.clear()
        self.held_bytes = 0
        self._items.clear()
        self._inputs.clear()


def inputs_with_ids(stored: StoredResponse) -> list[dict[str, Any]]:
    """Its input items that carry an id: what ``input_item`` can find."""
    return [item for item in stored.input if isinstance(item.get("id"), str) and item["id"]]


def _input_ids(stored: StoredResponse) -> set[str]:
    return {item["id"] for item in inputs_with_ids(stored)}


class ResponseKeeper(Kept[ResponseStore]):
    """The stored responses as the server reads them: a key sees only its own, and nothing past its end."""

    def lookup(self, key: str | None) -> Callable[[str], StoredResponse | None]:
        """A blocking reader of this key's responses by id (for ``responses_references``, run in one thread)."""
        now = self.clock()

        def get(response_id: str) -> StoredResponse | None:
            stored = self.store.get(response_id, now)
            return stored if stored is not None and stored.key == key else None
        return get

    def item_lookup(self, key: str | None) -> Callable[[str], StoredItem | None]:
        now = self.clock()

        def item(item_id: str) -> StoredItem | None:
            found = self.store.item(item_id, now)
            return found if found is not None and found.key == key else None
        return item

    def input_lookup(self, key: str | None) -> Callable[[str], dict[str, Any] | None]:
        """A blocking reader of the input items of this key's responses by id."""
        now = self.clock()

        def item(item_id: str) -> dict[str, Any] | None:
            return self.store.input_item(item_id, key, now)
        return item

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn`` (which reads the store) where this store's calls run."""
        return await self._call(fn)

    async def put(self, response: dict[str, Any], given: list[dict[str, Any]], previous_id: str | None,
                  key: str | None, team: str | None) -> None:
        now = self.clock()
        stored = StoredResponse(response["id"], key, team, now, now + self.retention_s, previous_id, given, response)
        await self._call(self.store.put, stored)
        await self._sweep(now)

    async def get(self, response_id: str, key: str | None) -> StoredResponse | None:
        return await self._call(self.lookup(key), response_id)

    async def delete(self, response_id: str, key: str | None) -> bool:
        """Delete this key's response; False when it has none of that id."""
        if await self.get(response_id, key) is None:
            return False
        return await self._call(self.store.delete, response_id)

    def close(self) -> None:
        self.store.close()
