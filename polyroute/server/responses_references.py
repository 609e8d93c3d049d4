"""What a Responses request names of what the gateway stored, replaced by what it holds.

Two things name stored state:

- an ``item_reference`` input item (``{"type": "item_reference", "id": "msg_..."}``, as the
  Vercel AI SDK sends every earlier answer that carries an item id) becomes the item of
  that id, whole: an output item of one of the key's stored responses (``msg_``, ``fc_``,
  ``rs_``; ``polyroute.tenancy.responses``), else an input item of one of them (as
  ``input_items`` lists it), else an item of one of the key's conversations
  (``polyroute.tenancy.conversations``), such as one a client added through
  ``POST /v1/conversations/{id}/items``, as OpenAI resolves any stored item id;
- ``previous_response_id`` puts that response's conversation before the input: the
  input items and output items of every response of its chain, oldest first, following
  each one's own ``previous_response_id`` as it was stored.

An id the key has no stored response or item of (never stored, ``store: false``, past
its retention, deleted, or another key's) is a 400 naming the field, worded alike in
every case so that it tells nothing of other keys: every lookup is made as the asking
key, so another key's id is never found at all. Lookups are blocking: ``resolve`` runs
``resolve_input`` where the stores' calls run (a worker thread for a database).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from polyroute.errors import InvalidRequest
from polyroute.tenancy.conversations import ConversationKeeper
from polyroute.tenancy.responses import ResponseKeeper, StoredResponse

__all__ = ["ResolvedInput", "item_finder", "names_stored", "resolve", "resolve_input"]

ItemFinder = Callable[[str], dict[str, Any] | None]

GONE = "it was not stored for this key, or has expired or been deleted"


@dataclass(frozen=True, slots=True)
class ResolvedInput:
    """A request's input with what it named put in."""

    given: Any  # its own input, references replaced: what is stored as its input (as sent when not a list)
    earlier: list[dict[str, Any]]  # the conversation of previous_response_id, oldest first
    previous_id: str | None

    def input(self) -> Any:
        """The whole input the model is asked with."""
        if not self.earlier:
            return self.given
        given = [{"role": "user", "content": self.given}] if isinstance(self.given, str) else self.given
        return [*self.earlier, *given] if isinstance(given, list) else given


def names_stored(raw: dict[str, Any]) -> bool:
    """Whether a request names any stored state (so that ``resolve_input`` has something to read)."""
    given = raw.get("input")
    return raw.get("previous_response_id") is not None or (
        isinstance(given, list) and any(_is_reference(item) for item in given))


def item_finder(responses: ResponseKeeper, conversations: ConversationKeeper, key: str | None) -> ItemFinder:
    """A blocking reader of ``key``'s stored items by id: its stored responses' output items, then their input
    items, then its conversations' items."""
    outputs, inputs, of_conversations = (responses.item_lookup(key), responses.input_lookup(key),
                                         conversations.item_lookup(key))

    def find(item_id: str) -> dict[str, Any] | None:
        if (found := outputs(item_id)) is not None:
            return dict(found.item)
        return inputs(item_id) or of_conversations(item_id)
    return find


async def resolve(raw: dict[str, Any], responses: ResponseKeeper, conversations: ConversationKeeper,
                  key: str | None) -> ResolvedInput:
    """``resolve_input`` as ``key`` sees the stores, run where their calls run (both fronts are opened on one
    store: ``polyroute.tenancy.conversations.open_conversations``)."""
    return await responses.run(lambda: resolve_input(raw, responses.lookup(key),
                                                     item_finder(responses, conversations, key)))


def resolve_input(raw: dict[str, Any], response: Callable[[str], StoredResponse | None],
                  item: ItemFinder) -> ResolvedInput:
    """``raw``'s input with its references replaced, read through ``response`` and ``item`` (which see only the
    asking key's own)."""
    given = raw.get("input")
    if isinstance(given, list):
        given = [_resolved(entry, i, item) if _is_reference(entry) else entry for i, entry in enumerate(given)]
    previous = raw.get("previous_response_id")
    if previous is None:
        return ResolvedInput(given, [], None)
    if not isinstance(previous, str) or not previous:
        raise InvalidRequest("Invalid value for 'previous_response_id': expected the id of a stored response.",
                             param="previous_response_id")
    return ResolvedInput(given, _conversation(previous, response), previous)


def _is_reference(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    kind = entry.get("type")
    return kind == "item_reference" or (kind is None and "role" not in entry and "id" in entry)


def _resolved(entry: dict[str, Any], i: int, item: ItemFinder) -> dict[str, Any]:
    item_id = entry.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise InvalidRequest(f"Missing required parameter: 'input[{i}].id'.", param=f"input[{i}].id")
    found = item(item_id)
    if found is None:
        raise InvalidRequest(f"Item with id '{item_id}' not found: {GONE}. Send the item itself instead.",
                             param=f"input[{i}].id")
    return found


def _conversation(previous: str, response: Callable[[str], StoredResponse | None]) -> list[dict[str, Any]]:
    chain: list[StoredResponse] = []
    seen: set[str] = set()
    wanted: str | None = previous
    while wanted is not None and wanted not in seen:
        seen.add(wanted)
        stored = response(wanted)
        if stored is None:
            where = "" if wanted == previous else f" (it follows '{wanted}', which is no longer stored)"
            raise InvalidRequest(f"Previous response with id '{previous}' not found{where}: {GONE}. Send the "
                                 "whole conversation as 'input' instead.", param="previous_response_id")
        chain.append(stored)
        wanted = stored.previous_id
    out: list[dict[str, Any]] = []
    for stored in reversed(chain):
        out.extend(stored.input)
        out.extend(stored.response.get("output") or [])
    return out
