"""Asking one model the smallest real request, through its own adapter.

A chat model gets one short user message and an answer of at most ``PROBE_TOKENS``
tokens, not streamed; an embedding model gets one short input. The request goes
through the model's adapter as an attempt of the gateway's does (the same ``Call``,
the parameters its backend cannot carry left out), so a failure is classified by the
adapter's own error reader into the one error tree, and passes the fleet's guard
(secrets out) before anything shows it. A model whose backend cannot take a request
(its key variable unset) is not asked at all.

Nothing here prints, and nothing here tells a breaker: ``Asked`` carries the error as
the adapter raised it, for a caller that does (``polyroute.probing.on_demand``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from polyroute.adapters import Adapter, Call
from polyroute.attempts import requested_params
from polyroute.embeddings.dialects import dialect_of
from polyroute.embeddings.types import EmbedCall, EmbeddingRequest
from polyroute.errors import ConfigError, UpstreamBadResponse, UpstreamError, UpstreamTimeout
from polyroute.fleet import Fleet, ModelEntry
from polyroute.probing.hints import Hints, words
from polyroute.redact import Redactor
from polyroute.types import ChatRequest, Usage, make_usage, read_usage

PROBE_MESSAGE = "Reply with the word ok."
# The answer's limit. 1 would be cheapest, but OpenAI's GPT-5 family behind Azure and relays refuses an output
# limit below 16 ("integer_below_min_value", https://github.com/BerriAI/litellm/pull/26610), and a reasoning
# model may spend a limit of 1 on thinking alone: 16 is what every provider takes.
PROBE_TOKENS = 16
# A bound on the prompt as billed: the message above and the tokens a chat template wraps around it.
PROMPT_BOUND = 50

# Results that mean nothing was sent.
NOT_SENT = frozenset({"skipped", "not_started"})


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one model answered the probe, or why it was not asked."""

    model: str
    backend: str
    upstream: str
    kind: str  # "chat" or "embeddings"
    paid: bool  # served remotely: the provider bills the probe
    result: str  # "ok", "skipped", "not_started", or the failure's outcome in the error tree
    message: str = ""  # the provider's words (redacted), or why the model was not asked
    hint: str = ""  # what to do about it
    upstream_status: int | None = None
    latency_ms: float | None = None
    usage: Usage | None = None
    cost_usd: float | None = None

    def as_json(self, redact: Redactor) -> dict[str, Any]:
        """The result with the field names ``polyroute probe --json`` and ``POST /admin/probe`` keep stable;
        ``redact`` is the last guard before text leaves the process."""
        usage = self.usage
        return {
            "model": self.model,
            "backend": self.backend,
            "upstream": self.upstream,
            "kind": self.kind,
            "paid": self.paid,
            "result": self.result,
            "words": words(self.result),
            "upstream_status": self.upstream_status,
            "latency_ms": self.latency_ms,
            "prompt_tokens": usage["prompt_tokens"] if usage else None,
            "completion_tokens": usage["completion_tokens"] if usage else None,
            "cost_usd": self.cost_usd,
            "message": redact.thoroughly(self.message) or None,
            "hint": redact.thoroughly(self.hint) or None,
        }


@dataclass(frozen=True, slots=True)
class Asked:
    """One model asked: the result to show, and what a breaker would be told."""

    result: ProbeResult
    # The failure as the adapter raised it, guarded; None when the model answered or was not asked.
    error: UpstreamError | None = None
    started: float = 0.0  # when the request went (time.monotonic()); 0.0 when nothing was sent

    @property
    def sent(self) -> bool:
        return self.result.result not in NOT_SENT


def blank(entry: ModelEntry) -> ProbeResult:
    """The row of ``entry`` before it is asked."""
    return ProbeResult(entry.name, entry.backend, entry.upstream, "embeddings" if entry.embeds else "chat",
                       entry.locality == "remote", "ok")


async def ask(fleet: Fleet, entry: ModelEntry, hints: Hints, timeout: float | None = None,
              start: Callable[[Adapter], Awaitable[None]] | None = None) -> Asked:
    """Ask ``entry`` once, within ``timeout`` (default: its backend's); ``start`` readies its adapter first
    (pools opened, weights loaded) where nothing has, as in ``polyroute probe``."""
    adapter = fleet.adapters[entry.backend]
    row = blank(entry)
    if (why := adapter.unready_reason()) is not None:  # a key variable unset: nothing is sent
        return Asked(replace(row, result="skipped", message=why, hint=hints.skipped(why, entry.backend)))
    if start is not None:
        try:
            await start(adapter)
        except ConfigError as exc:  # weights that will not load
            return Asked(replace(row, result="not_started", message=exc.message,
                                 hint=hints.failed("not_started", entry)))
    limit = timeout or adapter.config.timeout
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            usage = await (_embed(adapter, entry, limit) if entry.embeds else _chat(adapter, entry, limit))
    except TimeoutError:
        err: UpstreamError = UpstreamTimeout(f"no answer within {limit:g}s", backend=entry.backend,
                                             model=entry.name)
    except UpstreamError as exc:
        err = exc
    else:
        return Asked(replace(row, latency_ms=_ms(started), usage=usage,
                             cost_usd=entry.cost(usage) if usage is not None and entry.price_known else None),
                     started=started)
    err.backend, err.model = err.backend or entry.backend, entry.name
    err = fleet.guard(err)  # the provider's words, secrets out, as the gateway keeps them
    return Asked(replace(row, result=err.outcome, message=" ".join(err.message.split()), latency_ms=_ms(started),
                         upstream_status=err.upstream_status, hint=hints.failed(err.outcome, entry)),
                 err, started)


async def _chat(adapter: Adapter, entry: ModelEntry, limit: float) -> Usage | None:
    req = ChatRequest.from_json({"model": entry.name, "max_tokens": PROBE_TOKENS,
                                 "messages": [{"role": "user", "content": PROBE_MESSAGE}]})
    drop = adapter.unsupported(requested_params(req), entry.upstream)
    resp = await adapter.complete(Call(req, entry.upstream, drop, timeout=limit))
    return read_usage(resp.get("usage"))


async def _embed(adapter: Adapter, entry: ModelEntry, limit: float) -> Usage | None:
    req = EmbeddingRequest.from_json({"model": entry.name, "input": PROBE_MESSAGE})
    got = await adapter.embed(EmbedCall(dialect_of(adapter).request(req), entry.upstream, timeout=limit))
    length = len(got.vectors[0]) if got.vectors else 0
    if entry.dimensions is not None and length != entry.dimensions:
        # As the gateway's walk refuses it: vectors of another length are another model's.
        raise UpstreamBadResponse(f"answered vectors of {length} dimensions, not {entry.dimensions} (family "
                                  f"{entry.family}'s)", backend=entry.backend, model=entry.name)
    return None if got.prompt_tokens is None else make_usage(got.prompt_tokens, 0)


def worst_cost(entry: ModelEntry) -> float | None:
    """The most one probe of ``entry`` can cost at its list prices; None when its price is unknown."""
    if not entry.price_known:
        return None
    answer = 0 if entry.embeds else PROBE_TOKENS
    return (PROMPT_BOUND * entry.input_per_mtok + answer * entry.output_per_mtok) / 1_000_000


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
