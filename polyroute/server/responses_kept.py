"""``GET`` and ``DELETE /v1/responses/{id}``, and ``GET /v1/responses/{id}/input_items``: stored responses.

Each is OpenAI's: the ``response`` object as it was answered; ``{"id", "object":
"response", "deleted": true}``; the input items it was asked with (references
replaced by what they named), in OpenAI's list shape, newest first unless
``order=asc``, ``limit`` (1 to 100, 20 by default) at a time after the item ``after``.
A key reads and deletes only its own; any other id (unknown, expired, deleted, another
key's) is the same 404. What ``include`` adds is ``responses_include``'s: reasoning items
carry ``encrypted_content`` only with ``include[]=reasoning.encrypted_content``, as in
answers, and ``output_text`` parts their logprobs only with
``include[]=message.output_text.logprobs``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import orjson

from polyroute.errors import InvalidRequest, NotFound, PolyrouteError
from polyroute.gateway import Gateway
from polyroute.server.answers import Reply
from polyroute.server.conversations_paging import listed, paging
from polyroute.server.dispatch import request_key
from polyroute.server.errors import error_response
from polyroute.server.http11 import Request
from polyroute.server.responses_include import include_query, shown_items
from polyroute.tenancy.responses import StoredResponse

__all__ = ["StoredResponsesEndpoint", "with_ids"]

# Ids given to input items that came without one, by their type.
_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


def with_ids(items: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    """Input items as they are stored: each with its ``type`` and an ``id`` (one is made when it has none)."""
    out = []
    for i, item in enumerate(items):
        kind = item.get("type") or "message"
        given = item.get("id")
        made = given if isinstance(given, str) and given else f"{_ID_PREFIXES.get(kind, 'item')}_{request_id}_in{i}"
        out.append({"id": made, **{k: v for k, v in item.items() if k != "id"}, "type": kind})
    return out


class StoredResponsesEndpoint:
    """The routes under ``/v1/responses/``."""

    def __init__(self, gateway: Gateway, prefix: str) -> None:
        self.gateway = gateway
        self.prefix = prefix

    async def handle(self, request: Request) -> Reply:
        try:
            key = self.gateway.keys.authenticate(request_key(request)).key
            response_id, _, rest = request.path.removeprefix(self.prefix).partition("/")
            response_id = unquote(response_id)
            if rest not in ("", "input_items") or (rest and request.method != "GET"):
                raise NotFound(f"Unknown path: {request.path}")
            kept = self.gateway.tenancy.responses
            if request.method == "DELETE":
                if not await kept.delete(response_id, key):
                    raise _missing(response_id)
                return _json({"id": response_id, "object": "response", "deleted": True})
            stored = await kept.get(response_id, key)
            if stored is None:
                raise _missing(response_id)
            params = request.params()
            if rest:
                return _json(_listed(stored, params))
            return _json(_shown(stored.response, params))
        except PolyrouteError as exc:
            return error_response(exc)


def _missing(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found: it was not stored for this key, or has expired "
                    "or been deleted.", param="response_id")


def _shown(response: dict[str, Any], params: dict[str, list[str]]) -> dict[str, Any]:
    """The response as its owner reads it with ``include`` (``responses_include``)."""
    return {**response, "output": shown_items(response.get("output") or [], include_query(params))}


def _listed(stored: StoredResponse, params: dict[str, list[str]]) -> dict[str, Any]:
    include, asked = include_query(params), paging(params)
    items = shown_items(stored.input, include)
    if asked.newest_first:
        items = items[::-1]
    if asked.after is not None:
        at = next((i for i, item in enumerate(items) if item.get("id") == asked.after), None)
        if at is None:
            raise InvalidRequest(f"Invalid value for 'after': no input item of this response has id "
                                 f"'{asked.after}'.", param="after")
        items = items[at + 1:]
    return listed(items[:asked.limit], len(items) > asked.limit)


def _json(doc: Any) -> Reply:
    return Reply(orjson.dumps(doc), 200)
