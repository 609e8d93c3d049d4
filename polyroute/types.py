"""Chat request, response, stream chunk and usage: defined once.

The canonical form inside polyroute is the OpenAI wire format. Requests are
validated into ``ChatRequest`` (pydantic, so a 400 can name the field); responses
and stream chunks stay plain dicts typed as ``TypedDict`` so that a passed-through
OpenAI-compatible answer is never copied into objects and back. Every adapter
translates its own wire format to and from these shapes.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]

# A sane ceiling: no model we know generates more in one answer.
MAX_TOKENS_CEILING = 1_000_000

# Numbers and flags as JSON writes them: ``true`` is not 1, and ``1`` is not ``true``.
StrictInt = Annotated[int, Field(strict=True)]
StrictNumber = Annotated[float, Field(strict=True)]
StrictFlag = Annotated[bool, Field(strict=True)]

# OpenAI's rule for a function's name.
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TOOL_CHOICES = ("none", "auto", "required")
_FORMATS = ("text", "json_object", "json_schema")


def _check_part(part: dict[str, Any]) -> None:
    kind = part.get("type")
    if not isinstance(kind, str):
        raise ValueError("each content part needs a 'type' string")
    if kind == "text" and not isinstance(part.get("text"), str):
        raise ValueError("a 'text' part needs 'text' as a string")
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url:
            raise ValueError("an 'image_url' part needs 'image_url': {'url': ...}")


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    # str, a list of content parts, or None (assistant turns with tool_calls).
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _parts(cls, v: str | list[dict[str, Any]] | None) -> str | list[dict[str, Any]] | None:
        if isinstance(v, list):
            for part in v:
                _check_part(part)
        return v

    def text(self) -> str:
        """The message's text, joining text parts; other parts count as nothing."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")

    def has_image(self) -> bool:
        return isinstance(self.content, list) and any(
            p.get("type") in ("image_url", "input_image", "image") for p in self.content
        )


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: StrictFlag = False


class ChatRequest(BaseModel):
    """A client's chat completion request, validated.

    Unknown top-level fields are kept (``extra="allow"``) and handed to adapters
    that pass them through; the gateway decides per backend whether a parameter it
    cannot honour is dropped or refused.
    """

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: StrictFlag = False
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS_CEILING)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS_CEILING)
    temperature: StrictNumber | None = Field(default=None, ge=0, le=2)
    top_p: StrictNumber | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: StrictInt | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    n: StrictInt | None = Field(default=None, ge=1, le=1)
    user: str | None = None

    # The client's JSON as received, so an OpenAI-compatible backend gets it unchanged.
    _raw: dict[str, Any] | None = PrivateAttr(default=None)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ChatRequest:
        req = cls.model_validate(raw)
        req._raw = raw
        return req

    def raw(self) -> dict[str, Any]:
        if self._raw is None:
            self._raw = self.model_dump(mode="json", exclude_none=True)
        return self._raw

    @field_validator("stop")
    @classmethod
    def _stop_limit(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    @field_validator("tools")
    @classmethod
    def _tools_shape(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, tool in enumerate(v or []):
            fn = tool.get("function")
            if tool.get("type") != "function" or not isinstance(fn, dict) or not fn.get("name"):
                raise ValueError(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}")
            if not isinstance(fn["name"], str) or not _FUNCTION_NAME.match(fn["name"]):
                raise ValueError(f"tools[{i}].function.name must be 1 to 64 letters, digits, '_' or '-'")
        return v

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice_shape(cls, v: str | dict[str, Any] | None, info: ValidationInfo) -> str | dict[str, Any] | None:
        if isinstance(v, str) and v not in _TOOL_CHOICES:
            raise ValueError("must be 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}")
        if isinstance(v, dict):
            kind = v.get("type")
            fn = v.get("function")
            if not isinstance(kind, str) or (kind == "function" and not (
                    isinstance(fn, dict) and isinstance(fn.get("name"), str) and fn["name"])):
                raise ValueError("must be {'type': 'function', 'function': {'name': ...}}")
        if v is not None and v not in ("none", "auto") and not info.data.get("tools"):
            raise ValueError("a tool must be required or named only with 'tools' given")
        return v

    @field_validator("response_format")
    @classmethod
    def _format_shape(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and v.get("type") not in _FORMATS:
            raise ValueError("'type' must be 'text', 'json_object' or 'json_schema'")
        if v is not None and v["type"] == "json_schema" and not isinstance(v.get("json_schema"), dict):
            raise ValueError("a 'json_schema' format needs 'json_schema': {'name': ..., 'schema': ...}")
        return v


    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def wants_usage_in_stream(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def wants_json(self) -> bool:
        return bool(self.response_format and self.response_format.get("type") in ("json_object", "json_schema"))

    def extras(self) -> dict[str, Any]:
        """Top-level fields that are not part of the schema above."""
        return dict(self.__pydantic_extra__ or {})


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseMessage(TypedDict, total=False):
    role: str
    content: str | None
    tool_calls: list[dict[str, Any]]
    reasoning_content: str
    # Signed thinking, one entry per block, as OpenRouter sends it (polyroute.adapters.claude_thinking).
    reasoning_details: list[dict[str, Any]]
    # Why the model declined, in its provider's words (OpenAI's field; Claude's classifier refusals).
    refusal: str


class Choice(TypedDict):
    index: int
    message: ResponseMessage
    finish_reason: str | None
    logprobs: NotRequired[Any]


class ChatResponse(TypedDict):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: NotRequired[Usage]
    system_fingerprint: NotRequired[str | None]
    # Claude's list of thinking blocks it dropped or let through from the history sent.
    input_transformations: NotRequired[Any]


class Delta(TypedDict, total=False):
    role: str
    content: str | None
    tool_calls: list[dict[str, Any]]
    reasoning_content: str | None
    # What some upstreams (OpenRouter, newer vLLM) call the same thing.
    reasoning: str | None
    reasoning_details: list[dict[str, Any]]
    refusal: str


class ChunkChoice(TypedDict):
    index: int
    delta: Delta
    finish_reason: str | None
    logprobs: NotRequired[Any]


class ChatChunk(TypedDict):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: NotRequired[Usage | None]
    input_transformations: NotRequired[Any]  # as in ChatResponse, on a stream's first chunk


def make_usage(prompt: int, completion: int) -> Usage:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


# More tokens than any model reads or writes in one answer: a count past it is not a count.
MOST_TOKENS = 100_000_000


def token_count(v: object) -> int | None:
    """An upstream's token count: 0 when it gives none, None when what it gives is not a count."""
    if type(v) is int:
        n = v
    elif type(v) is float and v.is_integer():
        n = int(v)
    elif v is None:
        return 0
    else:
        return None
    return n if 0 <= n <= MOST_TOKENS else None


def read_usage(raw: object) -> Usage | None:
    """An upstream's ``usage`` as counts that can be billed, or None when there is none or it is not one.

    An upstream's word is not trusted blindly: a negative count would give budget back, a
    string or a number past ``MOST_TOKENS`` would break the accounting downstream.
    """
    if not isinstance(raw, dict):
        return None
    prompt, completion = token_count(raw.get("prompt_tokens")), token_count(raw.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    total = token_count(raw.get("total_tokens"))
    if not total or total < prompt + completion:
        total = prompt + completion  # some upstreams leave it out; reasoning may make it larger, never smaller
    elif total > prompt + completion and (hidden := _reasoning(raw)) and prompt + completion + hidden == total:
        # Reasoning counted in the total but not in completion_tokens, as some relays of Gemini report its
        # thoughts (https://github.com/router-for-me/CLIProxyAPI/issues/5733): output all the same, and billed so.
        completion += hidden
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def _reasoning(raw: dict[str, Any]) -> int:
    details = raw.get("completion_tokens_details")
    return (token_count(details.get("reasoning_tokens")) or 0) if isinstance(details, dict) else 0


def chunk_text(chunk: ChatChunk) -> str:
    """Visible text carried by a chunk (content and reasoning)."""
    out = ""
    for choice in chunk["choices"]:
        delta = choice["delta"]
        out += (delta.get("content") or "") + (delta.get("reasoning_content") or delta.get("reasoning") or "")
    return out


def chunk_has_token(chunk: ChatChunk) -> bool:
    """True once a chunk carries anything a client would call a token."""
    for choice in chunk["choices"]:
        delta = choice["delta"]
        if (delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content") or delta.get("reasoning")
                or delta.get("function_call") or delta.get("refusal") or delta.get("reasoning_details")):
            return True
        if choice.get("finish_reason"):
            return True
    return False
