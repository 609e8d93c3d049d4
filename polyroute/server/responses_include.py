"""``include``: what a Responses or Conversations API answer adds to the items it shows.

OpenAI documents eight values (the SDK's ``ResponseIncludable``). The gateway shows
items as it stored them, so it honours those about items it keeps:

    reasoning.encrypted_content       a reasoning item's ``encrypted_content`` (sealed reasoning,
                                      ``responses_reasoning``); without it the field is left out
    message.output_text.logprobs      an answer's ``output_text`` parts carry ``logprobs``: a response
                                      asks its upstream for them; a read shows the stored ones only
                                      when asked, an empty list otherwise
    message.input_image.image_url     an ``input_image`` part's ``image_url``: always shown, since the
                                      gateway keeps no files, so the URL is the only way to the image
                                      and an item without it could not be sent again

and accepts, changing nothing, those about the items of hosted tools
(``file_search_call.results``, ``web_search_call.results``, ``web_search_call.action.sources``,
``code_interpreter_call.outputs``, ``computer_call_output.output.image_url``): the gateway
runs no hosted tool and refuses such items in input, so none exists for them to add to,
and an answer is what OpenAI gives for a conversation without them. A client that always
sends the same list (as SDKs and agent frameworks do) is not refused for it. Any other
value is a 400 ``invalid_value`` naming ``include[i]``.
"""

from __future__ import annotations

import copy
from typing import Any

from polyroute.errors import InvalidRequest
from polyroute.server.responses_reasoning import INCLUDE_SEALED

__all__ = ["INCLUDE_LOGPROBS", "INCLUDE_SEALED", "KNOWN", "include_of", "include_query", "shown_items"]

INCLUDE_LOGPROBS = "message.output_text.logprobs"
KNOWN = (
    "code_interpreter_call.outputs", "computer_call_output.output.image_url", "file_search_call.results",
    "message.input_image.image_url", INCLUDE_LOGPROBS, INCLUDE_SEALED, "web_search_call.action.sources",
    "web_search_call.results",
)


def include_of(given: Any) -> frozenset[str]:
    """A body's ``include`` (absent or null: nothing), each value one of ``KNOWN``."""
    if given is None:
        return frozenset()
    if not isinstance(given, list):
        raise InvalidRequest("Invalid type for 'include': expected an array of strings.", param="include",
                             code="invalid_type")
    return _checked(given)


def include_query(params: dict[str, list[str]]) -> frozenset[str]:
    """A query's ``include`` (``include[]=...`` as the openai SDKs send it, or ``include=...``)."""
    return _checked(params.get("include[]", []) + params.get("include", []))


def shown_items(items: list[dict[str, Any]], include: frozenset[str]) -> list[dict[str, Any]]:
    """Stored items as their owner reads them with ``include``: sealed reasoning and logprobs only when asked."""
    sealed, logprobs = INCLUDE_SEALED in include, INCLUDE_LOGPROBS in include
    if (sealed or not any("encrypted_content" in item for item in items)) and (logprobs or not any(
            _logprobs(item) for item in items)):
        return items
    shown = copy.deepcopy(items)
    for item in shown:
        if not sealed:
            item.pop("encrypted_content", None)
        if not logprobs:
            for part in _logprobs(item):
                part["logprobs"] = []
    return shown


def _checked(values: list[Any]) -> frozenset[str]:
    for i, value in enumerate(values):
        if value not in KNOWN:
            shown = value if isinstance(value, str) else type(value).__name__
            raise InvalidRequest(f"Invalid value for 'include[{i}]': {shown!r} is not one of the supported values: "
                                 f"{', '.join(KNOWN)}.", param=f"include[{i}]", code="invalid_value")
    return frozenset(values)


def _logprobs(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``output_text`` parts of a message that carry logprobs."""
    content = item.get("content") if item.get("type") == "message" else None
    return [part for part in content if isinstance(part, dict) and part.get("type") == "output_text"
            and part.get("logprobs")] if isinstance(content, list) else []
