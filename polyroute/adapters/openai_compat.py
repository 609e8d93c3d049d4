"""OpenAI-compatible chat completions: one adapter configured by data.

Serves OpenAI, DeepSeek, Qwen (DashScope compatible mode), Kimi (Moonshot), GLM
(Zhipu / Z.ai), Together, Fireworks, OpenRouter, vLLM, SGLang, llama-server and
Ollama's ``/v1``. Differences between them are data (``continuation``, headers),
never branches on provider names.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any, cast
from urllib.parse import urlsplit

import orjson

from polyroute.adapters import finish_reasons, gemini_signatures, tool_ids
from polyroute.adapters.base import Call
from polyroute.adapters.error_body import CONTEXT_CODES, BodyReader, ErrorInfo, json_error_reader
from polyroute.adapters.http import HttpAdapter, error_in_band, json_object
from polyroute.adapters.own_fields import for_upstream, with_reasoning
from polyroute.adapters.regions import key_region_hint, provider_key
from polyroute.adapters.shape import Shape
from polyroute.adapters.sse_chunks import EventReader, SSEChunks
from polyroute.assemble import as_chunks
from polyroute.cache_marks import MARK, without_marks
from polyroute.completions.openai_wire import TextEvents, text_answer
from polyroute.completions.types import CompletionRequest, TextCall, TextChunk, TextCompletion
from polyroute.config import HttpBackendConfig
from polyroute.embeddings.types import EmbedCall, Embedded, read_vectors
from polyroute.errors import UpstreamBadResponse, UpstreamServerError
from polyroute.types import ChatChunk, ChatResponse, token_count

# How each provider says that a prompt does not fit, where it gives no structured code:
# OpenAI, DeepSeek and OpenRouter ("maximum context length"), Moonshot ("exceeded model token
# limit", "Input token length too long"), DashScope ("Range of input length should be"),
# Z.ai ("Prompt exceeds max length"), Gemini and Vertex AI ("The input token count (N) exceeds the maximum number
# of tokens allowed (M).", with only Google's INVALID_ARGUMENT), llama-server ("exceeds the available context size").
_CONTEXT_WORDS = re.compile(
    r"maximum context length|context length|context window|too many tokens|exceeded model token limit"
    r"|input token length too long|range of input length should be|prompt exceeds max length"
    r"|exceeds the maximum number of tokens allowed|exceeds the available context size"
    # Hugging Face TGI, as Together quotes it: "`inputs` tokens + `max_new_tokens` must be <= 4097"
    r"|inputs`? tokens \+ `?max_new_tokens`? must be"
    # Bedrock's ValidationException as a relay passes it on (https://github.com/aws-samples/assessment-generator/issues/2)
    r"|input is too long for requested model",
    re.I,
)
# Structured codes for the same refusal: Qianfan's v2 API, and Z.ai's business code.
_CONTEXT_CODES = frozenset({"tokens_too_long", "characters_too_long", "1261"})


# Codes that mean another thing at one provider than at OpenAI, by ``regions.provider_key``. DashScope
# answers its per-minute request and token limits with OpenAI's billing code (429 insufficient_quota,
# "You exceeded your current quota"), and they lift within a minute
# (https://help.aliyun.com/en/model-studio/error-code, https://www.alibabacloud.com/help/en/model-studio/rate-limit,
# read 2026-12-07): a rate limit there, not an empty account.
RATE_LIMIT_CODES: dict[str, frozenset[str]] = {
    "dashscope": frozenset({"insufficient_quota", "Throttling", "Throttling.RateQuota", "Throttling.AllocationQuota"}),
}


# Where ``max_tokens`` is refused: OpenAI's reasoning models (the GPT-5 family, o-series) answer it with
# 400 unsupported_parameter "Use 'max_completion_tokens' instead", which every OpenAI chat model takes
# (https://platform.openai.com/docs/api-reference/chat/create: max_tokens "is not compatible with o-series
# models"; the same 400 for gpt-5, gpt-5.1 and gpt-5.5 in https://github.com/langgenius/dify/issues/24307,
# https://github.com/truefoundry/models/pull/827). A client's max_tokens is sent there under that name.
# Everywhere else a client's max_completion_tokens is sent as max_tokens: Mistral refuses the newer name
# (422 "Extra inputs are not permitted", https://docs.mistral.ai/api/#tag/chat documents max_tokens only),
# as do DeepSeek's and many servers' docs, and dropping it as a refused field would lift the client's cap.
COMPLETION_TOKENS = {"openai": ("api.openai.com",), "azure": (".openai.azure.com",)}


def wants_completion_tokens(provider: str | None, base_url: str | None) -> bool:
    return is_one_of(COMPLETION_TOKENS, provider, base_url)


# DeepSeek thinks by default and then refuses a forced tool call ("Thinking mode does not support this
# tool_choice"); the toggle is {"thinking": {"type": "disabled"}} (https://api-docs.deepseek.com/guides/thinking_mode,
# https://github.com/deepseek-ai/DeepSeek-V3/issues/1376). A request that forces a call and says nothing of
# thinking is sent with it off there, rather than refused.
NO_THINKING_FOR_FORCED_TOOLS = {"deepseek": ("api.deepseek.com",)}


def thinks_by_default(provider: str | None, base_url: str | None) -> bool:
    return is_one_of(NO_THINKING_FOR_FORCED_TOOLS, provider, base_url)


# Thinking modes that want reasoning_content on every assistant turn that called tools (polyroute.adapters.own_fields).
WANTS_REASONING = {"deepseek": ("api.deepseek.com",), "moonshot": ("api.moonshot.ai", "api.moonshot.cn"),
                   "kimi": ()}


# Claude's signed thinking in an assistant turn (``reasoning_details``, LiteLLM's ``thinking_blocks``) is for Claude,
# and taken off for other servers (polyroute.adapters.own_fields), except OpenRouter, which documents taking
# reasoning_details back (https://openrouter.ai/docs/guides/best-practices/reasoning-tokens).
KEEPS_THINKING = {"openrouter": ("openrouter.ai",)}


# Where a tool-call id must be nine letters and digits (polyroute.adapters.tool_ids): a history another provider
# wrote is sent there with its ids in that form, not refused.
NINE_CHAR_TOOL_IDS = {"mistral": ("api.mistral.ai",)}


def is_one_of(providers: Mapping[str, tuple[str, ...]], provider: str | None, base_url: str | None) -> bool:
    """Whether a backend is one of ``providers`` (name -> hosts; ".suffix" for a domain): by the ``provider``
    it names, else by the host of its ``base_url``."""
    if provider:
        return provider.lower() in providers
    host = urlsplit(base_url or "").hostname or ""
    return any(host == h or (h.startswith(".") and host.endswith(h)) for hosts in providers.values() for h in hosts)


def read_error(status: int, body: bytes) -> ErrorInfo:
    info = json_error_reader(status, body)
    if info.context_exceeded:  # by a type of its own (llama-server's), whose code is a status: OpenAI's code
        return info if info.code in CONTEXT_CODES else replace(info, code="context_length_exceeded")
    if status not in (400, 403, 413):  # Together: 403 for a prompt past the context
        return info
    if info.code in _CONTEXT_CODES or _CONTEXT_WORDS.search(info.message):
        return replace(info, code="context_length_exceeded", context_exceeded=True)
    return info


# Words that mean an empty account at one provider, whatever status and code come with them. Kimi's
# error table gives 403 as "Forbidden (insufficient balance)" (https://www.kimi.com/help/kimi-api/api-error-codes,
# read 2026-12-07), and its forum quotes a 429 "Your account is suspended due to insufficient balance, please
# recharge your account" (https://forum.moonshot.ai/t/429-insufficient-balance/244).
BILLING_WORDS: dict[str, re.Pattern[str]] = {
    "moonshot": re.compile(r"insufficient balance|balance (?:is )?(?:depleted|exhausted)", re.I),
}


def reader_for(provider: str | None, base_url: str | None, reader: BodyReader = read_error) -> BodyReader:
    """``reader`` with what a provider's codes and words mean where they differ from OpenAI's."""
    key = provider_key(provider, base_url) or ""
    limits, broke = RATE_LIMIT_CODES.get(key), BILLING_WORDS.get(key)
    if limits is None and broke is None:
        return reader

    def read(status: int, body: bytes) -> ErrorInfo:
        info = reader(status, body)
        if limits is not None and status == 429 and info.code in limits:
            return replace(info, billing=False)
        if broke is not None and not info.billing and status in (402, 403, 429) and broke.search(info.message):
            return replace(info, billing=True, auth=False)
        return info

    return read


class OpenAICompatAdapter(HttpAdapter):
    kind = "openai"
    extras = None  # the client's JSON is sent on as it came: the upstream judges what it does not know
    embeds = embeds_tokens = embeds_dimensions = True  # POST {base_url}/embeddings; the upstream judges the rest
    path = "/chat/completions"
    read_error = staticmethod(read_error)

    def __init__(self, name: str, config: HttpBackendConfig) -> None:
        super().__init__(name, config)
        self.continue_url = f"{config.continuation_base_url or config.base_url}{self.path}"
        self.http.reader = reader_for(config.provider, config.base_url, self.http.reader)
        self.completion_tokens = wants_completion_tokens(config.provider, config.base_url)
        self.thinks = thinks_by_default(config.provider, config.base_url)
        self.keeps_thinking = is_one_of(KEEPS_THINKING, config.provider, config.base_url)
        self.wants_reasoning = is_one_of(WANTS_REASONING, config.provider, config.base_url)
        self.google = gemini_signatures.is_google(config.provider, config.base_url)
        self.nine_char_ids = is_one_of(NINE_CHAR_TOOL_IDS, config.provider, config.base_url)
        if self.google:
            self.http.reader = gemini_signatures.refusing_unsigned_history(self.http.reader)
        if (hint := key_region_hint(config.provider, config.base_url)) is not None:
            self.http.reader = _hinting(self.http.reader, hint)

    def payload(self, call: Call, stream: bool) -> dict[str, Any]:
        raw = call.request.raw()
        body = {k: v for k, v in raw.items() if k not in call.drop}
        body["model"] = call.upstream_model
        body["stream"] = stream
        body["messages"] = for_upstream(raw["messages"], self.keeps_thinking, self.google)
        if self.google and gemini_signatures.signs_calls(call.upstream_model):
            # Calls another model made; every call of the turn when Google refused their signatures.
            replayed = gemini_signatures.REPLAYED in call.drop
            body["messages"] = gemini_signatures.with_stand_ins(body["messages"], replayed=replayed)
        if self.nine_char_ids:
            body["messages"] = tool_ids.in_form(body["messages"], tool_ids.for_mistral)
        if self.completion_tokens:
            if "max_tokens" in body:
                limit = body.pop("max_tokens")
                body.setdefault("max_completion_tokens", limit)
        elif "max_completion_tokens" in body:  # the one name every other server takes; the client's wins
            body["max_tokens"] = body.pop("max_completion_tokens")
        if self.thinks and "thinking" not in body and body.get("tool_choice") not in (None, "auto", "none"):
            body["thinking"] = {"type": "disabled"}  # a forced tool call: thinking mode refuses it
        if self.wants_reasoning and body.get("thinking") != {"type": "disabled"}:
            body["messages"] = with_reasoning(body["messages"])  # turns another model wrote before a failover
        if stream and "stream_options" not in call.drop:
            opts = dict(body.get("stream_options") or {})
            if call.want_usage:
                opts["include_usage"] = True
            if opts:
                body["stream_options"] = opts
        else:  # a whole answer, or a server that refuses stream_options (its stream's usage is then estimated)
            body.pop("stream_options", None)
        if MARK in call.drop:  # refused by this model: the breakpoints inside the request too
            body = without_marks(body)
        if call.prefix:
            body["messages"] = [*body["messages"], self._prefix_message(call.prefix)]
            if self.config.continuation == "continue_final_message":
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
        return body

    def _prefix_message(self, prefix: str) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": prefix}
        if self.config.continuation == "prefix":
            msg["prefix"] = True
        elif self.config.continuation == "partial":
            msg["partial"] = True
        return msg

    async def complete(self, call: Call) -> ChatResponse:
        url = self.continue_url if call.prefix else self.url
        doc = await self.http.post_json(
            url, self.payload(call, False), self.headers, call.upstream_model, call.timeout
        )
        resp = whole_answer(doc, self.name, call.upstream_model, self.http.reader)
        if call.prefix:
            _prepend(resp, call.prefix)
        return resp

    def stream(self, call: Call) -> SSEChunks:
        url = self.continue_url if call.prefix else self.url
        model = call.upstream_model
        events = _Events(self.name, model, self.http.reader)
        return SSEChunks(self.http, events, url, self.payload(call, True), self.headers, model, call.timeout)

    async def embed(self, call: EmbedCall) -> Embedded:
        model = call.upstream_model
        body = call.request.upstream_body(model)
        doc = await self.http.post_json(f"{self.config.base_url}/embeddings", body, self.headers, model, call.timeout)
        return embeddings_answer(doc, len(call.request.inputs), self.name, model, self.http.reader)

    def text_refusal(self, req: CompletionRequest, model: str) -> tuple[str, str] | None:
        return None  # POST {base_url}/completions: the upstream judges what it takes

    async def complete_text(self, call: TextCall) -> TextCompletion:
        model = call.upstream_model
        body = call.request.upstream_body(model, stream=False)
        doc = await self.http.post_json(f"{self.config.base_url}/completions", body, self.headers, model,
                                        call.timeout)
        return text_answer(doc, self.name, model, self.http.reader)

    def stream_text(self, call: TextCall) -> AsyncIterator[TextChunk]:
        model = call.upstream_model
        events = TextEvents(self.name, model, self.http.reader)
        chunks = SSEChunks(self.http, cast(EventReader, events), f"{self.config.base_url}/completions",
                           call.request.upstream_body(model, stream=True), self.headers, model, call.timeout)
        return cast(AsyncIterator[TextChunk], chunks)


def embeddings_answer(doc: object, count: int, backend: str, model: str, read: BodyReader = read_error) -> Embedded:
    """An OpenAI ``list`` of embeddings for ``count`` inputs, checked: the vectors in input order, the tokens."""
    if not isinstance(doc, dict) or "data" not in doc:
        if isinstance(doc, dict) and doc.get("error"):  # an error in a 200's body, as some relays send it
            raise error_in_band(orjson.dumps(doc), read, backend=backend, model=model)
        raise UpstreamBadResponse("answer has no embeddings (no data)", backend=backend, model=model)
    vectors = read_vectors(doc["data"], count, backend=backend, model=model)
    usage = doc.get("usage")
    tokens = token_count(usage.get("prompt_tokens")) if isinstance(usage, dict) else None
    return Embedded(vectors, tokens or None)


def whole_answer(doc: object, backend: str, model: str, read: BodyReader = read_error) -> ChatResponse:
    """A ``chat.completion`` body, checked and given the names OpenAI clients read."""
    if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list) or not doc["choices"]:
        if isinstance(doc, dict) and doc.get("error"):
            # An error in a 200's body: OpenRouter's for a failure after the model began ("the returned HTTP response
            # status will be 200 and any error ... emitted in the response body",
            # https://openrouter.ai/docs/api/reference/errors-and-debugging). What its code says, as in a stream.
            raise error_in_band(orjson.dumps(doc), read, backend=backend, model=model)
        raise UpstreamBadResponse("answer has no choices", backend=backend, model=model)
    doc.setdefault("object", "chat.completion")  # Z.ai's answer has none; OpenAI clients read it
    doc.setdefault("id", "")
    doc.setdefault("created", 0)
    doc.setdefault("model", model)
    shape = Shape(backend, model)
    for choice in doc["choices"]:
        if not isinstance(choice, dict):
            raise UpstreamBadResponse("answer choice is not an object", backend=backend, model=model)
        shape.choice(choice, "message")
        message = choice.get("message")
        if message and "reasoning" in message:
            _name_reasoning(message)
        if message and message.get("tool_calls") and choice.get("finish_reason") == "stop":
            choice["finish_reason"], choice["native_finish_reason"] = "tool_calls", "stop"
        if (finish := choice.get("finish_reason")) and finish_reasons.foreign(finish):
            cut = finish_reasons.translate(choice, finish)
            if cut is not None:
                err = UpstreamServerError(cut, backend=backend, model=model)
                err.usage = doc.get("usage")  # what the provider billed for the answer it cut
                raise err
    return cast(ChatResponse, doc)


class _Events:
    """An OpenAI-compatible stream: one chunk per event, then ``data: [DONE]``."""

    __slots__ = ("backend", "calls", "cut", "ended", "last_call", "model", "read", "roles", "shape", "slots")

    def __init__(self, backend: str, model: str, read: BodyReader = read_error) -> None:
        self.backend = backend
        self.model = model
        self.shape = Shape(backend, model)
        self.calls: dict[str, int] | None = None  # the index of each tool call's id, once the stream has one
        self.slots: dict[int, int] = {}  # the index the client reads for each the upstream said, as last said
        self.last_call = 0  # the index of the call begun last
        self.read = read  # the backend's error reader, which blanks out its key
        self.ended = False
        # Why the provider cut the answer short (its finish_reason said so): the stream fails at its
        # end, after the text and usage that came with that word have been passed on.
        self.cut: str | None = None
        # The choices whose role has been said. Some upstreams say it again in later deltas (Gemini beside each tool
        # call, https://github.com/THU-MAIC/OpenMAIC/issues/1556; OpenRouter and other relays in every chunk):
        # OpenAI's SDK joins a delta's text fields, role included, and would hand the client "assistantassistant"
        # to send back. It is said once, as OpenAI does.
        self.roles: set[int] = set()

    def on(self, event: str, data: str) -> list[ChatChunk]:
        if data == "[DONE]":
            if self.cut is not None:
                raise UpstreamServerError(self.cut, backend=self.backend, model=self.model)
            self.ended = True
            return []
        doc = json_object(data, "stream event", backend=self.backend, model=self.model)
        if doc.get("error"):  # some servers send "error": null in every chunk
            return self._error(doc, data)
        choices = doc.get("choices")
        if not isinstance(choices, list):
            raise UpstreamBadResponse("stream event has no choices", backend=self.backend, model=self.model)
        if self.cut is not None and choices:
            raise UpstreamServerError(self.cut, backend=self.backend, model=self.model)
        usage = doc.get("usage")
        for choice in choices:
            if not isinstance(choice, dict):
                raise UpstreamBadResponse("stream choice is not an object", backend=self.backend, model=self.model)
            self.shape.choice(choice, "delta")
            delta = choice["delta"]
            if "role" in delta:
                if (index := choice.get("index", 0)) in self.roles:
                    del delta["role"]
                else:
                    self.roles.add(index)
            if delta and "reasoning" in delta:
                _name_reasoning(delta)
            if delta and delta.get("tool_calls"):
                self._index_calls(delta["tool_calls"])
            elif self.calls is not None and choice.get("finish_reason") == "stop":
                # The answer called tools (Gemini ends it with "stop" all the same): as OpenAI says it.
                choice["finish_reason"], choice["native_finish_reason"] = "tool_calls", "stop"
            if "usage" in choice:  # Moonshot's place for it
                usage = choice.pop("usage") or usage
            if (finish := choice.get("finish_reason")) and finish_reasons.foreign(finish):
                self.cut = finish_reasons.translate(choice, finish) or self.cut
        if usage and choices:
            # Usage that comes with the last choices (DeepSeek, Moonshot) goes in a chunk of its
            # own, as OpenAI sends it, so clients and the bill find it in one place.
            doc.pop("usage", None)
            return [doc, _usage_chunk(doc, usage)]  # type: ignore[list-item]  # checked above
        return [doc]  # type: ignore[list-item]  # checked above: an object with choices

    def _index_calls(self, calls: list[dict[str, Any]]) -> None:
        """Give each tool-call delta the ``index`` OpenAI clients join deltas by: one of its own for each call, where
        the provider sent none (Gemini) or gave every call of the turn one index (vLLM behind Dynamo and Ollama's
        /v1 give each index 0, https://github.com/ai-dynamo/dynamo/pull/4723,
        https://github.com/huggingface/smolagents/pull/1958), which clients would join into one call of two
        names and two argument texts. A call begins with its id and name; a delta without them goes on the call
        that last said its index, or, without one, on the call begun last. Indices that are each a call's pass
        as they came."""
        seen = self.calls if self.calls is not None else {}
        self.calls = seen
        for call in calls:
            said: int | None = call.get("index")  # a count or none (polyroute.adapters.shape)
            cid = call.get("id")
            fn = call.get("function")
            ours: int
            if cid and (cid in seen or (isinstance(fn, dict) and fn.get("name"))):
                if cid in seen:
                    ours = seen[cid]
                else:
                    taken = said is None or said in self.slots or said in seen.values()
                    ours = seen[cid] = max(seen.values(), default=-1) + 1 if taken or said is None else said
                    self.last_call = ours
                if said is not None:
                    self.slots[said] = ours
            else:
                ours = self.last_call if said is None else self.slots.get(said, said)
            call["index"] = ours

    def _error(self, doc: dict[str, Any], data: str) -> list[ChatChunk]:
        """An error sent inside the stream. Moderation ends the answer as OpenAI's own filter does
        (``finish_reason: "content_filter"``): the client's content, not to be finished by another
        provider. Anything else is the error it would have been as an HTTP status."""
        body = data.encode()
        try:
            refused = self.read(500, body).content_refused
            err = None if refused else error_in_band(body, self.read, backend=self.backend, model=self.model)
        except Exception:  # an error event too odd to read is still an error of the upstream's
            raise UpstreamServerError("the stream carried an error", backend=self.backend, model=self.model) from None
        if err is not None:
            raise err
        self.ended = True
        return [{"id": str(doc.get("id") or ""), "object": "chat.completion.chunk", "created": 0, "model": self.model,
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]}]

    def missing_end(self) -> str:
        return self.cut or "stream ended without [DONE]"

    def whole(self, doc: object) -> list[ChatChunk]:
        self.ended = True
        return as_chunks(whole_answer(doc, self.backend, self.model, self.read))


def _name_reasoning(part: dict[str, Any]) -> None:
    """Give the client reasoning under one name, ``reasoning_content``, whatever the upstream calls it.

    OpenRouter (and newer vLLM) send ``reasoning``; DeepSeek, Moonshot, DashScope and the
    other adapters of this gateway send ``reasoning_content``.
    """
    reasoning = part.pop("reasoning")
    if reasoning and not part.get("reasoning_content"):
        part["reasoning_content"] = reasoning


def _usage_chunk(doc: dict[str, Any], usage: Any) -> dict[str, Any]:
    """Usage as the chunk of its own, with no choices, that OpenAI clients expect at a stream's end."""
    return {"id": doc.get("id", ""), "object": "chat.completion.chunk", "created": doc.get("created", 0),
            "model": doc.get("model", ""), "choices": [], "usage": usage}


def _hinting(reader: BodyReader, hint: str) -> BodyReader:
    """A reader that adds ``hint`` to the message of a refused key."""

    def read(status: int, body: bytes) -> ErrorInfo:
        info = reader(status, body)
        if status != 401 and not info.auth:
            return info
        return replace(info, message=f"{info.message[:300]} ({hint})")

    return read


def _prepend(doc: ChatResponse, prefix: str) -> None:
    """Some backends return only the continuation: give the client the whole answer."""
    msg = doc["choices"][0].get("message") or {}
    content = msg.get("content") or ""
    if not content.startswith(prefix):
        msg["content"] = prefix + content
