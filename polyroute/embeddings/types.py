"""An embeddings request, one attempt at it, and what a backend answers: defined once.

``EmbeddingRequest`` is OpenAI's ``POST /v1/embeddings`` body, validated with OpenAI's
limits: ``input`` is a string, a list of strings, a list of token ids or a list of lists
of token ids; at most 2048 inputs, none empty. Adapters take an ``EmbedCall`` and answer
``Embedded``: one vector per input, in order, and the tokens the upstream counted.
"""

from __future__ import annotations

import base64
import math
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from polyroute.errors import UpstreamBadResponse
from polyroute.types import ChatRequest

# OpenAI's limit on the inputs of one request ("any array must be 2048 dimensions or less").
MAX_INPUTS = 2048

StrictInt = Annotated[int, Field(strict=True)]


def _token_ids(value: list[Any], where: str) -> list[int]:
    """A list of token ids, each an integer (``true`` is not one); refused naming where it is not."""
    if not value:
        raise ValueError(f"{where} must not be empty")
    for i, token in enumerate(value):
        if type(token) is not int or token < 0:
            raise ValueError(f"{where}[{i}] must be a token id (an integer from 0), not {token!r:.40}")
    return value


def _inputs(value: Any) -> list[str] | list[list[int]]:
    """``input`` as a list of texts or a list of token-id lists, each non-empty, at most ``MAX_INPUTS``."""
    if isinstance(value, str):
        if not value:
            raise ValueError("input must not be an empty string")
        return [value]
    if not isinstance(value, list) or not value:
        raise ValueError("input must be a string, a list of strings, a list of token ids or a list of lists of "
                         "token ids, and not empty")
    if len(value) > MAX_INPUTS:
        raise ValueError(f"input holds {len(value)} items; at most {MAX_INPUTS} may be embedded in one request")
    first = value[0]
    if isinstance(first, str):
        for i, text in enumerate(value):
            if not isinstance(text, str):
                raise ValueError(f"input[{i}] must be a string, as input[0] is")
            if not text:
                raise ValueError(f"input[{i}] must not be an empty string")
        return value
    if isinstance(first, list):
        for i, ids in enumerate(value):
            if not isinstance(ids, list):
                raise ValueError(f"input[{i}] must be a list of token ids, as input[0] is")
            _token_ids(ids, f"input[{i}]")
        return value
    return [_token_ids(value, "input")]


class EmbeddingRequest(BaseModel):
    """A client's embeddings request, validated. Fields outside OpenAI's are kept and sent on to OpenAI-wire
    upstreams, which judge them (``input_type``, a provider's own knobs)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: Any
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(default=None, ge=1)
    user: str | None = None

    _inputs: list[str] | list[list[int]] = PrivateAttr(default_factory=list)
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)
    # How one server words the upstream body (polyroute.embeddings.dialects); None: OpenAI's words.
    _wire: Callable[[dict[str, Any]], dict[str, Any]] | None = PrivateAttr(default=None)

    @field_validator("input")
    @classmethod
    def _valid_input(cls, v: Any) -> Any:
        _inputs(v)
        return v

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> EmbeddingRequest:
        req = cls.model_validate(raw)
        req._inputs = _inputs(req.input)
        req._raw = raw
        return req

    @property
    def inputs(self) -> list[str] | list[list[int]]:
        """Every input, as texts or as token-id lists: one vector each."""
        return self._inputs or _inputs(self.input)

    @property
    def texts(self) -> list[str] | None:
        """The inputs when they are texts; None when they are token ids."""
        inputs = self.inputs
        return inputs if isinstance(inputs[0], str) else None

    def extras(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def upstream_body(self, upstream_model: str) -> dict[str, Any]:
        """The body for an OpenAI-wire upstream: the client's, for ``upstream_model``, asking for floats.

        Floats are asked for whatever the client wants: every OpenAI-compatible server gives
        them, not all give base64, and the gateway encodes for the client itself.
        """
        body = {k: v for k, v in (self._raw or self.model_dump(exclude_none=True)).items() if v is not None}
        body["model"] = upstream_model
        body["encoding_format"] = "float"
        return body if self._wire is None else self._wire(body)

    def sent_as(self, wire: Callable[[dict[str, Any]], dict[str, Any]]) -> EmbeddingRequest:
        """This request, its upstream body put in one server's words by ``wire``; the client's own is untouched."""
        copy = self.model_copy()
        copy._wire = wire
        return copy

    def stand_in(self) -> ChatRequest:
        """A chat request that asks for nothing, for the chat machinery this path shares.

        Admission and the walk over candidates are typed for a chat request, but read from it only its
        messages, tools and parameters, of which an embeddings request has none: its size is the plan's.
        """
        return ChatRequest.model_construct(model=self.model, messages=[], stream=False)


@dataclass(frozen=True, slots=True)
class EmbedCall:
    """One attempt at one embedding model on one backend."""

    request: EmbeddingRequest
    upstream_model: str
    # Seconds for the whole answer; None means the backend's own.
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Embedded:
    """A backend's answer: one vector per input, in input order, and the prompt tokens it counted (None: unsaid)."""

    vectors: list[list[float]]
    prompt_tokens: int | None


def read_vectors(data: object, count: int, *, backend: str, model: str) -> list[list[float]]:
    """An OpenAI-shaped ``data`` list as ``count`` vectors in input order; UpstreamBadResponse when it is not one.

    Each item's ``embedding`` is a list of numbers or base64 of little-endian float32 (what OpenAI sends for
    ``encoding_format: "base64"``); every vector must have one length.
    """
    if not isinstance(data, list) or len(data) != count:
        got = len(data) if isinstance(data, list) else "no list of"
        raise UpstreamBadResponse(f"answer has {got} embeddings for {count} inputs", backend=backend, model=model)
    vectors: list[list[float] | None] = [None] * count
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            raise UpstreamBadResponse("an embedding is not an object", backend=backend, model=model)
        index = item.get("index", position)
        if type(index) is not int or not 0 <= index < count or vectors[index] is not None:
            raise UpstreamBadResponse(f"an embedding has index {index!r:.20} for {count} inputs",
                                      backend=backend, model=model)
        vectors[index] = vector_of(item.get("embedding"), backend=backend, model=model)
    out = [v for v in vectors if v is not None]
    if len({len(v) for v in out}) > 1:
        raise UpstreamBadResponse("the answer's vectors differ in length", backend=backend, model=model)
    return out


def vector_of(value: object, *, backend: str, model: str) -> list[float]:
    """One vector: a non-empty list of numbers, or base64 of float32."""
    if isinstance(value, str):
        try:
            floats = array("f", base64.b64decode(value, validate=True))
        except ValueError:
            raise UpstreamBadResponse("an embedding is not base64 of float32", backend=backend, model=model) from None
        if sys.byteorder == "big":
            floats.byteswap()
        value = floats.tolist()
    if not isinstance(value, list) or not value:
        raise UpstreamBadResponse("an embedding is not a list of numbers", backend=backend, model=model)
    try:
        floats = array("f", value)  # every item a number, checked in C; past float32's range, infinite
    except TypeError:
        raise UpstreamBadResponse("an embedding holds something that is not a number",
                                  backend=backend, model=model) from None
    if bool in set(map(type, value)):
        raise UpstreamBadResponse("an embedding holds booleans", backend=backend, model=model)
    # A NaN or an infinity anywhere makes the sum one; finite float32s cannot add up to one. Either would reach
    # the client as null (JSON) or as NaN in its index (base64), not as the number a vector needs.
    if not math.isfinite(sum(floats)):
        raise UpstreamBadResponse("an embedding holds NaN, an infinity or a number past float32's range",
                                  backend=backend, model=model)
    return value


def as_base64(vector: list[float]) -> str:
    """A vector as OpenAI encodes it for ``encoding_format: "base64"``: little-endian float32, base64."""
    floats = array("f", vector)
    if sys.byteorder == "big":
        floats.byteswap()
    return base64.b64encode(floats.tobytes()).decode("ascii")
