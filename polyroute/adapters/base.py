"""The adapter seam: one small protocol every wire format implements alike.

An adapter turns a ``Call`` (a validated request plus what the gateway decided for
this attempt) into the upstream's wire format, and the upstream's answer back into
OpenAI-shaped dicts. It raises only ``UpstreamError`` subclasses; its own foreign
exceptions are translated in one place inside the adapter.
"""

from __future__ import annotations

import abc
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from polyroute.config import BackendBase
from polyroute.errors import UpstreamRejected
from polyroute.types import ChatChunk, ChatRequest, ChatResponse, Delta, Usage

if TYPE_CHECKING:
    from polyroute.completions.types import CompletionRequest, TextCall, TextChunk, TextCompletion
    from polyroute.embeddings.types import EmbedCall, Embedded

# Request parameters an adapter may or may not be able to honour.
OPTIONAL_PARAMS = frozenset(
    {"tools", "tool_choice", "response_format", "seed", "stop", "temperature", "top_p", "max_tokens"}
)


@dataclass(frozen=True, slots=True)
class Call:
    """One attempt at one model on one backend."""

    request: ChatRequest
    upstream_model: str
    # Parameters the gateway decided to leave out for this backend.
    drop: frozenset[str] = frozenset()
    # A partial assistant answer to continue (stream rescue), or None.
    prefix: str | None = None
    # Seconds to wait for response headers; None means the backend's own timeout.
    timeout: float | None = None
    # Always ask for usage in streams so every attempt can be accounted.
    want_usage: bool = True


class Adapter(abc.ABC):
    """A backend. Built once from its config; holds its pooled connections."""

    kind: ClassVar[str]
    # Parameters from OPTIONAL_PARAMS this wire format can carry.
    supports: ClassVar[frozenset[str]] = OPTIONAL_PARAMS
    # Top-level fields outside the request's schema (``presence_penalty``, a provider's own knobs, a typo)
    # this wire format passes on; None: every one, as the client sent it. The others are dropped and named.
    extras: ClassVar[frozenset[str] | None] = frozenset()
    # How the wire format continues a partial answer when the config does not say.
    default_continuation: ClassVar[str] = "none"
    # Whether the wire format has an embeddings endpoint (``embed``); a backend without one is never an embedding
    # candidate. And whether it takes token ids for input (not only text), and ``dimensions`` (shorter vectors).
    embeds: ClassVar[bool] = False
    embeds_tokens: ClassVar[bool] = False
    embeds_dimensions: ClassVar[bool] = False

    def __init__(self, name: str, config: BackendBase) -> None:
        self.name = name
        self.config = config
        chosen = config.assemble_from_stream
        # Whether a non-streamed request is streamed from this backend and assembled.
        self.assembles = self.assembles_by_default() if chosen is None else chosen

    def assembles_by_default(self) -> bool:
        """``assemble_from_stream`` when the config does not say."""
        return False

    @property
    def can_continue(self) -> bool:
        """Whether this backend can continue a partial assistant message."""
        return (self.config.continuation or self.default_continuation) != "none"

    def continues(self, model: str) -> bool:
        """Whether this backend's ``model`` (its upstream id) can continue a partial assistant message."""
        return self.can_continue

    async def start(self) -> None:  # noqa: B027 - an optional hook
        """Open pools or load weights. Called once before serving."""

    async def aclose(self) -> None:  # noqa: B027 - an optional hook
        """Release pools, threads and weights."""

    def unsupported(self, wanted: set[str], model: str) -> frozenset[str]:
        """Which of the ``wanted`` parameters this backend cannot honour for ``model``."""
        return frozenset(wanted - self.supports)

    def ready(self) -> bool:
        """Whether this backend can take a request now (weights loaded, key present)."""
        return self.unready_reason() is None

    def unready_reason(self) -> str | None:
        """Why this backend cannot take a request now, in words an operator acts on; None when it can."""
        unset = [s.ref.removeprefix("env:") for s in self.config.secrets().values() if not s.present]
        return f"{' and '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set" if unset else None

    def prepare_embeddings(self) -> None:  # noqa: B027 - an optional hook
        """Told once, before ``start``, that a model of this backend embeds (an in-process one loads for it)."""

    async def embed(self, call: EmbedCall) -> Embedded:
        """Every input's vector, in order. Only for a wire format that ``embeds``: the plan leaves the others out."""
        raise UpstreamRejected(f"backends of type {self.kind!r} have no embeddings endpoint", backend=self.name,
                               model=call.upstream_model)

    def text_refusal(self, req: CompletionRequest, model: str) -> tuple[str, str] | None:
        """Why this backend's ``model`` cannot answer a text completion as ``req`` asks it, as (the parameter, the
        reason); None when it can. Only a wire format with a text completions endpoint overrides it."""
        return "model", f"backends of type {self.kind!r} have no text completions endpoint"

    async def complete_text(self, call: TextCall) -> TextCompletion:
        """A whole text completion. Only where ``text_refusal`` says none: the plan leaves the others out."""
        raise UpstreamRejected(f"backends of type {self.kind!r} have no text completions endpoint",
                               backend=self.name, model=call.upstream_model)

    def stream_text(self, call: TextCall) -> AsyncIterator[TextChunk]:
        """A text completion chunk by chunk, ending with a chunk that carries usage if known."""
        raise UpstreamRejected(f"backends of type {self.kind!r} have no text completions endpoint",
                               backend=self.name, model=call.upstream_model)

    @abc.abstractmethod
    async def complete(self, call: Call) -> ChatResponse:
        """A whole answer."""

    @abc.abstractmethod
    def stream(self, call: Call) -> AsyncIterator[ChatChunk]:
        """An answer chunk by chunk, ending with a chunk that carries usage if known."""


# --- helpers shared by adapters that build OpenAI-shaped answers themselves -----------


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def now() -> int:
    return int(time.time())


def make_chunk(
    cid: str,
    model: str,
    delta: Delta,
    finish_reason: str | None = None,
    usage: Usage | None = None,
    created: int | None = None,
) -> ChatChunk:
    chunk: ChatChunk = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created or now(),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def usage_chunk(cid: str, model: str, usage: Usage) -> ChatChunk:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": now(),
        "model": model,
        "choices": [],
        "usage": usage,
    }
