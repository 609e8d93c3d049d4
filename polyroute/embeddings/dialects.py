"""What an OpenAI-wire embeddings server takes, where it differs from OpenAI's ``POST /v1/embeddings``.

OpenAI-compatible providers share one adapter (``polyroute.adapters.openai_compat``), so their
differences for embeddings are data here, chosen by the backend's ``provider`` or, without one,
by the host of its ``base_url``:

    openai    the client's request as it came: dimensions, token ids, user, a provider's own fields
    mistral   dimensions sent as output_dimension; text only; no user field (Mistral refuses fields
              it does not define); output_dtype only "float", the one kind OpenAI's answer can carry
    gemini    text only; at most 100 inputs a request; dimensions sent as they came

What a server cannot take is found before anything is sent: the plan leaves that candidate out,
and when every candidate is left out the client hears OpenAI's 400 naming the parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polyroute.adapters.openai_compat import is_one_of
from polyroute.config import HttpBackendConfig

from .types import EmbeddingRequest

if TYPE_CHECKING:
    from polyroute.adapters import Adapter


@dataclass(frozen=True, slots=True)
class Dialect:
    """One server's way with an embeddings request; the defaults are OpenAI's."""

    name: str
    takes_tokens: bool = True  # token ids as input, not only text
    dimensions_field: str = "dimensions"  # the field that asks for shorter vectors
    max_inputs: int | None = None  # inputs a request may carry, where it is fewer than OpenAI's 2048
    drops: frozenset[str] = frozenset()  # OpenAI's fields the server has no place for: left out of the body
    floats_only: frozenset[str] = frozenset()  # the server's own fields that must be absent or "float"

    def refusal(self, req: EmbeddingRequest) -> tuple[str, str] | None:
        """The parameter of ``req`` this server cannot take, and why; None when it takes all of it."""
        if not self.takes_tokens and req.texts is None:
            return "input", f"{self.name} embeds text, not token ids"
        count = len(req.inputs)
        if self.max_inputs is not None and count > self.max_inputs:
            return "input", f"{self.name} embeds at most {self.max_inputs} inputs a request, not {count}"
        extras = req.extras()
        for field in sorted(self.floats_only):
            value = extras.get(field)
            if value is not None and value != "float":
                return field, (f"{self.name}'s {field} {value!r:.20} would answer numbers that are not the vector's "
                               "floats; the gateway answers OpenAI's floats (or their base64) only")
        return None

    def shape(self, body: dict[str, Any]) -> dict[str, Any]:
        """An OpenAI body (``EmbeddingRequest.upstream_body``) in this server's words."""
        if self.name == OPENAI.name:
            return body
        out = {k: v for k, v in body.items() if k not in self.drops}
        if self.dimensions_field != "dimensions" and "dimensions" in out:
            out[self.dimensions_field] = out.pop("dimensions")
        return out

    def request(self, req: EmbeddingRequest) -> EmbeddingRequest:
        """``req`` as it is sent to this server: its upstream body in this server's words."""
        return req if self.name == OPENAI.name else req.sent_as(self.shape)


OPENAI = Dialect("openai")
# https://docs.mistral.ai/api/#tag/embeddings (model, input, output_dimension, output_dtype, encoding_format) and
# https://docs.mistral.ai/capabilities/embeddings/code_embeddings/ (output_dtype: float, int8, uint8, binary,
# ubinary; output_dimension up to 3072 for codestral-embed). Mistral answers a field it does not define with 422
# "Extra inputs are not permitted" (tests/fixtures/mistral/errors/422_extra_stream_options.json).
MISTRAL = Dialect("mistral", takes_tokens=False, dimensions_field="output_dimension", drops=frozenset({"user"}),
                  floats_only=frozenset({"output_dtype"}))
# https://ai.google.dev/gemini-api/docs/openai#embeddings shows text input only; the endpoint refuses more than 100
# inputs ("BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch",
# tests/fixtures/gemini/errors/400_batch_embed_over_100.json). Google's guide says nothing of dimensions: they
# are sent, and an answer of another length is refused by the walk's check (polyroute.embeddings.walk).
GEMINI = Dialect("gemini", takes_tokens=False, max_inputs=100)

# Provider name -> hosts, as polyroute.adapters.openai_compat.is_one_of reads them. Vertex AI is not the Gemini
# API: its limits differ, and it is left to OpenAI's defaults.
_HOSTS: tuple[tuple[Dialect, Mapping[str, tuple[str, ...]]], ...] = (
    (MISTRAL, {"mistral": ("api.mistral.ai",)}),
    (GEMINI, {"gemini": ("generativelanguage.googleapis.com",)}),
)


def dialect_of(adapter: Adapter) -> Dialect:
    """The dialect of an OpenAI-wire backend; OpenAI's for every other wire format (their adapters translate)."""
    config = adapter.config
    if adapter.kind != "openai" or not isinstance(config, HttpBackendConfig):
        return OPENAI
    return next((d for d, hosts in _HOSTS if is_one_of(hosts, config.provider, config.base_url)), OPENAI)
