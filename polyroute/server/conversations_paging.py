"""The query of one of OpenAI's item lists (``limit``, ``order``, ``after``) and the list object it answers with.

As OpenAI documents them for a conversation's items and a response's input items:
``limit`` is a whole number from 1 to 100 (20 when absent), ``order`` is ``asc`` or
``desc`` (newest first when absent), and ``after`` is the id of the item the page
starts after, in that order. The answer is ``{"object": "list", "data", "first_id",
"last_id", "has_more"}``; the openai SDKs' paginators ask for the next page with
``after`` set to the last item's id for as long as ``has_more`` is true. A bad value
is OpenAI's 400 naming the parameter: ``integer_below_min_value`` or
``integer_above_max_value`` for a limit out of range, ``invalid_type`` for one that is
not a whole number, ``invalid_value`` for an unknown order. A parameter given twice
counts once, its last value; an empty one counts as absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from polyroute.errors import InvalidRequest

__all__ = ["Paging", "listed", "paging"]

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
_INTEGER = re.compile(r"([-+]?)([0-9]+)")


@dataclass(frozen=True, slots=True)
class Paging:
    after: str | None
    limit: int
    newest_first: bool


def paging(params: dict[str, list[str]]) -> Paging:
    """The page a query asks for."""
    order = _last(params, "order") or "desc"
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"Invalid value for 'order': {order!r}; supported values are 'asc' and 'desc'.",
                             param="order", code="invalid_value")
    return Paging(_last(params, "after") or None, _limit(_last(params, "limit")), order == "desc")


def listed(items: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    """A page of items as OpenAI's list object."""
    return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": more}


def _last(params: dict[str, list[str]], name: str) -> str:
    return (params.get(name) or [""])[-1]


def _limit(text: str) -> int:
    if not text:
        return DEFAULT_LIMIT
    found = _INTEGER.fullmatch(text.strip())
    if found is None:
        raise InvalidRequest(f"Invalid type for 'limit': expected an integer, but got {text[:40]!r} instead.",
                             param="limit", code="invalid_type")
    size = int(found[2]) if len(found[2]) <= 18 else 10**18  # past the range either way; no huge int made
    limit = -size if found[1] == "-" else size
    if limit < 1:
        raise InvalidRequest(f"Invalid 'limit': integer below minimum value. Expected a value >= 1, but got {limit} "
                             "instead.", param="limit", code="integer_below_min_value")
    if limit > MAX_LIMIT:
        raise InvalidRequest(f"Invalid 'limit': integer above maximum value. Expected a value <= {MAX_LIMIT}, but got "
                             f"{limit} instead.", param="limit", code="integer_above_max_value")
    return limit
