"""Asking every model of a config the smallest real request, each once, concurrently.

The asking of one model is ``polyroute.probing.ask``'s; here is the plan (the fleet as
``serve`` builds it, less the backends whose Python package is not installed, whose
models are shown skipped) and the asker that starts each backend once and asks
``concurrency`` models at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from polyroute.adapters import Adapter, adapter_class
from polyroute.catalog import Catalog
from polyroute.config import Config
from polyroute.config_embeddings import embedding_models
from polyroute.errors import ConfigError
from polyroute.fleet import Fleet, ModelEntry
from polyroute.probing.ask import PROBE_MESSAGE, PROBE_TOKENS, PROMPT_BOUND, ProbeResult, ask, worst_cost
from polyroute.probing.hints import Hints

__all__ = ["PROBE_MESSAGE", "PROBE_TOKENS", "PROMPT_BOUND", "Asker", "ProbePlan", "ProbeResult", "worst_cost"]


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
        hints = Hints(config, catalog)
        unbuilt = {
            name: ProbeResult(name, mc.backend, mc.upstream or name, "embeddings" if name in embedders else "chat",
                              config.backends[mc.backend].effective_locality() == "remote", "skipped",
                              message=missing[mc.backend], hint=hints.skipped(missing[mc.backend], mc.backend))
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
        self.hints = Hints(self.fleet.config, self.fleet.catalog)
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
        return (await ask(self.fleet, entry, self.hints, self.timeout, self._start)).result
