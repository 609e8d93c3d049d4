"""``GET /v1/models`` and ``GET /v1/models/{id}`` as Anthropic's clients read them.

Anthropic's SDKs (``client.models.list()``, ``retrieve(id)``) and Claude Code ask the same path as OpenAI's for a
list of another shape: ``{"data": [{"type": "model", "id", "display_name", "created_at"}], "has_more",
"first_id", "last_id"}``, paged by ``limit`` (1 to 1,000, 20 when not given), ``after_id`` and ``before_id``
(https://platform.claude.com/docs/en/api/models-list), and errors as ``{"type": "error", "error": {...}}``. Such a
client always sends ``anthropic-version``, and OpenAI's never does: a request that carries it is answered in
Anthropic's shape, with the same models, in the same order, as the OpenAI list shows that key.
"""

from __future__ import annotations

import datetime
from typing import Any

from polyroute.errors import InvalidRequest, PolyrouteError
from polyroute.server.answers import Reply
from polyroute.server.errors import error_response
from polyroute.server.http11 import Request
from polyroute.server.messages_errors import anthropic_error

__all__ = ["anthropic_error_reply", "asks_anthropic", "model_info", "page"]

VERSION_HEADER = b"anthropic-version"
DEFAULT_LIMIT = 20
MOST_LIMIT = 1000


def asks_anthropic(request: Request) -> bool:
    """Whether the request comes from an Anthropic client (it names the API version it was written for)."""
    return request.header(VERSION_HEADER) is not None


def model_info(listed: dict[str, Any]) -> dict[str, Any]:
    """An entry of the OpenAI list as Anthropic's ``ModelInfo``: the name is the one the gateway routes by (it has no
    other to show), and ``created_at`` its ``created`` as an RFC 3339 time."""
    created = datetime.datetime.fromtimestamp(int(listed["created"]), datetime.UTC)
    return {"type": "model", "id": listed["id"], "display_name": listed["id"],
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ")}


def page(listed: list[dict[str, Any]], params: dict[str, list[str]]) -> dict[str, Any]:
    """One page of the list: ``limit`` models after ``after_id``, or just before ``before_id``, or the first."""
    limit = _limit(params.get("limit"))
    after, before = _one(params, "after_id"), _one(params, "before_id")
    if after is not None and before is not None:
        raise InvalidRequest("Only one of 'after_id' and 'before_id' may be given.", param="before_id")
    ids = [m["id"] for m in listed]
    if before is not None:
        end = _at(ids, before, "before_id")
        start = max(0, end - limit)
        more = start > 0
    else:
        start = _at(ids, after, "after_id") + 1 if after is not None else 0
        end = start + limit
        more = end < len(ids)
    data = [model_info(m) for m in listed[start:end]]
    return {"data": data, "has_more": more, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


def anthropic_error_reply(exc: PolyrouteError) -> Reply:
    """The error as an Anthropic client reads it, with its status."""
    return anthropic_error(error_response(exc))


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _limit(values: list[str] | None) -> int:
    if not values:
        return DEFAULT_LIMIT
    try:
        limit = int(values[0])
    except ValueError:
        limit = 0
    if not 1 <= limit <= MOST_LIMIT:
        raise InvalidRequest(f"Invalid value for 'limit': {values[0]!r}; expected a whole number from 1 to "
                             f"{MOST_LIMIT}.", param="limit")
    return limit


def _at(ids: list[str], cursor: str, name: str) -> int:
    try:
        return ids.index(cursor)
    except ValueError:
        raise InvalidRequest(f"Invalid value for '{name}': there is no model '{cursor}' to page from.",
                             param=name) from None
