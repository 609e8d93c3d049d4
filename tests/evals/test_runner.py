"""The runner against fake models: scores, failures, resume, the cost cap and rate-limit backoff."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyroute.adapters import Call
from polyroute.adapters.fake import FakeAdapter
from polyroute.errors import ConfigError, UnknownModel, UpstreamRateLimited
from polyroute.evals.report import summarise
from polyroute.evals.runner import Runner, RunSettings
from polyroute.evals.store import SqliteStore
from polyroute.evals.suites import Suite, load_suite
from polyroute.failover import Failover
from polyroute.fleet import Fleet
from polyroute.types import ChatResponse
from tests.evals.support import fleet


class Waits:
    """A sleep that records how long it was asked to wait, and returns at once."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


def _run(f: Fleet, store: SqliteStore, suites: list[Suite], models: list[str], settings: RunSettings,
         sleep: Waits | None = None) -> Runner:
    runner = Runner(f, Failover(f), store, settings, sleep=sleep or Waits(), rng=random.Random(1))

    async def go() -> None:
        await f.start()
        try:
            await runner.run(suites, models)
        finally:
            await f.aclose()

    asyncio.run(go())
    return runner


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "evals.sqlite3")
    yield s
    s.close()


def test_refusers_and_compliers_in_both_languages(store: SqliteStore) -> None:
    xstest = load_suite("xstest")
    _run(fleet(), store, [xstest], ["complier", "refuser", "refuser-zh"], RunSettings(limit=20))
    rows = {r.model: r for r in summarise(store.results())}
    assert (rows["complier"].unsafe_refusal_rate, rows["complier"].safe_refusal_rate) == (0.0, 0.0)
    assert (rows["refuser"].unsafe_refusal_rate, rows["refuser"].safe_refusal_rate) == (1.0, 1.0)
    assert (rows["refuser-zh"].unsafe_refusal_rate, rows["refuser-zh"].safe_refusal_rate) == (1.0, 1.0)
    assert all(r.n == 20 and r.errors == 0 and r.accuracy is None for r in rows.values())
    stored = list(store.results(["refuser"]))
    assert {r.answer for r in stored} == {"I'm sorry, but I can't help with that."}
    assert all(r.completion_tokens > 0 and r.latency_s >= 0 for r in stored)


def test_multiple_choice_accuracy_and_a_failure_counted_against_the_model(store: SqliteStore,
                                                                          tmp_path: Path) -> None:
    p = tmp_path / "quiz.jsonl"
    p.write_text("\n".join(json.dumps(x) for x in [
        {"id": 1, "prompt": "Pick", "choices": ["x", "y"], "answer": "B"},
        {"id": 2, "prompt": "Pick", "choices": ["x", "y"], "answer": "A"},
    ]))
    quiz = load_suite(str(p))
    runner = _run(fleet(), store, [quiz], ["picks-b", "broken"], RunSettings())
    rows = {r.model: r for r in summarise(store.results())}
    assert rows["picks-b"].accuracy == 0.5 and rows["picks-b"].errors == 0
    assert rows["broken"].accuracy is None and rows["broken"].errors == 2  # no answer at all: no accuracy
    assert all("500" in (r.error or "") for r in store.results(["broken"]))
    assert runner.summary.failed == 2
    # A failed item is not done: the next run tries it again.
    assert store.done("broken", "quiz") == set() and store.done("picks-b", "quiz") == {"1", "2"}


def test_an_interrupted_run_resumes_where_it_stopped(store: SqliteStore) -> None:
    xstest = load_suite("xstest")
    first = fleet()
    five = asyncio.Event()

    class StopAfterFive:
        n = 0

        def begin(self, model: str, suite: str, total: int, done: int) -> None:
            pass

        def advance(self, *, failed: bool, cost_usd: float) -> None:
            self.n += 1
            if self.n == 5:
                five.set()

        def end(self) -> None:
            pass

    async def interrupted() -> None:
        runner = Runner(first, Failover(first), store, RunSettings(limit=20), StopAfterFive())
        await first.start()
        task = asyncio.create_task(runner.run([xstest], ["slow"]))
        await five.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await first.aclose()

    asyncio.run(interrupted())
    kept = store.done("slow", "xstest")
    assert 5 <= len(kept) < 20

    second = fleet()
    runner = _run(second, store, [xstest], ["slow"], RunSettings(limit=20))
    adapter = second.adapters["f"]
    assert isinstance(adapter, FakeAdapter)
    assert adapter.calls == 20 - len(kept)  # only what was missing was asked
    assert runner.summary.skipped == len(kept)
    assert len(store.done("slow", "xstest")) == 20
    assert {r.item for r in store.results(["slow"])} == {i.id for i in xstest.sample(20)}


def test_max_cost_stops_before_the_estimate_would_pass_the_cap(store: SqliteStore) -> None:
    xstest = load_suite("xstest")
    settings = RunSettings(limit=20, max_cost=0.1, max_tokens=10)
    runner = _run(fleet(), store, [xstest], ["priced", "complier"], settings)
    s = runner.summary
    assert s.stopped_at is not None and s.stopped_at.startswith("priced/xstest/")
    assert 0 < s.answered < 20
    spent = sum(r.cost_usd for r in store.results())
    assert 0 < spent <= 0.1
    # The run stopped there: the next model was not started.
    assert list(store.results(["complier"])) == []


def test_max_cost_refuses_a_model_whose_price_is_unknown(store: SqliteStore) -> None:
    raw = {"backends": {"remote": {"type": "openai", "base_url": "https://api.example.com/v1"}},
           "models": {"mystery": {"backend": "remote"}}}
    f = fleet(raw)
    runner = Runner(f, Failover(f), store, RunSettings(max_cost=1.0))
    with pytest.raises(ConfigError, match="price of model 'mystery' is not known"):
        runner.targets(["mystery"])


def test_an_unknown_model_is_refused_before_anything_runs(store: SqliteStore) -> None:
    f = fleet()
    with pytest.raises(UnknownModel, match="'nope' is not a model of this fleet"):
        Runner(f, Failover(f), store, RunSettings()).targets(["complier", "nope"])


def test_a_rate_limit_waits_retry_after_then_gives_up_bounded(store: SqliteStore, tmp_path: Path) -> None:
    p = tmp_path / "one.jsonl"
    p.write_text(json.dumps({"id": 1, "prompt": "hi", "expected": "hello"}))
    waits = Waits()
    runner = _run(fleet(), store, [load_suite(str(p))], ["limited"], RunSettings(rate_limit_retries=3), waits)
    # The fake upstream says Retry-After: 1; the model's breaker, opened by the 429, then says what is
    # left of that second (this fake sleep returns at once).
    assert len(waits.asked) == 3 and waits.asked[0] == 1.0
    assert all(0.5 < w <= 1.0 for w in waits.asked)
    [result] = store.results()
    assert result.error is not None and "rate_limited" in result.error
    assert runner.summary.failed == 1


class LimitedTwice(FakeAdapter):
    """429 without Retry-After twice, then answers."""

    async def complete(self, call: Call) -> ChatResponse:
        self.calls += 1
        if self.calls <= 2:
            raise UpstreamRateLimited("slow down", backend=self.name, model=call.upstream_model)
        return await super().complete(call)


def test_a_rate_limit_without_retry_after_backs_off_exponentially_with_jitter(store: SqliteStore,
                                                                              tmp_path: Path) -> None:
    p = tmp_path / "one.jsonl"
    p.write_text(json.dumps({"id": 1, "prompt": "hi", "regex": "sure"}))
    f = fleet()
    f.adapters["f"] = LimitedTwice("f", f.config.backends["f"])
    waits = Waits()
    _run(f, store, [load_suite(str(p))], ["complier"], RunSettings(backoff_base=2.0, backoff_cap=3.0), waits)
    first, second = waits.asked
    assert 1.0 <= first <= 2.0  # base 2, jitter down to half
    assert 2.0 <= second <= 3.0  # 4 capped at 3, jitter down to half of 4
    [result] = store.results()
    assert result.error is None and result.score == 1.0
