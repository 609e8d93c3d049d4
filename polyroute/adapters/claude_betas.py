"""The betas a Messages client asks of Claude (its ``anthropic-beta`` header), carried to a Claude upstream alone.

A client of Anthropic's API turns features on with ``anthropic-beta`` (``context-1m-2025-08-07``, a million tokens
of context; ``interleaved-thinking-2025-05-14``; ``fine-grained-tool-streaming-2025-05-14``). The Messages endpoint
reads the header into a ``BetaRequest``: the chat request with the betas beside its fields, never among them, so
an OpenAI-compatible server (which is sent a request's unknown fields) never sees them. The Anthropic adapter sends
them with the betas of the backend's ``headers`` and its own (``polyroute.adapters.claude_turns.BINDING_BETA``).

Left out: the betas of Anthropic's own sign-in, which name the client's credentials, not a feature. Claude Code
signed in with a Claude account sends ``oauth-2025-04-20`` and ``claude-code-20250219`` with its OAuth bearer
token, the pair Anthropic's API asks of such a token (https://github.com/bytedance/deer-flow/issues/1245); the
gateway calls Claude with its own key, for which they mean nothing or mark the gateway's traffic as Claude Code's.

An endpoint that lacks a beta refuses the request naming it: "Unexpected value(s) `a`, `b` for the
`anthropic-beta` header" (Claude on Vertex AI, relays: https://github.com/anthropics/claude-code/issues/12429).
``refused_betas`` reads the names; the adapter keeps them per model (``polyroute.refusals.BetaRefusals``) and
the same model is asked again without them (``polyroute.refusals.CLIENT_BETAS``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, cast

from pydantic import PrivateAttr

from polyroute.types import ChatRequest

__all__ = ["BETA_HEADER", "REFUSED_BETAS", "BetaRequest", "betas_of", "client_betas", "joined", "refused_betas",
           "with_betas"]

BETA_HEADER = "anthropic-beta"
# Anthropic's sign-in betas (see above): never passed on.
_SIGN_IN = re.compile(r"(?:oauth|claude-code)-", re.I)
# What a beta's name looks like (a feature and a date); anything else in the header is not sent on.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# More than any client sends: the header is bounded, as every other part of a request is.
_MOST = 32
REFUSED_BETAS = re.compile(r"Unexpected value\(s\) (?P<names>.{1,4000}?) for the `anthropic-beta` header", re.S)
_QUOTED = re.compile(r"`([^`\s]{1,100})`")


class BetaRequest(ChatRequest):
    """A chat request made from a Messages request that named betas: they travel beside its fields."""

    _betas: tuple[str, ...] = PrivateAttr(default=())


def client_betas(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str, ...]:
    """The betas a request's ``anthropic-beta`` headers name (comma-separated, maybe repeated), in order, once each,
    without Anthropic's sign-in betas."""
    out: list[str] = []
    for name, value in headers:
        if name != b"anthropic-beta":
            continue
        for beta in value.decode("latin-1").split(","):
            beta = beta.strip()
            if _NAME.fullmatch(beta) and not _SIGN_IN.match(beta) and beta not in out and len(out) < _MOST:
                out.append(beta)
    return tuple(out)


def with_betas(chat: dict[str, Any], betas: tuple[str, ...]) -> ChatRequest:
    """The validated chat request for ``chat`` (a chat request's JSON), carrying ``betas`` when there are any."""
    if not betas:
        return ChatRequest.from_json(chat)
    req = cast(BetaRequest, BetaRequest.from_json(chat))
    req._betas = betas
    return req


def betas_of(req: ChatRequest) -> tuple[str, ...]:
    """The betas the client asked for, if it came through the Messages API and named any."""
    return req._betas if isinstance(req, BetaRequest) else ()


def refused_betas(message: str) -> frozenset[str]:
    """The betas an endpoint's "Unexpected value(s) `a`, `b` for the `anthropic-beta` header" names."""
    said = REFUSED_BETAS.search(message)
    return frozenset(_QUOTED.findall(said["names"])) if said else frozenset()


def joined(*groups: Iterable[str], leave_out: frozenset[str] = frozenset()) -> str:
    """One ``anthropic-beta`` value for betas from several places, each once, in order."""
    seen: list[str] = []
    for group in groups:
        for beta in group:
            if beta and beta not in seen and beta not in leave_out:
                seen.append(beta)
    return ",".join(seen)
