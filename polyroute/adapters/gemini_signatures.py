"""Gemini's thought signatures on tool calls, through Google's OpenAI-compatible endpoints.

Gemini 3 signs the tool calls it makes. Through the OpenAI-compatible endpoints (the Gemini API's
``/v1beta/openai`` and Vertex AI's ``endpoints/openapi``) the signature rides on the call itself, as
``extra_content: {"google": {"thought_signature": "..."}}``, in whole answers and in streamed deltas alike; parallel
calls carry it on the first call only (https://ai.google.dev/gemini-api/docs/thought-signatures, its section on
OpenAI compatibility). Google checks the current turn only (the messages after the last user message): the first
call of each step (each assistant message with tool calls) must come back signed, or the request is a 400,
"Function call is missing a thought_signature in functionCall parts". The gateway passes ``extra_content`` through
untouched, so a client that sends an assistant message back as it got it sends its signatures back too.

A route may have made those calls with another model (Claude, DeepSeek) before it fell over to Gemini, and they
carry no signature. For calls Gemini did not make, Google documents stand-ins that skip the check (the page's FAQ):
``skip_thought_signature_validator`` is the one Vertex AI takes as well
(https://github.com/pydantic/pydantic-ai/issues/3881), so it is the one sent. An unsigned first call of a step in
the current turn gets it on the way to a Gemini model; a call with a signature goes as it came, and no other
backend's payload is touched.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from polyroute.adapters.error_body import BodyReader, ErrorInfo

__all__ = ["REPLAYED", "STAND_IN", "is_google", "refusing_unsigned_history", "signs_calls", "with_stand_ins"]

STAND_IN = "skip_thought_signature_validator"
# Who runs the endpoint, as a backend's ``provider`` names it (the catalog says "gemini").
PROVIDERS = frozenset({"gemini", "google", "vertex"})
# Hosts of the Gemini API and of Vertex AI (global, or ``<region>-aiplatform.googleapis.com``).
HOSTS = frozenset({"generativelanguage.googleapis.com", "aiplatform.googleapis.com"})
REGIONAL_SUFFIX = "-aiplatform.googleapis.com"


def is_google(provider: str | None, base_url: str | None) -> bool:
    """Whether a backend is Google's: by the ``provider`` it names, else by the host of its ``base_url``."""
    if provider:
        return provider.lower() in PROVIDERS
    host = urlsplit(base_url or "").hostname or ""
    return host in HOSTS or host.endswith(REGIONAL_SUFFIX)


def signs_calls(model: str) -> bool:
    """Whether an upstream model is Gemini. Vertex AI serves other families (Llama, Qwen...) on the same endpoint,
    and they are not sent Google's field."""
    return "gemini" in model.lower()


def _signed(call: object) -> bool:
    if not isinstance(call, dict):
        return True  # not a call to sign: the upstream judges it as the client sent it
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return isinstance(signature, str) and bool(signature)


def _with_stand_in(call: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``call`` with the stand-in signature, keeping whatever else its ``extra_content`` holds."""
    extra = call.get("extra_content")
    extra = dict(extra) if isinstance(extra, dict) else {}
    google = extra.get("google")
    extra["google"] = {**(google if isinstance(google, dict) else {}), "thought_signature": STAND_IN}
    return {**call, "extra_content": extra}


def with_stand_ins(messages: list[Any], *, replayed: bool = False) -> list[Any]:
    """``messages`` with the stand-in signature on the unsigned first call of each step of the current turn: a copy
    of each message changed (and of the list), ``messages`` itself when none needs one. ``replayed``: on every
    first call of the turn, signed or not (Google refused the signatures as another endpoint's)."""
    out = messages
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "user":
            break  # the turn starts here: Google does not check the calls of earlier turns
        calls = message.get("tool_calls")
        if role != "assistant" or not isinstance(calls, list) or not calls or (_signed(calls[0]) and not replayed):
            continue
        if out is messages:
            out = list(messages)
        out[i] = {**message, "tool_calls": [_with_stand_in(calls[0]), *calls[1:]]}
    return out


# The 400 for an unsigned call, in the Gemini API's words and Vertex AI's ("Unable to submit request because
# function call `f` in the 2. content block is missing a `thought_signature`", its OpenAI-compatible endpoint
# in https://github.com/openai/openai-agents-python/issues/2137).
_UNSIGNED = re.compile(r"missing a `?thought_signature", re.I)
# The 400 for a signature Google will not take: the Gemini API's "Corrupted thought signature." and Vertex AI's
# "Unable to submit request because Thought signature is not valid." A signature one endpoint made is refused by
# the other (a route that falls over from the Gemini API to Vertex AI, or back), so the same model is asked
# again with the stand-ins (``REPLAYED``, a parameter of the gateway's own: never the client's, never remembered).
_REFUSED_SIGNATURE = re.compile(r"corrupted thought signature|thought signature is not valid", re.I)
REPLAYED = "thought_signature"


def refusing_unsigned_history(reader: BodyReader) -> BodyReader:
    """``reader`` that takes Gemini's 400 for an unsigned tool call as a history this model refuses and another
    candidate may take as it is (as Mistral's rule for tool-call ids), not as the client's malformed request."""

    def read(status: int, body: bytes) -> ErrorInfo:
        info = reader(status, body)
        if status != 400 or info.model_refuses:
            return info
        if _UNSIGNED.search(info.message):
            return replace(info, model_refuses=True, refused_param="messages", refused_always=False)
        if _REFUSED_SIGNATURE.search(info.message):
            return replace(info, model_refuses=True, refused_param=REPLAYED, refused_always=False)
        return info

    return read
