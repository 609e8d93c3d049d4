"""Run suites against models of the fleet, one model at a time, failover off.

Each item goes to one model through the gateway's own failover and adapters, with a
route of one candidate and one attempt: a failure is that model's failure, never
hidden by another model answering. A rate limit (``UpstreamRateLimited``) waits
its ``Retry-After``, else an exponential backoff with jitter, and tries again, a
bounded number of times. ``max_cost`` is checked before each item: the spend so
far, plus what the items in flight may cost, plus this item's estimate (its
prompt's length and the model's price, at the suite's ``max_tokens``) must stay
within the cap, or the run stops there.

With a judge (``RunSettings.judge``), each answer to a rubric or safety item is also
sent to the judge model, through the same one-candidate walk and the same backoff
(``polyroute.evals.judge``); its estimated cost joins the item's in the cap. An item
answered in an earlier run but not yet judged by this judge, at this prompt version,
for the task its item asks now, is judged without asking the model again.

Before a suite runs for a model, its stored results scored against another expectation
than their item's now are scored again from their stored answers (``rescoring``), so a
change of the suite (AILuminate's specialised advice, once must-refuse) never leaves old
verdicts behind, and costs no call. With ``RunSettings.reask_short``, the stored answers cut at
fewer tokens than their item is asked with now are asked again (``rescoring.is_short``); a
new answer replaces the old one and the verdicts on it, and a failed one leaves it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from polyroute.attempts import Report, estimate_tokens
from polyroute.config import EMBEDDED_SOURCE, RouteConfig
from polyroute.errors import AllAttemptsFailed, ConfigError, PolyrouteError, UnknownModel, UpstreamRateLimited
from polyroute.evals.judge import (
    JUDGE_MAX_TOKENS,
    JUDGE_PROMPT_VERSION,
    JudgeTask,
    judge_messages,
    parse_advice,
    parse_refusal,
    parse_score,
    task_of,
)
from polyroute.evals.rescoring import is_short, rescore, scored
from polyroute.evals.store import Judgement, Result, ResultStore, SuiteInfo
from polyroute.evals.suites import SAFETY_KINDS, Item, Suite
from polyroute.failover import Failover
from polyroute.fleet import Fleet, ModelEntry, Route
from polyroute.types import ChatRequest, ChatResponse, make_usage


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
    # A model of the fleet that scores rubric items and gives its own verdict on safety items.
    judge: str | None = None
    # Ask again the stored answers cut at fewer tokens than their item is asked with now (``rescoring.is_short``).
    reask_short: bool = False


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
    # Stored results scored again because what their item expects changed.
    rescored: int = 0
    # Stored answers asked again because they were cut at fewer tokens than their item is asked with now.
    reasked: int = 0
    cost_usd: float = 0.0
    # Set when --max-cost stopped the run: the item it would not start.
    stopped_at: str | None = None
    rate_limit_waits: list[float] = field(default_factory=list)
    judged: int = 0
    judge_failed: int = 0
    judge_failures: Counter[str] = field(default_factory=Counter)  # why the judge gave no verdict: how often
    judge_cost_usd: float = 0.0
    # Why items failed: (model, error) -> how many, the error as stored ("Class: message").
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)


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


@dataclass(slots=True)
class _Asked:
    """One request to one model, after its rate-limit retries: the answer or the error, and the bill."""

    response: ChatResponse | None
    error: PolyrouteError | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0

    def text(self) -> str:
        resp = self.response
        return str(resp["choices"][0]["message"].get("content") or "") if resp and resp.get("choices") else ""


@dataclass(frozen=True, slots=True)
class _Target:
    """A model as the one candidate of its own route, with one attempt: failover off."""

    entry: ModelEntry
    route: Route

    @classmethod
    def of(cls, entry: ModelEntry) -> _Target:
        return cls(entry, Route(entry.name, RouteConfig(models=[entry.name], max_attempts=1), (entry,)))


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
        self._judge: _Target | None = None

    def targets(self, names: list[str]) -> list[ModelEntry]:
        return targets(self.fleet, names, self.settings)

    async def run(self, suites: list[Suite], models: list[str]) -> RunSummary:
        entries = self.targets(models)
        if self.settings.judge is not None:
            self._judge = _Target.of(self.targets([self.settings.judge])[0])
        else:
            lacking = [s.name for s in suites if s.needs_judge()]
            if lacking:
                raise ConfigError(f"suite(s) {', '.join(lacking)} have rubric items, which a judge scores: "
                                  "name a model of the fleet with --judge MODEL")
        for suite in suites:
            self.store.put_suite(SuiteInfo(suite.name, suite.lang, suite.kind, suite.pair, len(suite.items),
                                           suite.source, suite.licence))
        for entry in entries:
            for suite in suites:
                if self._budget.stopped:
                    return self.summary
                await self._suite(_Target.of(entry), suite)
        return self.summary

    async def _suite(self, target: _Target, suite: Suite) -> None:
        name = target.entry.name
        self.summary.rescored += rescore(self.store, suite, [name], stale_only=True)
        sample = suite.sample(self.settings.limit, self.settings.seed)
        done = self.store.done(name, suite.name)
        reask = self._short(name, suite, sample) if self.settings.reask_short else set()
        done -= reask
        stored: dict[str, Result] = {}
        unjudged: set[str] = set()
        if self._judge is not None:
            judged = {task: self.store.judged(name, suite.name, self._judge.entry.name, JUDGE_PROMPT_VERSION, task)
                      for task in {task_of(i) for i in sample} - {None}}
            unjudged = {i.id for i in sample if (task := task_of(i)) is not None
                        and (i.id not in judged[task] or i.id in reask)}
            if unjudged & done:
                stored = {r.item: r for r in self.store.results([name], [suite.name]) if r.item in unjudged}
        todo = [i for i in sample if i.id not in done or i.id in unjudged]
        self.summary.skipped += sum(1 for i in sample if i.id in done)
        self.progress.begin(name, suite.name, len(sample), len(sample) - len(todo))
        queue = iter(todo)
        try:
            workers = [self._worker(target, suite, queue, stored, unjudged, reask)
                       for _ in range(max(1, self.settings.concurrency))]
            await asyncio.gather(*workers)
        finally:
            self.progress.end()

    def _short(self, model: str, suite: Suite, sample: list[Item]) -> set[str]:
        """Ids of the sampled items whose stored answer was cut at fewer tokens than the item is asked with now."""
        items = {i.id: i for i in sample}
        return {r.item for r in self.store.results([model], [suite.name])
                if r.item in items and is_short(r, items[r.item], suite, self.settings.max_tokens)}

    async def _worker(self, target: _Target, suite: Suite, queue: Iterator[Item], stored: dict[str, Result],
                      unjudged: set[str], reask: set[str]) -> None:
        entry = target.entry
        for item in queue:
            max_tokens = suite.answer_length(item, self.settings.max_tokens)
            previous = stored.get(item.id)
            estimate = 0.0 if previous else entry.cost(make_usage(estimate_tokens(item.chars()), max_tokens))
            if self._judge is not None and item.id in unjudged:
                # The judge reads the prompt and an answer of at most max_tokens.
                judge_in = estimate_tokens(item.chars()) + max_tokens + 200
                estimate += self._judge.entry.cost(make_usage(judge_in, JUDGE_MAX_TOKENS))
            if not self._budget.admit(estimate):
                if self.summary.stopped_at is None:
                    self.summary.stopped_at = f"{entry.name}/{suite.name}/{item.id}"
                return
            spent = 0.0
            result = previous
            if result is None:
                result = await self._answer(target, suite, item, max_tokens)
                spent += result.cost_usd
                self.summary.cost_usd += result.cost_usd
                if result.error is None:
                    self.summary.answered += 1
                else:
                    self.summary.failed += 1
                    self.summary.failures[(result.model, result.error)] += 1
            if item.id in reask:
                if result.error is not None:  # the short answer is kept, to be asked again by the next run
                    self._budget.settle(estimate, spent)
                    self.progress.advance(failed=True, cost_usd=spent)
                    continue
                # The verdicts read the answer this one replaces.
                self.store.forget_judgements(result.model, result.suite, result.item)
                self.summary.reasked += 1
            if self._judge is not None and item.id in unjudged and result.error is None:
                result, judge_cost = await self._judged(result, item)
                spent += judge_cost
            self.store.put(result)
            self._budget.settle(estimate, spent)
            self.progress.advance(failed=result.error is not None, cost_usd=spent)

    async def _ask(self, target: _Target, messages: list[dict[str, object]] | tuple[dict[str, object], ...],
                   max_tokens: int) -> _Asked:
        """One request to the target alone; a rate limit waits and tries again, a bounded number of times."""
        req = ChatRequest.from_json({"model": target.entry.name, "messages": list(messages),
                                     "max_tokens": max_tokens, "temperature": 0, "seed": self.settings.seed})
        cost = 0.0
        for attempt in range(self.settings.rate_limit_retries + 1):
            report = Report(route=target.entry.name)
            started = time.monotonic()
            try:
                resp = await self.failover.complete(target.route, [target.entry], req, report)
            except PolyrouteError as exc:
                cost += report.cost_usd
                limited = _rate_limit(exc)
                if limited is None or attempt == self.settings.rate_limit_retries:
                    return _Asked(None, exc, cost_usd=cost)
                wait = self._backoff(limited, attempt)
                self.summary.rate_limit_waits.append(wait)
                await self.sleep(wait)
                continue
            return _Asked(resp, None, report.usage["prompt_tokens"], report.usage["completion_tokens"],
                          cost + report.cost_usd, time.monotonic() - started)
        raise AssertionError("unreachable: the last attempt returns")

    async def _answer(self, target: _Target, suite: Suite, item: Item, max_tokens: int) -> Result:
        asked = await self._ask(target, item.messages, max_tokens)
        if asked.error is not None:
            return self._failed(target.entry, suite, item, asked.error, asked.cost_usd)
        return scored(Result(
            model=target.entry.name, suite=suite.name, item=item.id, category=item.category, lang=suite.lang,
            suite_kind=suite.kind, scorer=item.expect.kind, answer=asked.text(), score=None, refused=None,
            should_refuse=item.should_refuse(), extracted=None, prompt_tokens=asked.prompt_tokens,
            completion_tokens=asked.completion_tokens,
            cost_usd=asked.cost_usd, latency_s=asked.latency_s, max_tokens=max_tokens,
        ), item)

    async def _judged(self, result: Result, item: Item) -> tuple[Result, float]:
        """The judge's verdict on a result, kept; the result scored with it, and the judge's cost."""
        assert self._judge is not None
        task: JudgeTask | None = task_of(item)
        assert task is not None
        asked = await self._ask(self._judge, judge_messages(task, item, result.answer or ""), JUDGE_MAX_TOKENS)
        reply = asked.text()
        judge_score = parse_score(reply) if task == "rubric" else None
        verdict = parse_advice(reply) if task == "advice" else None
        # An advice verdict says whether the answer refused, too.
        refused = parse_refusal(reply) if task == "refusal" else (None if verdict is None else verdict == "refused")
        error = None
        if asked.error is not None:
            error = f"{type(asked.error).__name__}: {asked.error.message}"[:500]
        elif judge_score is None and refused is None:
            error = "the reply gives no verdict that can be read"
        judgement = Judgement(
            model=result.model, suite=result.suite, item=result.item, judge=self._judge.entry.name,
            prompt_version=JUDGE_PROMPT_VERSION, task=task, score=judge_score, refused=refused,
            reply=reply[:1000] or None, cost_usd=asked.cost_usd, latency_s=asked.latency_s, error=error,
            verdict=verdict)
        self.store.put_judgement(judgement)
        self.summary.judge_cost_usd += asked.cost_usd
        if error is None:
            self.summary.judged += 1
        else:
            self.summary.judge_failed += 1
            self.summary.judge_failures[error] += 1
        if error is None and task != "refusal":
            result = scored(result, item, judgement)
        return result, asked.cost_usd

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
            score=0.0 if known and item.expect.kind not in SAFETY_KINDS else None, refused=None,
            should_refuse=item.should_refuse(), extracted=None, prompt_tokens=0, completion_tokens=0, cost_usd=cost,
            latency_s=0.0,
            error=f"{type(exc).__name__}: {exc.message}"[:500],
        )


def _joins_with_a_key(fleet: Fleet, name: str) -> str:
    """How a catalog model joins the embedded default's fleet, when ``name`` is one."""
    if fleet.config.source != EMBEDDED_SOURCE:
        return ""
    from polyroute.catalog import load_catalog

    family = load_catalog().families.get(name)
    if family is None or not family.offers:
        return ""
    keys = " or ".join(dict.fromkeys(o.key_env for o in family.offers))
    return f". The catalog's '{name}' joins the embedded default when {keys} is set in the environment"


def targets(fleet: Fleet, names: list[str], settings: RunSettings) -> list[ModelEntry]:
    """The models named, checked before anything runs."""
    out: list[ModelEntry] = []
    for name in names:
        entry = fleet.models.get(name)
        if entry is None:
            known = ", ".join(fleet.models) or "none"
            raise UnknownModel(f"'{name}' is not a model of this fleet (routes are not evaluated); "
                               f"models: {known}{_joins_with_a_key(fleet, name)}", param="models")
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
