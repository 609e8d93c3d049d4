"""A Responses request's ``conversation``: its items before the input, then the turn appended to it.

As OpenAI's Responses API does: ``conversation`` (``"conv_..."`` or ``{"id": "conv_..."}``)
puts every item of that conversation before the request's input, and once the response
has been answered, the request's input items and the response's output items are
added to the conversation, in that order. A response that failed adds nothing. With
``previous_response_id`` too, the request is a 400; a conversation the key does not
own (unknown, expired, deleted, another key's) is a 404, worded alike in every case.

A conversation holds at most as many items as one chat request may have messages
(``[gateway] max_messages``): each turn sends all of them. A turn whose conversation
and input together pass that is refused before anything is sent; its output may take
the conversation past it by a few items, and the next turn is then refused, naming
the conversation.
"""

from __future__ import annotations

import logging
from typing import Any

from polyroute.errors import InvalidRequest, NotFound, StoreUnavailable
from polyroute.server.conversations_items import as_item
from polyroute.server.responses_kept import with_ids
from polyroute.server.responses_references import ResolvedInput
from polyroute.tenancy.conversations import ConversationKeeper

__all__ = ["append_turn", "before_input", "conversation_named", "missing"]

log = logging.getLogger("polyroute.access")


def conversation_named(raw: dict[str, Any]) -> str | None:
    """The id of the conversation a Responses request names, or None."""
    given = raw.get("conversation")
    if given is None:
        return None
    found = given.get("id") if isinstance(given, dict) else given
    if not isinstance(found, str) or not found:
        raise InvalidRequest("Invalid value for 'conversation': expected a conversation id ('conv_...') or an "
                             "object {'id': 'conv_...'}.", param="conversation")
    if raw.get("previous_response_id") is not None:
        raise InvalidRequest("Mutually exclusive parameters: send either 'previous_response_id' or "
                             "'conversation', not both.", param="conversation", code="mutually_exclusive_parameters")
    return found


def missing(conversation_id: str) -> NotFound:
    return NotFound(f"Conversation with id '{conversation_id}' not found: it was not made with this key, or has "
                    "expired or been deleted.", param="conversation_id")


async def before_input(conversation_id: str, given: Any, keeper: ConversationKeeper, key: str | None,
                       cap: int) -> ResolvedInput:
    """The request's input (``given``, references put in) after the conversation's items."""
    found = await keeper.read(conversation_id, key)
    if found is None:
        error = missing(conversation_id)
        error.param = "conversation"
        raise error
    _, items = found
    asked = len(given) if isinstance(given, list) else 1
    if len(items) + asked > cap:
        raise InvalidRequest(f"Invalid 'conversation': it holds {len(items)} items, and with this input it would "
                             f"pass the limit of {cap} per request; start a new conversation, or delete some of its "
                             "items.", param="conversation", code="array_above_max_length")
    return ResolvedInput(given, items, None)


async def append_turn(keeper: ConversationKeeper, conversation_id: str, given: Any, output: list[dict[str, Any]],
                      request_id: str, key: str | None) -> None:
    """Add a turn's input and output items to its conversation; a store that fails costs only the adding."""
    items = [{"type": "message", "role": "user", "content": given}] if isinstance(given, str) else list(given or [])
    turn = [as_item(item) for item in with_ids(items, request_id)] + [dict(item) for item in output]
    try:
        if await keeper.append(conversation_id, key, turn, None) is None:
            log.warning("response %s was answered but conversation %s was deleted meanwhile", request_id,
                        conversation_id)
    except StoreUnavailable as exc:  # an outage: said without a traceback, the answer is sent
        log.warning("response %s was answered but not added to conversation %s: %s", request_id, conversation_id,
                    exc.message)
    except Exception:
        log.exception("response %s was answered but could not be added to conversation %s", request_id,
                      conversation_id)
