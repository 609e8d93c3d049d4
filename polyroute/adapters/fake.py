"""A deterministic backend for tests: its behaviour is chosen by the model name.

The upstream model id is a ``+``-joined list of behaviours, e.g. ``echo``,
``slow-200+echo`` or ``cut-3``:

- ``echo`` (default): answers ``"You said: <last user text>"``, one word a token;
- ``text-WORDS``: answers with the given words (``text-hello-world``);
- ``slow-MS``: waits MS milliseconds before the first token (or the whole answer);
- ``gap-MS``: waits MS milliseconds between tokens;
- ``error-STATUS``: fails as an upstream answering STATUS would (``error-429``);
- ``blocked``: fails as a region-blocked provider (403, region code);
- ``flaky``: fails every other call with a 503;
- ``cut-N``: a stream that breaks after N tokens;
- ``stall-N``: a stream that stops sending after N tokens;
- ``tools``: calls the first tool of the request with ``{}`` arguments;
- ``dims-N``: embeddings of N dimensions (16 by default; a request's ``dimensions`` wins).

Embeddings are deterministic: each word of an input stands for a fixed random direction, and
the input's vector is their normalised sum, so inputs that share words lie close together.

A rescue prefix is honoured: when the answer starts with it, only the rest is sent.

Text completions (``/v1/completions``) answer ``"You said: <prompt>"`` (or ``text-WORDS``), one word a
token, cut at ``max_tokens``; with ``echo`` the prompt comes first. Each prompt gets ``n`` choices.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from polyroute.adapters.base import Adapter, Call, make_chunk, new_id, now, usage_chunk
from polyroute.adapters.error_body import ErrorInfo
from polyroute.adapters.http import error_from_status
from polyroute.completions.types import CompletionRequest, TextCall, TextChoice, TextChunk, TextCompletion, text_chunk
from polyroute.config import Config, FakeBackend
from polyroute.config_problems import did_you_mean
from polyroute.embeddings.types import EmbedCall, Embedded
from polyroute.errors import UpstreamError, UpstreamRejected, UpstreamUnavailable
from polyroute.types import ChatChunk, ChatResponse, make_usage


@dataclass(frozen=True, slots=True)
class Behaviour:
    text: str | None = None
    slow_ms: int = 0
    gap_ms: int = 0
    error: int | None = None
    blocked: bool = False
    flaky: bool = False
    cut: int | None = None
    stall: int | None = None
    tools: bool = False
    dims: int | None = None

    @classmethod
    def parse(cls, name: str) -> Behaviour:
        return cls(**_read(name)[0])  # type: ignore[arg-type]


NAMES = ("echo", "text-WORDS", "slow-MS", "gap-MS", "error-STATUS", "blocked", "flaky", "cut-N", "stall-N", "tools",
         "dims-N")
FAKE_DIMENSIONS = 16
MAX_FAKE_DIMENSIONS = 8192  # more than any embedding model gives; past it a test's typo would only burn CPU


def _read(name: str) -> tuple[dict[str, object], list[str]]:
    """The fields a model name asks for, and the parts of it that name no behaviour."""
    fields: dict[str, object] = {}
    unknown: list[str] = []
    for part in name.split("+"):
        head, _, arg = part.partition("-")
        if head == "text":
            fields["text"] = arg.replace("-", " ")
        elif head in ("slow", "gap", "cut", "stall", "dims") and arg.isdigit():
            fields[{"slow": "slow_ms", "gap": "gap_ms"}.get(head, head)] = int(arg)
        elif head == "error" and arg.isdigit():
            fields["error"] = int(arg)
        elif head in ("blocked", "flaky", "tools") and not arg:
            fields[head] = True
        elif part != "echo":
            unknown.append(part)
    return fields, unknown


def fake_cautions(config: Config) -> list[str]:
    """A fake backend's model whose name holds a part that is no behaviour (a typo such as ``eror-503``): it
    would answer by echoing, and a failover demo would show nothing failing."""
    out = []
    for name, model in config.models.items():
        backend = config.backends.get(model.backend)
        if not isinstance(backend, FakeBackend):
            continue
        upstream = model.upstream or name
        unknown = [p for p in _read(upstream)[1] if "+" in upstream or _looks_meant(p)]
        for part in unknown:  # a plain name (``m1``, ``my-model``) echoes on purpose
            key = f"models.{name}.upstream" if model.upstream else f"models.{name}"
            hint = did_you_mean(part.partition("-")[0], _HEADS)
            out.append(f"{key}: {part!r} in {upstream!r} is no behaviour of the fake backend{hint} (known: "
                       f"{', '.join(NAMES)}, joined with '+'): it is ignored, and the model echoes")
    return out


_HEADS = {n.partition("-")[0] for n in NAMES}


def _looks_meant(part: str) -> bool:
    """A behaviour's name with a bad argument (``error-abc``), or one typo from one (``eror-503``); a plain
    word (``small``) is a name."""
    head, dash, _ = part.partition("-")
    return bool(dash) and (head in _HEADS or bool(did_you_mean(head, _HEADS)))


class FakeAdapter(Adapter):
    kind = "fake"
    config: FakeBackend
    default_continuation = "prefill"

    embeds = embeds_tokens = embeds_dimensions = True

    def __init__(self, name: str, config: FakeBackend) -> None:
        super().__init__(name, config)
        self.calls = 0

    async def embed(self, call: EmbedCall) -> Embedded:
        b = Behaviour.parse(call.upstream_model)
        if b.slow_ms:
            await asyncio.sleep(b.slow_ms / 1000)
        err = self._fail(b, call.upstream_model)
        if err:
            raise err
        size = call.request.dimensions or b.dims or FAKE_DIMENSIONS
        if size > MAX_FAKE_DIMENSIONS:
            err = UpstreamRejected(f"the fake backend embeds at most {MAX_FAKE_DIMENSIONS} dimensions, not {size}",
                                   backend=self.name, model=call.upstream_model, upstream_status=400)
            err.param = "dimensions"
            raise err
        words = [x.lower().split() if isinstance(x, str) else [str(t) for t in x] for x in call.request.inputs]
        return Embedded([_vector(w, size) for w in words], sum(max(len(w), 1) for w in words))

    def text_refusal(self, req: CompletionRequest, model: str) -> tuple[str, str] | None:
        return _fake_text_refusal(req)

    async def complete_text(self, call: TextCall) -> TextCompletion:
        b = Behaviour.parse(call.upstream_model)
        if b.slow_ms:
            await asyncio.sleep(b.slow_ms / 1000)
        if err := self._fail(b, call.upstream_model):
            raise err
        return _FakeText(call.request, b).whole(call.upstream_model)

    async def stream_text(self, call: TextCall) -> AsyncIterator[TextChunk]:
        b, model = Behaviour.parse(call.upstream_model), call.upstream_model
        if b.slow_ms:
            await asyncio.sleep(b.slow_ms / 1000)
        if err := self._fail(b, model):
            raise err
        text, cid, created = _FakeText(call.request, b), "cmpl-" + new_id()[9:], now()
        for step in range(max(map(len, text.words), default=0)):
            if b.cut is not None and step >= b.cut:
                raise UpstreamUnavailable("connection reset mid-stream", backend=self.name, model=model)
            if b.stall is not None and step >= b.stall:
                await asyncio.sleep(3600)
            if b.gap_ms and step:
                await asyncio.sleep(b.gap_ms / 1000)
            yield text_chunk(cid, created, model, [{"index": i, "text": w[step], "logprobs": None,
                                                    "finish_reason": None}
                                                   for i, w in enumerate(text.words) if step < len(w)])
        yield text_chunk(cid, created, model, [{"index": i, "text": "", "logprobs": None, "finish_reason": f}
                                               for i, f in enumerate(text.finish)])
        yield text_chunk(cid, created, model, [], make_usage(text.prompt_tokens, text.usage_total()))

    def _fail(self, b: Behaviour, model: str) -> UpstreamError | None:
        self.calls += 1
        if b.flaky and self.calls % 2 == 1:
            return UpstreamUnavailable("flaky backend dropped the connection", backend=self.name, model=model)
        if b.blocked:
            info = ErrorInfo(
                "Country, region, or territory not supported", "unsupported_country_region_territory", True
            )
            return error_from_status(403, b"", {}, lambda s, body: info, backend=self.name, model=model)
        if b.error is not None:
            info = ErrorInfo(f"fake upstream answered {b.error}")
            headers = {"retry-after": "1"} if b.error == 429 else {}
            return error_from_status(b.error, b"", headers, lambda s, body: info, backend=self.name, model=model)
        return None

    def _answer(self, call: Call, b: Behaviour) -> list[str]:
        if b.text is not None:
            text = b.text
        else:
            last = next((m for m in reversed(call.request.messages) if m.role == "user"), None)
            text = "You said: " + (last.text() if last else "")
        words = text.split(" ")
        tokens = [w if i == 0 else " " + w for i, w in enumerate(words)]
        limit = call.request.output_limit()
        return tokens[:limit] if limit else tokens

    def _rest(self, tokens: list[str], prefix: str | None) -> list[str]:
        if not prefix:
            return tokens
        full = "".join(tokens)
        if not full.startswith(prefix):
            return tokens
        rest = full[len(prefix) :]
        return [rest] if rest else []

    def _prompt_tokens(self, call: Call) -> int:
        return sum(len(m.text().split()) + 3 for m in call.request.messages)

    async def complete(self, call: Call) -> ChatResponse:
        b = Behaviour.parse(call.upstream_model)
        if b.slow_ms:
            await asyncio.sleep(b.slow_ms / 1000)
        err = self._fail(b, call.upstream_model)
        if err:
            raise err
        prompt = self._prompt_tokens(call)
        if b.tools and call.request.tools:
            fn = call.request.tools[0]["function"]["name"]
            tool_call = {
                "id": "call_" + new_id()[-12:],
                "type": "function",
                "function": {"name": fn, "arguments": "{}"},
            }
            return {
                "id": new_id(),
                "object": "chat.completion",
                "created": now(),
                "model": call.upstream_model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": None, "tool_calls": [tool_call]},
                        "finish_reason": "tool_calls",
                    }
                ],
                "usage": make_usage(prompt, 5),
            }
        tokens = self._answer(call, b)
        full = "".join(tokens)
        finish = _finish(call, tokens)
        return {
            "id": new_id(),
            "object": "chat.completion",
            "created": now(),
            "model": call.upstream_model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": full}, "finish_reason": finish}],
            "usage": make_usage(prompt, len(tokens)),
        }

    async def stream(self, call: Call) -> AsyncIterator[ChatChunk]:
        b = Behaviour.parse(call.upstream_model)
        cid, model = new_id(), call.upstream_model
        if b.slow_ms:
            await asyncio.sleep(b.slow_ms / 1000)
        err = self._fail(b, model)
        if err:
            raise err
        yield make_chunk(cid, model, {"role": "assistant", "content": ""})
        answer = self._answer(call, b)
        tokens = self._rest(answer, call.prefix)
        if b.tools and call.request.tools:
            fn = call.request.tools[0]["function"]["name"]
            tc = {
                "index": 0,
                "id": "call_" + cid[-12:],
                "type": "function",
                "function": {"name": fn, "arguments": "{}"},
            }
            yield make_chunk(cid, model, {"tool_calls": [tc]})
            yield make_chunk(cid, model, {}, "tool_calls")
            yield usage_chunk(cid, model, make_usage(self._prompt_tokens(call), 5))
            return
        for i, tok in enumerate(tokens):
            if b.cut is not None and i >= b.cut:
                raise UpstreamUnavailable("connection reset mid-stream", backend=self.name, model=model)
            if b.stall is not None and i >= b.stall:
                await asyncio.sleep(3600)
            if b.gap_ms and i:
                await asyncio.sleep(b.gap_ms / 1000)
            yield make_chunk(cid, model, {"content": tok})
        yield make_chunk(cid, model, {}, _finish(call, answer))
        yield usage_chunk(cid, model, make_usage(self._prompt_tokens(call), len(tokens)))


class _FakeText:
    """The fake's text completions: what each choice says, whole or a word at a time."""

    def __init__(self, req: CompletionRequest, b: Behaviour) -> None:
        self.req = req
        self.words: list[list[str]] = []  # per choice
        self.finish: list[str] = []
        limit = req.max_tokens
        for prompt in req.prompts:
            said = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
            text = b.text if b.text is not None else "You said: " + said
            tokens = [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]
            kept = tokens if limit is None else tokens[:limit]
            if req.echo:
                kept = [said, *kept]
            for _ in range(req.choices):
                self.words.append(kept)
                self.finish.append("length" if limit is not None and len(tokens) >= limit else "stop")
        self.prompt_tokens = sum(max(len(str(p).split()), 1) for p in req.prompts)

    def usage_total(self) -> int:
        return sum(len(w) for w in self.words)

    def whole(self, model: str) -> TextCompletion:
        choices: list[TextChoice] = [{"index": i, "text": "".join(w), "logprobs": None, "finish_reason": f}
                                     for i, (w, f) in enumerate(zip(self.words, self.finish, strict=True))]
        return text_chunk("cmpl-" + new_id()[9:], now(), model, choices,
                          make_usage(self.prompt_tokens, self.usage_total()))


def _fake_text_refusal(req: CompletionRequest) -> tuple[str, str] | None:
    if req.logprobs is not None:
        return "logprobs", "the fake backend gives no logprobs"
    return None


def _finish(call: Call, answer: list[str]) -> str:
    """``length`` when the answer used every token ``max_tokens`` allowed, as a model cut there says."""
    limit = call.request.output_limit()
    return "length" if limit and len(answer) == limit else "stop"


def _vector(words: Sequence[str], size: int) -> list[float]:
    """The normalised sum of each word's fixed random direction (a word's direction is seeded by its hash)."""
    total = [0.0] * size
    for word in words or ("",):
        rng = random.Random(hashlib.sha256(word.strip(".,;:!?\"'").encode()).digest())
        for i in range(size):
            total[i] += rng.gauss(0.0, 1.0)
    norm = math.sqrt(sum(x * x for x in total)) or 1.0
    return [x / norm for x in total]
