"""Run suites against models of the fleet, one model at a time, failover off.

Each item goes to one model through the gateway's own failover and adapters, with a
route of one candidate and one attempt: a failure is that model's failure, never
hidden by another model answering. A rate limit (``UpstreamRateLimited``) waits
its ``Retry-After``, else an exponential backoff with jitter, and tries again, a
bounded number of times. ``max_cost`` is checked before each item: the spend so
far, plus what the items in flight may cost, plus this item's estimate (its
prompt's length and the model's price, at the suite's ``max_tokens``) must stay
within the cap, or the run stops there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from polyroute.attempts import Report, estimate_tokens
from polyroute.config import RouteConfig
from polyroute.errors import AllAttemptsFailed, ConfigError, PolyrouteError, UnknownModel, UpstreamRateLimited
from polyroute.evals.scorers import score
from polyroute.evals.store import Result, ResultStore
from polyroute.evals.suites import Item, Suite
from polyroute.failover import Failover
from polyroute.fleet import Fleet, ModelEntry, Route
from polyroute.types import ChatRequest, make_usage

# max_tokens when neither the suite nor the command sets one.
DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True, slots=True)
class RunSettings:
    concurrency: int = 1
    limit: int | None = None
    max_cost: float | None = None
    # Overrides every suite's own max_tokens.
    max_tokens: int | None = None
    seed: int = 0
    # Rate limits: tries after the first, and the bounds of the exponential backoff (seconds).
    rate_limit_retries: int = 6
    backoff_base: float = 1.0
    backoff_cap: float = 60.0


class Progress(Protocol):
    def begin(self, model: str, suite: str, total: int, done: int) -> None: ...

    def advance(self, *, failed: bool, cost_usd: float) -> None: ...

    def end(self) -> None: ...


class NoProgress:
    def begin(self, model: str, suite: str, total: int, done: int) -> None:
        pass

    def advance(self, *, failed: bool, cost_usd: float) -> None:
        pass

    def end(self) -> None:
        pass


@dataclass(slots=True)
class RunSummary:
    answered: int = 0
    failed: int = 0
    skipped: int = 0
    cost_usd: float = 0.0
    # Set when --max-cost stopped the run: the item it would not start.
    stopped_at: str | None = None
    rate_limit_waits: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _Budget:
    cap: float | None
    spent: float = 0.0
    reserved: float = 0.0
    stopped: bool = False

    def admit(self, estimate: float) -> bool:
        if self.stopped:
            return False
        if self.cap is not None and self.spent + self.reserved + estimate > self.cap:
            self.stopped = True
            return False
        self.reserved += estimate
        return True

    def settle(self, estimate: float, cost: float) -> None:
        self.reserved -= estimate
        self.spent += cost


class Runner:
    def __init__(
        self,
        fleet: Fleet,
        failover: Failover,
        store: ResultStore,
        settings: RunSettings,
        progress: Progress | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.fleet = fleet
        self.failover = failover
        self.store = store
        self.settings = settings
        self.progress = progress or NoProgress()
        self.sleep = sleep
        self.rng = rng or random.Random(settings.seed)
        self.summary = RunSummary()
        self._budget = _Budget(settings.max_cost)

    def targets(self, names: list[str]) -> list[ModelEntry]:
        return targets(self.fleet, names, self.settings)

    async def run(self, suites: list[Suite], models: list[str]) -> RunSummary:
        for entry in self.targets(models):
            for suite in suites:
                if self._budget.stopped:
                    return self.summary
                await self._suite(entry, suite)
        return self.summary

    async def _suite(self, entry: ModelEntry, suite: Suite) -> None:
        sample = suite.sample(self.settings.limit, self.settings.seed)
        done = self.store.done(entry.name, suite.name)
        todo = [i for i in sample if i.id not in done]
        self.summary.skipped += len(sample) - len(todo)
        self.progress.begin(entry.name, suite.name, len(sample), len(sample) - len(todo))
        route = Route(entry.name, RouteConfig(models=[entry.name], max_attempts=1), (entry,))
        queue = iter(todo)
        try:
            workers = [self._worker(entry, route, suite, queue) for _ in range(max(1, self.settings.concurrency))]
            await asyncio.gather(*workers)
        finally:
            self.progress.end()

    async def _worker(self, entry: ModelEntry, route: Route, suite: Suite, queue: Iterator[Item]) -> None:
        max_tokens = self.settings.max_tokens or suite.max_tokens or DEFAULT_MAX_TOKENS
        for item in queue:
            estimate = entry.cost(make_usage(estimate_tokens(item.chars()), max_tokens))
            if not self._budget.admit(estimate):
                if self.summary.stopped_at is None:
                    self.summary.stopped_at = f"{entry.name}/{suite.name}/{item.id}"
                return
            result = await self._one(entry, route, suite, item, max_tokens)
            self._budget.settle(estimate, result.cost_usd)
            self.store.put(result)
            self.summary.cost_usd += result.cost_usd
            if result.error is None:
                self.summary.answered += 1
            else:
                self.summary.failed += 1
            self.progress.advance(failed=result.error is not None, cost_usd=result.cost_usd)

    async def _one(self, entry: ModelEntry, route: Route, suite: Suite, item: Item, max_tokens: int) -> Result:
        req = ChatRequest.from_json({"model": entry.name, "messages": list(item.messages),
                                     "max_tokens": max_tokens, "temperature": 0, "seed": self.settings.seed})
        cost = 0.0
        for attempt in range(self.settings.rate_limit_retries + 1):
            report = Report(route=entry.name)
            started = time.monotonic()
            try:
                resp = await self.failover.complete(route, [entry], req, report)
            except PolyrouteError as exc:
                cost += report.cost_usd
                limited = _rate_limit(exc)
                if limited is None or attempt == self.settings.rate_limit_retries:
                    return self._failed(entry, suite, item, exc, cost)
                wait = self._backoff(limited, attempt)
                self.summary.rate_limit_waits.append(wait)
                await self.sleep(wait)
                continue
            latency = time.monotonic() - started
            answer = str(resp["choices"][0]["message"].get("content") or "") if resp.get("choices") else ""
            return scored(Result(
                model=entry.name, suite=suite.name, item=item.id, category=item.category, lang=suite.lang,
                suite_kind=suite.kind, scorer=item.expect.kind, answer=answer, score=None, refused=None,
                should_refuse=bool(item.expect.value) if item.expect.kind == "refuse" else None,
                extracted=None, prompt_tokens=report.usage["prompt_tokens"],
                completion_tokens=report.usage["completion_tokens"], cost_usd=cost + report.cost_usd,
                latency_s=latency,
            ), item)
        raise AssertionError("unreachable: the last attempt returns")

    def _backoff(self, err: UpstreamRateLimited, attempt: int) -> float:
        s = self.settings
        if err.retry_after is not None and err.retry_after >= 0:
            return min(float(err.retry_after), s.backoff_cap)
        # Full jitter: spreads the retries of concurrent workers.
        return min(s.backoff_cap, s.backoff_base * 2.0**attempt) * (0.5 + self.rng.random() / 2)

    def _failed(self, entry: ModelEntry, suite: Suite, item: Item, exc: PolyrouteError, cost: float) -> Result:
        # A failure counts against the model: wrong when the item has a right answer.
        known = item.expect.kind != "choice" or item.expect.value is not None
        return Result(
            model=entry.name, suite=suite.name, item=item.id, category=item.category, lang=suite.lang,
            suite_kind=suite.kind, scorer=item.expect.kind, answer=None,
            score=0.0 if known and item.expect.kind != "refuse" else None, refused=None,
            should_refuse=bool(item.expect.value) if item.expect.kind == "refuse" else None,
            extracted=None, prompt_tokens=0, completion_tokens=0, cost_usd=cost, latency_s=0.0,
            error=f"{type(exc).__name__}: {exc.message}"[:500],
        )


def scored(result: Result, item: Item) -> Result:
    """The result with its answer scored against the item by the current scorers."""
    s = score(item.expect, result.answer or "")
    return dataclasses.replace(result, score=None if s.correct is None else float(s.correct),
                               refused=s.refused, extracted=s.extracted)


def rescore(store: ResultStore, suite: Suite) -> int:
    """Score the stored answers of a suite again (after the scorers changed), without asking anew.

    Returns how many results changed. Failed items and items no longer in the suite are left as they are.
    """
    items = {i.id: i for i in suite.items}
    changed = 0
    for old in list(store.results(suites=[suite.name])):
        item = items.get(old.item)
        if item is None or old.error is not None:
            continue
        new = scored(old, item)
        if (new.score, new.refused, new.extracted) != (old.score, old.refused, old.extracted):
            store.put(new)
            changed += 1
    return changed


def targets(fleet: Fleet, names: list[str], settings: RunSettings) -> list[ModelEntry]:
    """The models named, checked before anything runs."""
    out: list[ModelEntry] = []
    for name in names:
        entry = fleet.models.get(name)
        if entry is None:
            known = ", ".join(fleet.models) or "none"
            raise UnknownModel(f"'{name}' is not a model of this fleet (routes are not evaluated); "
                               f"models: {known}", param="models")
        if settings.max_cost is not None and not entry.price_known:
            raise ConfigError(f"the price of model '{name}' is not known, so --max-cost cannot bound it: "
                              f"set models.{name}.input_per_mtok and output_per_mtok", source=fleet.config.source)
        out.append(entry)
    return out


def _rate_limit(exc: PolyrouteError) -> UpstreamRateLimited | None:
    if isinstance(exc, UpstreamRateLimited):
        return exc
    if isinstance(exc, AllAttemptsFailed):
        return next((e for e in exc.errors if isinstance(e, UpstreamRateLimited)), None)
    return None
