"""Asking every model of a fleet the smallest real request, each once, concurrently.

A chat model gets one short user message and an answer of at most ``PROBE_TOKENS``
tokens, not streamed; an embedding model gets one short input. The request goes
through the model's adapter as an attempt of the gateway's does (the same ``Call``,
the parameters its backend cannot carry left out), so a failure is classified by the
adapter's own error reader into the one error tree, and passes the fleet's guard
(secrets out) before anything shows it. A model whose backend cannot take a request
(its key variable unset, its Python package not installed) is not asked at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from polyroute.adapters import Adapter, Call, adapter_class
from polyroute.attempts import requested_params
from polyroute.catalog import Catalog
from polyroute.cli.probe_hints import hint_for, skipped_hint
from polyroute.config import Config
from polyroute.config_embeddings import embedding_models
from polyroute.embeddings.dialects import dialect_of
from polyroute.embeddings.types import EmbedCall, EmbeddingRequest
from polyroute.errors import ConfigError, UpstreamBadResponse, UpstreamError, UpstreamTimeout
from polyroute.fleet import Fleet, ModelEntry
from polyroute.types import ChatRequest, Usage, make_usage, read_usage

PROBE_MESSAGE = "Reply with the word ok."
# The answer's limit. 1 would be cheapest, but OpenAI's GPT-5 family behind Azure and relays refuses an output
# limit below 16 ("integer_below_min_value", https://github.com/BerriAI/litellm/pull/26610), and a reasoning
# model may spend a limit of 1 on thinking alone: 16 is what every provider takes.
PROBE_TOKENS = 16
# A bound on the prompt as billed: the message above and the tokens a chat template wraps around it.
PROMPT_BOUND = 50


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


@dataclass
class ProbePlan:
    """The models to ask, in the order shown, and the rows of those that cannot be asked."""

    fleet: Fleet
    names: list[str]
    # Models of a backend whose Python package is missing: their rows, made without building the backend.
    unbuilt: dict[str, ProbeResult] = field(default_factory=dict)

    @classmethod
    def build(cls, config: Config, catalog: Catalog, wanted: Sequence[str]) -> ProbePlan:
        """The fleet as ``serve`` builds it, less the backends whose package is not installed."""
        missing: dict[str, str] = {}
        for name, backend in config.backends.items():
            try:
                adapter_class(backend)
            except ConfigError as exc:
                missing[name] = exc.problems[0]
        embedders = embedding_models(config, catalog)
        unbuilt = {
            name: ProbeResult(name, mc.backend, mc.upstream or name, "embeddings" if name in embedders else "chat",
                              config.backends[mc.backend].effective_locality() == "remote", "skipped",
                              message=missing[mc.backend], hint=skipped_hint(missing[mc.backend], config, mc.backend))
            for name, mc in config.models.items() if name in wanted and mc.backend in missing
        }
        if missing:
            # Routes are not asked, and one naming a model left out here would not build.
            config = config.model_copy(update={
                "backends": {n: b for n, b in config.backends.items() if n not in missing},
                "models": {n: m for n, m in config.models.items() if m.backend not in missing},
                "routes": {},
            })
        return cls(Fleet.build(config, catalog), list(wanted), unbuilt)

    def to_ask(self) -> list[ModelEntry]:
        return [self.fleet.models[n] for n in self.names if n not in self.unbuilt]


class Asker:
    """Asks the models of one plan, ``concurrency`` at a time, each within its timeout."""

    def __init__(self, plan: ProbePlan, timeout: float | None, concurrency: int) -> None:
        self.plan = plan
        self.fleet = plan.fleet
        self.timeout = timeout
        self.gate = asyncio.Semaphore(concurrency)
        # One start (pools opened, weights loaded) per backend, shared by its models.
        self.starts: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> list[ProbeResult]:
        try:
            asked = await asyncio.gather(*(self._gated(e) for e in self.plan.to_ask()))
        finally:
            await self.fleet.aclose()
        by_name = {r.model: r for r in (*asked, *self.plan.unbuilt.values())}
        return [by_name[n] for n in self.plan.names]

    async def _gated(self, entry: ModelEntry) -> ProbeResult:
        async with self.gate:
            return await self.ask(entry)

    def _start(self, adapter: Adapter) -> asyncio.Task[None]:
        task = self.starts.get(adapter.name)
        if task is None:
            task = self.starts[adapter.name] = asyncio.ensure_future(adapter.start())
        return task

    async def ask(self, entry: ModelEntry) -> ProbeResult:
        adapter = self.fleet.adapters[entry.backend]
        row = ProbeResult(entry.name, entry.backend, entry.upstream, "embeddings" if entry.embeds else "chat",
                          entry.locality == "remote", "ok")
        config = self.fleet.config
        if (why := adapter.unready_reason()) is not None:  # a key variable unset: nothing is sent
            return replace(row, result="skipped", message=why, hint=skipped_hint(why, config, entry.backend))
        try:
            await self._start(adapter)
        except ConfigError as exc:  # weights that will not load
            return replace(row, result="not_started", message=exc.message,
                         hint=hint_for("not_started", entry, config, self.fleet.catalog))
        limit = self.timeout or adapter.config.timeout
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                usage = await (self._embed(adapter, entry, limit) if entry.embeds else
                               self._chat(adapter, entry, limit))
        except TimeoutError:
            err: UpstreamError = UpstreamTimeout(f"no answer within {limit:g}s", backend=entry.backend,
                                                 model=entry.name)
        except UpstreamError as exc:
            err = exc
        else:
            return replace(row, latency_ms=_ms(started), usage=usage,
                         cost_usd=entry.cost(usage) if usage is not None and entry.price_known else None)
        err.backend, err.model = err.backend or entry.backend, entry.name
        err = self.fleet.guard(err)  # the provider's words, secrets out, as the gateway keeps them
        return replace(row, result=err.outcome, message=" ".join(err.message.split()), latency_ms=_ms(started),
                     upstream_status=err.upstream_status,
                     hint=hint_for(err.outcome, entry, config, self.fleet.catalog))

    async def _chat(self, adapter: Adapter, entry: ModelEntry, limit: float) -> Usage | None:
        req = ChatRequest.from_json({"model": entry.name, "max_tokens": PROBE_TOKENS,
                                     "messages": [{"role": "user", "content": PROBE_MESSAGE}]})
        drop = adapter.unsupported(requested_params(req), entry.upstream)
        resp = await adapter.complete(Call(req, entry.upstream, drop, timeout=limit))
        return read_usage(resp.get("usage"))

    async def _embed(self, adapter: Adapter, entry: ModelEntry, limit: float) -> Usage | None:
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

