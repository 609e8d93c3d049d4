"""``metadata`` as OpenAI's Conversations and Responses APIs take it: at most 16 pairs of strings, keys up to 64
characters, values up to 512. A conversation keeps it (``POST /v1/conversations``, and its update); a response
echoes it. Anything else is OpenAI's 400 naming the field, before anything is kept or sent."""

from __future__ import annotations

from typing import Any

from polyroute.errors import InvalidRequest

__all__ = ["MAX_KEY", "MAX_PAIRS", "MAX_VALUE", "checked_metadata"]

MAX_PAIRS = 16
MAX_KEY = 64
MAX_VALUE = 512


def checked_metadata(value: Any) -> dict[str, str]:
    """``metadata`` as OpenAI takes it: at most 16 pairs of strings, keys up to 64 characters, values up to 512."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("Invalid value for 'metadata': expected an object of string keys and values.",
                             param="metadata")
    if len(value) > MAX_PAIRS:
        raise InvalidRequest(f"Invalid 'metadata': too many keys; the limit is {MAX_PAIRS}.", param="metadata",
                             code="object_above_max_properties")
    for k, v in value.items():
        if len(k) > MAX_KEY:
            raise InvalidRequest(f"Invalid 'metadata': a key is longer than {MAX_KEY} characters.",
                                 param="metadata", code="string_above_max_length")
        if not isinstance(v, str):
            raise InvalidRequest(f"Invalid value for 'metadata.{k}': expected a string.", param=f"metadata.{k}")
        if len(v) > MAX_VALUE:
            raise InvalidRequest(f"Invalid 'metadata.{k}': longer than {MAX_VALUE} characters.",
                                 param=f"metadata.{k}", code="string_above_max_length")
    return dict(value)
