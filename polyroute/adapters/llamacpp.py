"""A GGUF model run in-process by llama.cpp (llama-cpp-python).

One loaded model generates one answer at a time: llama.cpp is not thread-safe
for a single model. Generation runs on the adapter's one worker thread, whose
queue is first in, first out and bounded by ``max_queue`` waiting requests;
past the bound a request fails at once as rate limited, so the gateway can move
on. Streamed tokens cross to the event loop through an asyncio queue.

A request that is cancelled, or whose stream consumer goes away, sets its run's
``cancel`` event: a waiting request never starts, and a running one stops at
the next token, which frees the model for the next request.

Continuation (stream rescue) renders the chat prompt with the model's own
template, appends the partial answer and completes that raw prompt.

Embeddings come from a second ``Llama`` of the same file, loaded with ``embedding=True``
(llama.cpp makes a context either generate or embed) when a model of the backend embeds.
The weights are mapped from the same file, so the page cache holds them once; the second
instance costs its own context. It runs on the same worker thread, behind the same queue:
one model file, one computation at a time. A GGUF that names no pooling (a chat model
such as SmolLM2) is mean-pooled; vectors are L2-normalised, as OpenAI's are.

Text completions (``/v1/completions``) complete the client's prompt as it is, with no
template, on the same worker thread: one prompt, one choice, no ``suffix`` (llama-cpp-python
has no working fill-in-the-middle) and no ``logprobs`` (the model is loaded without
logits for every token).

Not honoured: tools (a chat template that does not mention them never shows
them to the model), images (messages are reduced to their text), and a JSON
``response_format`` on a continuation (its grammar would restart the document).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_types import (
    ChatCompletionRequestMessage,
    ChatCompletionRequestResponseFormat,
    CreateChatCompletionResponse,
    CreateChatCompletionStreamResponse,
    CreateCompletionResponse,
    CreateCompletionStreamResponse,
)

from polyroute.adapters.base import Adapter, Call, make_chunk, new_id, now, usage_chunk
from polyroute.completions.types import CompletionRequest, TextCall, TextChunk, TextCompletion, text_chunk
from polyroute.config import LlamaCppBackend
from polyroute.embeddings.types import EmbedCall, Embedded
from polyroute.errors import (
    ConfigError,
    UpstreamContextExceeded,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamUnavailable,
)
from polyroute.types import ChatChunk, ChatResponse, Usage, make_usage

T = TypeVar("T")

# llama-cpp-python reports an over-long prompt only as a ValueError with this text.
_CONTEXT_OVERFLOW = re.compile(r"exceed context window", re.I)


@dataclass(eq=False)
class _Run:
    """One generation: its stop signal and its token counts, as llama.cpp saw them."""

    cancel: threading.Event = field(default_factory=threading.Event)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def usage(self) -> Usage:
        return make_usage(self.prompt_tokens, self.completion_tokens)


@dataclass(frozen=True, slots=True)
class _Piece:
    """Generated text as it leaves the worker thread."""

    text: str
    finish_reason: str | None = None


class _Model(llama_cpp.Llama):
    """llama-cpp-python's Llama whose token loop answers to the current run.

    Every completion path of llama-cpp-python, chat or raw, streamed or not, draws
    its tokens from ``generate``: watching it here stops any of them at the next
    token and counts tokens exactly (streams carry no usage of their own).
    """

    run: _Run | None = None

    def generate(self, tokens: Sequence[int], *args: Any, **kwargs: Any) -> Generator[int, Sequence[int] | None, None]:
        run = self.run or _Run()
        run.prompt_tokens = len(tokens)
        vocab = llama_cpp.llama_model_get_vocab(self.model)
        inner = super().generate(tokens, *args, **kwargs)
        try:
            for token in inner:
                if run.cancel.is_set():
                    return
                if vocab is None or not llama_cpp.llama_vocab_is_eog(vocab, token):
                    run.completion_tokens += 1
                yield token
        finally:
            inner.close()


class LlamaCppAdapter(Adapter):
    kind = "llamacpp"
    config: LlamaCppBackend
    # The chat template is all this adapter knows of a model: tools would be
    # rendered only by a template that mentions them, so they are not claimed.
    supports = frozenset({"response_format", "seed", "stop", "temperature", "top_p", "max_tokens"})
    embeds = True  # text only, at the model's own length (see the module's docstring)

    def __init__(self, name: str, config: LlamaCppBackend) -> None:
        super().__init__(name, config)
        self.threads = config.n_threads or _cores()
        self._model: _Model | None = None
        self._formatter: Jinja2ChatFormatter | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llamacpp-{name}")
        self._lock = threading.Lock()
        self._pending = 0  # running + waiting
        self._seconds_per_run = 1.0  # moving average, for Retry-After
        self._current: _Run | None = None
        self._embeds = False  # a model of this backend embeds: start loads the embedding instance too
        self._embedder: llama_cpp.Llama | None = None

    @property
    def can_continue(self) -> bool:
        return self._formatter is not None and (self.config.continuation or "prefill") != "none"

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._model is None:
            self._model = await asyncio.to_thread(self._load)
            self._formatter = _formatter(self._model)
        if self._embeds and self._embedder is None:
            self._embedder = await asyncio.to_thread(self._load_embedder, self._model)

    def prepare_embeddings(self) -> None:
        self._embeds = True

    def _load_embedder(self, model: _Model) -> llama_cpp.Llama:
        """The same file in embedding mode: mean-pooled unless the GGUF names its own pooling."""
        names_pooling = any(key.endswith(".pooling_type") for key in model.metadata)
        pooling = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED if names_pooling else llama_cpp.LLAMA_POOLING_TYPE_MEAN
        n_ctx = self.config.n_ctx
        try:
            # One batch holds a whole input: a pooled input must be computed in one piece.
            return llama_cpp.Llama(model_path=model.model_path, embedding=True, pooling_type=pooling, n_ctx=n_ctx,
                                   n_batch=n_ctx, n_ubatch=n_ctx, n_threads=self.threads,
                                   n_threads_batch=self.threads, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"llama.cpp cannot load {model.model_path} for embeddings: {exc}",
                              key=f"backends.{self.name}.model_path") from None

    def _load(self) -> _Model:
        path = Path(self.config.model_path or "")
        key = f"backends.{self.name}.model_path"
        if not path.is_file():
            raise ConfigError(f"model file not found: {path}", key=key)
        try:
            return _Model(
                model_path=str(path),
                n_ctx=self.config.n_ctx,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"llama.cpp cannot load {path}: {exc}", key=key) from None

    async def aclose(self) -> None:
        with self._lock:
            if self._current is not None:
                self._current.cancel.set()
        await asyncio.to_thread(self._worker.shutdown, wait=True, cancel_futures=True)
        if self._model is not None:
            self._model.close()
            self._model = None
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None

    # --- the queue ---------------------------------------------------------------------

    def _submit(self, run: _Run, job: Callable[[], T], model: str) -> asyncio.Future[T]:
        """Queue a job for the worker thread, or refuse it when the queue is full."""
        with self._lock:
            waiting = self._pending - 1
            if waiting >= self.config.max_queue:
                # A place frees up when the running generation ends: about one run from now.
                # Draining the whole queue would keep a last resort out far too long.
                raise UpstreamRateLimited(
                    "local model queue is full",
                    retry_after=self._seconds_per_run,
                    backend=self.name,
                    model=model,
                )
            self._pending += 1
        fut = self._worker.submit(self._execute, run, job, model)
        fut.add_done_callback(self._finished)
        return asyncio.wrap_future(fut)

    def _finished(self, _fut: Future[Any]) -> None:
        with self._lock:
            self._pending -= 1

    def _execute(self, run: _Run, job: Callable[[], T], model: str) -> T:
        """On the worker thread: one job on the model, its errors translated."""
        if self._model is None:
            raise UpstreamUnavailable("model is not loaded", backend=self.name, model=model)
        if run.cancel.is_set():  # given up on while it waited
            raise UpstreamUnavailable("request was cancelled", backend=self.name, model=model)
        with self._lock:
            self._current = run
        self._model.run = run
        began = time.monotonic()
        try:
            return job()
        except Exception as exc:
            raise self._translate(exc, model) from exc
        finally:
            self._model.run = None
            with self._lock:
                self._current = None
                self._seconds_per_run = 0.8 * self._seconds_per_run + 0.2 * (time.monotonic() - began)

    def _translate(self, exc: Exception, model: str) -> UpstreamError:
        """The one place where llama.cpp's exceptions become polyroute's."""
        if isinstance(exc, UpstreamError):
            return exc
        message = str(exc) or type(exc).__name__
        if isinstance(exc, ValueError) and _CONTEXT_OVERFLOW.search(message):
            return UpstreamContextExceeded(message, backend=self.name, model=model)
        return UpstreamServerError(f"llama.cpp failed: {message}", backend=self.name, model=model)

    # --- the two entry points ----------------------------------------------------------

    async def complete(self, call: Call) -> ChatResponse:
        run = _Run()
        model = call.upstream_model
        try:
            piece = await self._submit(run, lambda: next(self._pieces(call, stream=False)), model)
        finally:
            # A no-op once finished; otherwise it stops the token loop or the queued job.
            run.cancel.set()
        text = (call.prefix or "") + piece.text
        return {
            "id": new_id(),
            "object": "chat.completion",
            "created": now(),
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": piece.finish_reason}
            ],
            "usage": run.usage(),
        }

    async def stream(self, call: Call) -> AsyncIterator[ChatChunk]:
        run, model, cid = _Run(), call.upstream_model, new_id()
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[_Piece | None] = asyncio.Queue()

        def emit(piece: _Piece) -> None:
            try:
                loop.call_soon_threadsafe(pieces.put_nowait, piece)
            except RuntimeError:  # the event loop is gone: nobody is listening
                run.cancel.set()

        def pump() -> None:
            with contextlib.closing(self._pieces(call, stream=True)) as produced:
                for piece in produced:
                    if run.cancel.is_set():
                        return
                    emit(piece)

        done = self._submit(run, pump, model)
        done.add_done_callback(lambda _: pieces.put_nowait(None))
        try:
            started = False
            while (piece := await pieces.get()) is not None:
                if not started:
                    started = True
                    yield make_chunk(cid, model, {"role": "assistant", "content": ""})
                if piece.text:
                    yield make_chunk(cid, model, {"content": piece.text})
                if piece.finish_reason:
                    yield make_chunk(cid, model, {}, piece.finish_reason)
            done.result()
            yield usage_chunk(cid, model, run.usage())
        finally:
            run.cancel.set()
            done.cancel()

    async def embed(self, call: EmbedCall) -> Embedded:
        run, model = _Run(), call.upstream_model
        texts = call.request.texts or []  # token ids never reach it (embeds_tokens is False)
        try:
            vectors, tokens = await self._submit(run, lambda: self._embed(texts, model), model)
        finally:
            run.cancel.set()  # a job still waiting never starts
        return Embedded(vectors, tokens)

    def text_refusal(self, req: CompletionRequest, model: str) -> tuple[str, str] | None:
        why = _text_refusal(req)
        return None if why is None else (why[0], f"llama.cpp in-process backends {why[1]}")

    async def complete_text(self, call: TextCall) -> TextCompletion:
        run, model = _Run(), call.upstream_model
        try:
            piece = await self._submit(run, lambda: next(self._text_pieces(call.request, stream=False)), model)
        finally:
            run.cancel.set()  # a no-op once finished; otherwise it stops the token loop or the queued job
        return text_chunk("cmpl-" + new_id()[9:], now(), model, [
            {"index": 0, "text": piece.text, "logprobs": None, "finish_reason": piece.finish_reason}], run.usage())

    async def stream_text(self, call: TextCall) -> AsyncIterator[TextChunk]:
        run, model, cid, created = _Run(), call.upstream_model, "cmpl-" + new_id()[9:], now()
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[_Piece | None] = asyncio.Queue()

        def pump() -> None:
            with contextlib.closing(self._text_pieces(call.request, stream=True)) as produced:
                for piece in produced:
                    if run.cancel.is_set():
                        return
                    try:
                        loop.call_soon_threadsafe(pieces.put_nowait, piece)
                    except RuntimeError:  # the event loop is gone: nobody is listening
                        run.cancel.set()

        done = self._submit(run, pump, model)
        done.add_done_callback(lambda _: pieces.put_nowait(None))
        try:
            while (piece := await pieces.get()) is not None:
                yield text_chunk(cid, created, model, [
                    {"index": 0, "text": piece.text, "logprobs": None, "finish_reason": piece.finish_reason}])
            done.result()
            yield text_chunk(cid, created, model, [], run.usage())
        finally:
            run.cancel.set()
            done.cancel()

    # --- llama.cpp calls (worker thread) -----------------------------------------------

    def _text_pieces(self, req: CompletionRequest, *, stream: bool) -> Generator[_Piece, None, None]:
        """The client's prompt completed as it is: no chat template."""
        model = cast(_Model, self._model)
        prompt = req.prompts[0]
        wanted: dict[str, Any] = {
            "temperature": req.temperature, "top_p": req.top_p, "seed": req.seed, "stop": req.stop_list() or None,
            "presence_penalty": req.presence_penalty, "frequency_penalty": req.frequency_penalty,
            "logit_bias": {int(k): v for k, v in req.logit_bias.items()} if req.logit_bias else None,
        }
        options = {k: v for k, v in wanted.items() if v is not None}
        # Echoed here rather than by llama-cpp-python, whose streams leave the prompt out.
        echoed = "" if not req.echo else prompt if isinstance(prompt, str) else model.detokenize(prompt).decode(
            "utf-8", "replace")
        out = model.create_completion(prompt, max_tokens=req.max_tokens, stream=stream, **options)
        if not stream:
            choice = cast(CreateCompletionResponse, out)["choices"][0]
            yield _Piece(echoed + choice["text"], choice["finish_reason"])
            return
        if echoed:
            yield _Piece(echoed)
        for chunk in cast(Iterator[CreateCompletionStreamResponse], out):
            part = chunk["choices"][0]
            if part["text"] or part["finish_reason"]:
                yield _Piece(part["text"], part["finish_reason"])

    def _embed(self, texts: list[str], model: str) -> tuple[list[list[float]], int]:
        embedder = self._embedder
        if embedder is None:
            raise UpstreamUnavailable("the embedding model is not loaded", backend=self.name, model=model)
        try:
            vectors, tokens = embedder.embed(texts, normalize=True, truncate=False, return_count=True)
        except ValueError as exc:
            if "exceed" in str(exc):  # "Requested tokens (N) exceed batch size of M": the input passes n_ctx
                raise UpstreamContextExceeded(f"an input is longer than the model's context: {exc}",
                                              backend=self.name, model=model) from None
            raise
        return cast(list[list[float]], vectors), int(tokens)

    def _pieces(self, call: Call, *, stream: bool) -> Generator[_Piece, None, None]:
        if call.prefix:
            yield from self._continue(call, stream)
            return
        model = cast(_Model, self._model)
        out = model.create_chat_completion(
            messages=_messages(call), stream=stream, response_format=self._format(call), **self._options(call)
        )
        if not stream:
            choice = cast(CreateChatCompletionResponse, out)["choices"][0]
            yield _Piece(choice["message"].get("content") or "", choice["finish_reason"])
            return
        for chunk in cast(Iterator[CreateChatCompletionStreamResponse], out):
            delta = chunk["choices"][0]
            text = cast(dict[str, Any], delta["delta"]).get("content") or ""
            if text or delta["finish_reason"]:
                yield _Piece(text, delta["finish_reason"])

    def _continue(self, call: Call, stream: bool) -> Generator[_Piece, None, None]:
        """Continue ``call.prefix`` as the start of the assistant's answer."""
        model, formatter = cast(_Model, self._model), self._formatter
        if formatter is None:
            raise UpstreamServerError(
                "model has no chat template to continue from", backend=self.name, model=call.upstream_model
            )
        rendered = formatter(messages=_messages(call))
        options = self._options(call)
        options["stop"] = [*options.get("stop", []), *_as_list(rendered.stop)]
        # No JSON grammar here: it would have to start a document the prefix has already begun.
        out = model.create_completion(rendered.prompt + (call.prefix or ""), stream=stream, **options)
        if not stream:
            choice = cast(CreateCompletionResponse, out)["choices"][0]
            yield _Piece(choice["text"], choice["finish_reason"])
            return
        for chunk in cast(Iterator[CreateCompletionStreamResponse], out):
            part = chunk["choices"][0]
            if part["text"] or part["finish_reason"]:
                yield _Piece(part["text"], part["finish_reason"])

    def _options(self, call: Call) -> dict[str, Any]:
        """Sampling options the client set; unset ones keep llama-cpp-python's defaults."""
        req = call.request
        wanted: dict[str, Any] = {
            "max_tokens": req.output_limit(),
            "temperature": req.temperature,
            "top_p": req.top_p,
            "seed": req.seed,
            "stop": req.stop_list() or None,
        }
        return {k: v for k, v in wanted.items() if v is not None and k not in call.drop}

    def _format(self, call: Call) -> ChatCompletionRequestResponseFormat | None:
        """``response_format`` as llama-cpp-python's JSON grammar support takes it."""
        fmt = call.request.response_format
        if not fmt or "response_format" in call.drop or fmt.get("type") not in ("json_object", "json_schema"):
            return None
        schema = (fmt.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            return {"type": "json_object", "schema": schema}
        return {"type": "json_object"}


# --- helpers ---------------------------------------------------------------------------


def _messages(call: Call) -> list[ChatCompletionRequestMessage]:
    """Text-only messages; a developer turn is a system turn to these templates."""
    out: list[dict[str, Any]] = []
    for m in call.request.messages:
        role = "system" if m.role == "developer" else m.role
        out.append({"role": role, "content": m.text()})
    return cast(list[ChatCompletionRequestMessage], out)


def _text_refusal(req: CompletionRequest) -> tuple[str, str] | None:
    """What of a text completion request this backend cannot do: (the parameter, what it does instead)."""
    if len(req.prompts) > 1:
        return "prompt", "complete one prompt per request"
    if req.choices > 1 or (req.best_of or 1) > 1:
        return ("n" if req.choices > 1 else "best_of"), "give one completion per request (n and best_of of 1)"
    if req.suffix:
        return "suffix", "do not fill in the middle (suffix)"
    if req.logprobs is not None:
        return "logprobs", "give no logprobs"
    if req.max_tokens == 0:
        return "max_tokens", "read max_tokens 0 as no limit; send at least 1"
    return None


def _formatter(model: _Model) -> Jinja2ChatFormatter | None:
    """The model's own chat template, as llama-cpp-python renders it, or None."""
    template = model.metadata.get("tokenizer.chat_template")
    if not template:
        return None

    def text(token: int) -> str:
        return model.detokenize([token], special=True).decode("utf-8", "replace") if token >= 0 else ""

    eos = model.token_eos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=text(eos),
        bos_token=text(model.token_bos()),
        add_generation_prompt=True,
        stop_token_ids=[eos],
    )


def _as_list(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # the cores this process may use, not the machine's
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
