"""A text completion request, one attempt at it, and what a backend answers: defined once.

``CompletionRequest`` is OpenAI's legacy ``POST /v1/completions`` body, validated with
OpenAI's limits. ``prompt`` is a string, a list of strings, a list of token ids or a
list of lists of token ids; a list of several is several prompts, answered as OpenAI
does (``n`` choices for each, in order) by a backend that takes them. Adapters take a ``TextCall`` and answer a
``TextCompletion`` (whole) or ``TextChunk``s (streamed), both in OpenAI's
``text_completion`` shape, so an OpenAI-wire upstream's answer passes as it came.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator

from polyroute.types import (
    MAX_TOKENS_CEILING,
    ChatRequest,
    Message,
    StreamOptions,
    StrictFlag,
    StrictInt,
    StrictNumber,
    Usage,
)

# OpenAI's limits: prompts in one request, choices (n, best_of), stop sequences, top logprobs.
MAX_PROMPTS = 2048
MAX_CHOICES = 128
MAX_BEST_OF = 20
MAX_STOPS = 4
MAX_LOGPROBS = 5

Prompt = str | list[int]


def _token_ids(value: list[Any], where: str) -> list[int]:
    if not value:
        raise ValueError(f"{where} must not be empty")
    for i, token in enumerate(value):
        if type(token) is not int or token < 0:
            raise ValueError(f"{where}[{i}] must be a token id (an integer from 0), not {token!r:.40}")
    return value


def prompts_of(value: Any) -> list[Prompt]:
    """``prompt`` as a list of prompts, each a text or a list of token ids; at most ``MAX_PROMPTS``."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise ValueError("prompt must be a string, a list of strings, a list of token ids or a list of lists of "
                         "token ids, and not empty")
    first = value[0]
    if type(first) is int:
        return [_token_ids(value, "prompt")]
    if len(value) > MAX_PROMPTS:
        raise ValueError(f"prompt holds {len(value)} prompts; at most {MAX_PROMPTS} in one request")
    out: list[Prompt] = []
    for i, item in enumerate(value):
        if isinstance(item, str) and isinstance(first, str):
            out.append(item)
        elif isinstance(item, list) and isinstance(first, list):
            out.append(_token_ids(item, f"prompt[{i}]"))
        else:
            raise ValueError(f"prompt[{i}] must be {'a string' if isinstance(first, str) else 'a list of token ids'}"
                             ", as prompt[0] is")
    return out


class CompletionRequest(BaseModel):
    """A client's text completion request, validated. Fields outside OpenAI's are kept and sent on to
    OpenAI-wire upstreams, which judge them (vLLM's ``top_k``, a provider's own knobs)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    prompt: Any
    suffix: str | None = None
    # OpenAI's default, sent on explicitly: llama-server and others would otherwise generate to the window's end.
    max_tokens: StrictInt | None = Field(default=16, ge=0, le=MAX_TOKENS_CEILING)
    temperature: StrictNumber | None = Field(default=None, ge=0, le=2)
    top_p: StrictNumber | None = Field(default=None, ge=0, le=1)
    n: StrictInt | None = Field(default=None, ge=1, le=MAX_CHOICES)
    stop: str | list[str] | None = None
    stream: StrictFlag = False
    stream_options: StreamOptions | None = None
    best_of: StrictInt | None = Field(default=None, ge=1, le=MAX_BEST_OF)  # after n and stream: judged beside them
    seed: StrictInt | None = None
    echo: StrictFlag | None = None
    logprobs: StrictInt | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    presence_penalty: StrictNumber | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: StrictNumber | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, StrictNumber] | None = None
    user: str | None = None

    _prompts: list[Prompt] = PrivateAttr(default_factory=list)
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("prompt")
    @classmethod
    def _valid_prompt(cls, v: Any) -> Any:
        prompts_of(v)
        return v

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > MAX_STOPS:
            raise ValueError(f"at most {MAX_STOPS} stop sequences")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for token, bias in (v or {}).items():
            if not token.isdigit():
                raise ValueError(f"keys must be token ids, not {token!r:.40}")
            if not -100 <= bias <= 100:
                raise ValueError(f"the bias of token {token} must be from -100 to 100")
        return v

    @field_validator("best_of")
    @classmethod
    def _best_of(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is not None and v < (info.data.get("n") or 1):
            raise ValueError("best_of must be at least n")
        if v is not None and v > 1 and info.data.get("stream"):
            raise ValueError("best_of greater than 1 cannot be streamed")
        return v

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CompletionRequest:
        req = cls.model_validate(raw)
        req._prompts = prompts_of(req.prompt)
        req._raw = raw
        return req

    @property
    def prompts(self) -> list[Prompt]:
        return self._prompts or prompts_of(self.prompt)

    @property
    def choices(self) -> int:
        return self.n or 1

    @property
    def generations(self) -> int:
        """Completions generated per prompt (``best_of`` of them, of which ``n`` are returned)."""
        return max(self.choices, self.best_of or 1)

    def wants_usage_in_stream(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]

    def prompt_chars(self) -> int:
        """About as many characters as the prompts hold (a token id as four), to estimate what was billed."""
        return sum(len(p) if isinstance(p, str) else 4 * len(p) for p in self.prompts) + len(self.suffix or "")

    def upstream_body(self, upstream_model: str, stream: bool) -> dict[str, Any]:
        """The body for an OpenAI-wire upstream: the client's, for ``upstream_model``, asking for usage in a stream
        (the bill needs it whatever the client wants; the gateway gives the client what it asked for)."""
        body = {k: v for k, v in (self._raw or self.model_dump(exclude_none=True)).items() if v is not None}
        body["model"] = upstream_model
        body["stream"] = stream
        body.setdefault("max_tokens", self.max_tokens)
        if body["max_tokens"] is None:
            del body["max_tokens"]
        if stream:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        else:
            body.pop("stream_options", None)
        return body

    def stand_in(self) -> ChatRequest:
        """A chat request of the same size, for the chat machinery this path shares: routing reads its prompt's
        length and output for windows and prices, admission its size; it carries no parameter to honour."""
        texts = [p for p in self.prompts if isinstance(p, str)]
        ids = sum(len(p) for p in self.prompts if not isinstance(p, str))
        # Token ids are counted: as many blanks as routing's estimate reads as that many tokens.
        text = "\n".join([*texts, self.suffix or "", " " * (4 * ids)])
        messages = [Message.model_construct(role="user", content=text)]
        output = None if self.max_tokens is None else max(1, self.max_tokens) * self.generations * len(self.prompts)
        return ChatRequest.model_construct(model=self.model, messages=messages, stream=self.stream,
                                           max_tokens=output)


@dataclass(frozen=True, slots=True)
class TextCall:
    """One attempt at one model on one backend."""

    request: CompletionRequest
    upstream_model: str
    # Seconds to wait for response headers; None means the backend's own timeout.
    timeout: float | None = None


class TextChoice(TypedDict):
    index: int
    text: str
    logprobs: Any
    finish_reason: str | None


class TextCompletion(TypedDict):
    """OpenAI's ``text_completion``, whole or as one chunk of a stream (a stream's last may have no choices)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: NotRequired[Usage | None]
    system_fingerprint: NotRequired[str | None]


TextChunk = TextCompletion


def text_chunk(cid: str, created: int, model: str, choices: list[TextChoice],
               usage: Usage | None = None) -> TextChunk:
    chunk: TextChunk = {"id": cid, "object": "text_completion", "created": created, "model": model,
                        "choices": choices}
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def has_text(chunk: TextChunk) -> bool:
    """Whether a chunk carries the answer: some text, or a choice's end."""
    return any(c.get("text") or c.get("finish_reason") for c in chunk["choices"])
