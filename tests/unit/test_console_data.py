"""The console's data: the rolling window of finished requests, the usage view, the eval view, sessions."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from polyroute.attempts import Report
from polyroute.console.evals_view import family, view
from polyroute.console.ledger_tail import SPAN_S, LedgerTail
from polyroute.console.recent import Recent
from polyroute.console.sessions import Sessions
from polyroute.console.views import csv_of, start_of, usage
from polyroute.errors import Attempt
from polyroute.finish import Finished
from polyroute.fleet import ModelEntry
from polyroute.gateway import RequestContext
from polyroute.tenancy.ledger import row_of
from polyroute.tenancy.memory import MemoryKeyStore
from polyroute.tenancy.rollup import RATIO, histogram_percentile
from polyroute.tenancy.sqlite import SqliteStore
from polyroute.tenancy.stores import UsageRow
from polyroute.types import make_usage

ADMIN_DIGEST = hashlib.sha256(b"an admin key for the console's tests").digest()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def entry(name: str) -> ModelEntry:
    return ModelEntry(name, "b", name, None, 1.0, 2.0, None, frozenset(), "hosted")


def finish(recent: Recent, route: str, model: str | None, status: int = 200, latency_s: float = 0.1,
           ttft_s: float | None = None, tokens: int = 10, cost: float = 0.001,
           failed_over: tuple[str, ...] = ()) -> None:
    """A request's ledger row, as the writer makes it, handed to ``recent``."""
    report = Report(route=route, model=entry(model) if model else None, usage=make_usage(5, tokens), cost_usd=cost)
    for other in failed_over:
        report.attempts.append(Attempt("b", other, "unavailable", 1.0, ""))
    if model:
        report.attempts.append(Attempt("b", model, "ok" if status < 400 else "unavailable", 1.0, ""))
    first = None if ttft_s is None else 100.0 + ttft_s
    outcome = Finished("r", status, ttft_s is not None, 100.0, 100.0 + latency_s, first)
    recent.add(row_of(RequestContext(), report, outcome, 100.0 + latency_s))


def served(n: int, at: float, route: str = "main", status: int = 200, latency_ms: float = 100.0,
           ttft_ms: float | None = None, cost: float = 0.001) -> list[UsageRow]:
    """``n`` ledger rows of requests that finished at ``at`` (epoch seconds)."""
    when = datetime.fromtimestamp(at, UTC)
    return [UsageRow(f"{route}-{at}-{i}", when, "k", "t", route, "m", "b", "[]", 5, 10, cost, False, latency_ms,
                     ttft_ms, status, None if status < 400 else "unavailable", False) for i in range(n)]


@pytest.mark.anyio
async def test_windows_count_rates_percentiles_cost_and_route_shares_from_the_ledger(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    ledger = SqliteStore(tmp_path / "ledger.db")
    tail = LedgerTail(ledger, clock=clock)
    ledger.write(served(9, clock.now, ttft_ms=50.0))
    ledger.write(served(1, clock.now, route="other", status=503, latency_ms=2000.0))
    assert (await tail.overview())["windows"]["5m"]["requests"] == 10
    clock.now += 2 * 3600  # two hours later: out of the hour, still in the day
    ledger.write(served(1, clock.now, latency_ms=200.0))
    doc = await tail.overview()
    assert doc["source"] == "ledger"
    hour, day = doc["windows"]["1h"], doc["windows"]["1d"]
    assert (hour["requests"], hour["errors"], hour["error_rate"]) == (1, 0, 0.0)
    assert (day["requests"], day["errors"], day["error_rate"]) == (11, 1, round(1 / 11, 4))
    assert day["requests_per_s"] == round(11 / 86400, 6)
    assert abs(day["cost_usd"] - 0.011) < 1e-9
    # Percentiles are the upper edge of a bucket: within RATIO of the true value, never under it.
    assert 100 <= day["latency_ms_p50"] <= 100 * RATIO
    assert 2000 <= day["latency_ms_p95"] <= 2000 * RATIO
    assert 50 <= day["ttft_ms_p50"] <= 50 * RATIO
    assert day["routes"] == [{"route": "main", "requests": 10, "share": round(10 / 11, 4)},
                             {"route": "other", "requests": 1, "share": round(1 / 11, 4)}]
    assert sum(m["requests"] for m in doc["per_minute"]) == 1  # the last hour, minute by minute
    clock.now += 86400 + 60  # a day and a minute on: all gone
    assert (await tail.overview())["windows"]["1d"]["requests"] == 0


@pytest.mark.anyio
async def test_rows_landing_late_or_read_twice_are_counted_once(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    ledger = SqliteStore(tmp_path / "ledger.db")
    tail = LedgerTail(ledger, clock=clock)
    ledger.write(served(3, clock.now - 10))  # worker one's batch
    assert (await tail.overview())["windows"]["5m"]["requests"] == 3
    clock.now += 5
    ledger.write(served(2, clock.now - 60, route="late"))  # worker two's batch, landing after the first look
    assert (await tail.overview())["windows"]["5m"]["requests"] == 5
    clock.now += 5
    assert (await tail.overview())["windows"]["5m"]["requests"] == 5  # nothing new: nothing counted again
    ledger.write(served(1, clock.now - 400, route="replayed"))  # a spool replayed minutes after its request
    clock.now += 5
    doc = await tail.overview()
    assert doc["windows"]["1h"]["requests"] == 6 and doc["windows"]["5m"]["requests"] == 5
    ledger.write(served(3, clock.now - 5) + served(1, clock.now - 2 * SPAN_S, route="ancient"))
    ledger.write(served(3, clock.now - 5))  # the same ids again: the store keeps them once
    clock.now += 5
    assert (await tail.overview())["windows"]["1d"]["requests"] == 9  # not the row older than a day


@pytest.mark.anyio
async def test_a_ledger_emptied_by_retention_is_read_again_from_its_first_row(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    ledger = SqliteStore(tmp_path / "ledger.db")
    tail = LedgerTail(ledger, clock=clock)
    ledger.write(served(4, clock.now - 10))
    assert (await tail.overview())["windows"]["5m"]["requests"] == 4
    ledger.expire(datetime.fromtimestamp(clock.now + 1, UTC))  # everything goes
    clock.now += 5
    ledger.write(served(1, clock.now - 1, route="after"))  # numbered from 1 again
    assert (await tail.overview())["windows"]["5m"]["requests"] == 5


def test_each_model_keeps_its_recent_speed_and_failures() -> None:
    recent = Recent()
    finish(recent, "main", "fast", latency_s=1.0, ttft_s=0.2, tokens=80)  # 80 tokens in 0.8 s after the first
    finish(recent, "main", "fast", status=503)
    m = recent.model("fast")
    assert m["answers"] == 2 and m["failures"] == 1
    assert m["ttft_ms_p50"] == 200.0
    assert abs(m["tokens_per_s_p50"] - 100.0) < 0.1
    assert recent.model("never")["answers"] == 0
    finish(recent, "main", "fast", failed_over=("flaky",))  # flaky failed, fast rescued it
    assert recent.model("flaky") == {"answers": 1, "failures": 1, "ttft_ms_p50": None, "tokens_per_s_p50": None}
    assert recent.model("fast")["answers"] == 3 and recent.model("fast")["failures"] == 1
    finish(recent, "main", None, status=503, failed_over=("down",))  # nobody answered
    assert recent.model("down")["failures"] == 1


@pytest.mark.anyio
async def test_fleets_recent_answers_are_read_from_the_ledger(tmp_path: Path) -> None:
    clock = Clock(1_700_000_000.0)
    ledger = SqliteStore(tmp_path / "ledger.db")
    tail = LedgerTail(ledger, clock=clock)
    ledger.write(served(3, clock.now - 10, ttft_ms=40.0))
    await tail.refresh()
    assert tail.recent.model("m")["answers"] == 3 and tail.recent.model("m")["ttft_ms_p50"] == 40.0
    await tail.refresh()  # the same rows read again are not counted again
    assert tail.recent.model("m")["answers"] == 3


def test_percentile_of_an_empty_histogram_is_none() -> None:
    from collections import Counter

    assert histogram_percentile(Counter(), 0.5) is None


def row(at: datetime, key: str, cost: float, model: str = "m") -> UsageRow:
    return UsageRow(f"{key}-{at.isoformat()}", at, key, "team", "route", model, "b", "[]", 1, 2, cost, False, 10.0,
                    None, 200, None, False)


def test_usage_steps_are_whole_and_groups_beyond_the_top_are_other(tmp_path: Path) -> None:
    now = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)
    since = start_of("1d", now)
    assert since == datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
    rows = [row(now - timedelta(minutes=5), f"k{i}", 0.01 * (i + 1)) for i in range(10)]
    rows.append(row(since + timedelta(minutes=1), "k9", 1.0))
    rows.append(row(since - timedelta(minutes=1), "k9", 50.0))  # before the span: not in it
    ledger = SqliteStore(tmp_path / "ledger.db")
    ledger.write(rows)
    doc = usage(ledger.summary(since, "key"), ledger.cost_by_step(since, "key", 3600), "1d", "key", now)
    assert len(doc["steps"]) == 25 and doc["steps"][0] == "2026-03-03T10:00:00Z"
    groups = [s["group"] for s in doc["series"]]
    assert groups[0] == "k9" and "other" in groups and len(groups) == 9  # eight by cost, then the rest
    k9 = next(s for s in doc["series"] if s["group"] == "k9")["cost_usd"]
    assert k9[0] == 1.0 and abs(k9[-1] - 0.1) < 1e-9
    other = next(s for s in doc["series"] if s["group"] == "other")["cost_usd"]
    assert abs(other[-1] - 0.03) < 1e-9  # k0 and k1: 0.01 + 0.02
    assert {t["group"] for t in doc["totals"]} == {f"k{i}" for i in range(10)}


def test_the_csv_cannot_carry_a_formula() -> None:
    text = csv_of([{"group": "=HYPERLINK(\"x\")", "requests": 1, "tokens_in": 2, "tokens_out": 3,
                    "cost_usd": 0.00001234, "errors": 0, "refused": 0, "p50_ms": 1.5, "p95_ms": 2.0}], "key").decode()
    lines = text.splitlines()
    assert lines[0] == "key,requests,tokens_in,tokens_out,cost_usd,errors,refused,p50_ms,p95_ms"
    assert lines[1].startswith("\"'=HYPERLINK") and ",0.00001234," in lines[1]


def test_eval_view_sets_languages_side_by_side() -> None:
    def r(model: str, suite: str, lang: str, unsafe: float, category: str | None = None) -> dict[str, object]:
        return {"model": model, "suite": suite, "lang": lang, "kind": "safety", "category": category, "n": 10,
                "accuracy": None, "unsafe_refusal_rate": unsafe, "safe_refusal_rate": 0.1,
                "cost_usd": 0.1, "cost_per_1k_items": 1.0, "p50_latency_s": 0.2}
    mmlu = {**r("m", "mmlu", "en", 0), "kind": "accuracy", "accuracy": 0.6, "unsafe_refusal_rate": None}
    doc = view([r("m", "xstest", "en", 0.9), r("m", "xstest-zh", "zh", 0.6), mmlu],
               [r("m", "xstest", "en", 0.8, "homonyms"), r("m", "xstest-zh", "zh", 0.5, "homonyms")])
    assert family("xstest-zh") == "xstest" and family("mmlu") == "mmlu"
    assert doc["languages"] == ["en", "zh"]
    assert doc["refusals"] == [{"model": "m", "suite": "xstest", "category": None, "by_lang": {
        "en": {"n": 10, "unsafe_refusal_rate": 0.9, "safe_refusal_rate": 0.1, "advice_pass_rate": None},
        "zh": {"n": 10, "unsafe_refusal_rate": 0.6, "safe_refusal_rate": 0.1, "advice_pass_rate": None}}}]
    assert doc["hazards"][0]["category"] == "homonyms"
    assert {(p["suite"], p["measure"], p["quality"]) for p in doc["scatter"]} == {
        ("xstest", "unsafe_refusal_rate", 0.9), ("xstest-zh", "unsafe_refusal_rate", 0.6), ("mmlu", "accuracy", 0.6)}


def test_a_model_that_answered_nothing_is_not_plotted_as_free_and_wrong() -> None:
    mmlu = {"model": "ok", "suite": "mmlu", "lang": "en", "kind": "accuracy", "category": None, "n": 5, "errors": 1,
            "accuracy": 0.75, "unsafe_refusal_rate": None, "safe_refusal_rate": None, "cost_usd": 0.1,
            "cost_per_1k_items": 20.0, "p50_latency_s": 0.2}
    broken = {**mmlu, "model": "broken", "errors": 5, "accuracy": 0.0, "cost_usd": 0.0, "cost_per_1k_items": 0.0}
    doc = view([mmlu, broken], [])
    assert [p["model"] for p in doc["scatter"]] == ["ok"]
    assert [(r["model"], r["errors"]) for r in doc["rows"]] == [("ok", 1), ("broken", 5)]


def sessions_pair(tmp_path: Path, clock: Clock, digest: bytes = ADMIN_DIGEST) -> tuple[Sessions, Sessions]:
    """Two workers: each its own ``Sessions`` and its own connection to one store file."""
    made = []
    for _ in range(2):
        store = SqliteStore(tmp_path / "store.db")
        made.append(Sessions(digest, store, lifetime=100, idle=30, renew_after=10, clock=clock))
    return made[0], made[1]


@pytest.mark.anyio
async def test_a_session_made_by_one_worker_is_good_on_another_until_idle_or_old(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    one, two = sessions_pair(tmp_path, clock)
    token, opened = one.open()
    seen = await two.get(token)
    assert seen == opened and seen.expires == 1030  # the idle deadline, sooner than the lifetime's
    assert two.csrf_matches(seen, opened.csrf) and one.csrf_matches(seen, opened.csrf)
    assert not two.csrf_matches(seen, None) and not two.csrf_matches(seen, opened.csrf + "x")
    assert not two.csrf_matches(seen, "")
    clock.now = 1005
    assert two.renewed(seen) is None  # too fresh to be issued again
    clock.now = 1025
    renewed = two.renewed(seen)
    assert renewed is not None
    token, fresh = renewed
    assert (fresh.id, fresh.csrf, fresh.started, fresh.expires) == (opened.id, opened.csrf, 1000, 1055)
    clock.now = 1040
    assert await one.get(token) == fresh  # the renewed cookie moved the idle deadline
    clock.now = 1056
    assert await one.get(token) is None  # idle past it
    # However busy, never past the lifetime.
    clock.now = 2000
    token, _ = one.open()
    for now in range(2020, 2100, 20):
        clock.now = now
        session = await two.get(token)
        assert session is not None
        renewed = two.renewed(session)
        if renewed:
            token = renewed[0]
    clock.now = 2100
    assert await one.get(token) is None and await two.get(token) is None


@pytest.mark.anyio
async def test_a_logout_on_one_worker_ends_the_session_on_every_worker(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    one, two = sessions_pair(tmp_path, clock)
    token, session = one.open()
    other_token, _ = one.open()
    clock.now = 1020
    older_cookie = token
    renewed = one.renewed(session)
    assert renewed is not None
    token = renewed[0]
    await two.close(session)
    assert await one.get(token) is None and await two.get(token) is None
    assert await one.get(older_cookie) is None  # every cookie of that session, not only the one shown
    assert await one.get(other_token) is not None  # another login is untouched
    # A third worker starting later reads the record from the store.
    late = Sessions(ADMIN_DIGEST, SqliteStore(tmp_path / "store.db"), clock=clock)
    assert await late.get(token) is None


@pytest.mark.anyio
async def test_a_forged_or_foreign_cookie_is_refused() -> None:
    clock = Clock(1000.0)
    store = MemoryKeyStore()
    sessions = Sessions(ADMIN_DIGEST, store, clock=clock)
    token, session = sessions.open()
    assert await sessions.get(token) == session
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-40] ^= 1  # an expiry moved by the holder
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    rotated = Sessions(hashlib.sha256(b"the next admin key").digest(), store, clock=clock)
    for bad in ("", "made-up", token[:-2], token + "A", token[:10] + "+" + token[11:], forged, "=" * 98, "A" * 5000):
        assert await sessions.get(bad) is None, bad
    assert await rotated.get(token) is None  # a new admin secret ends every session
    assert await sessions.get(None) is None
    _, other = sessions.open()
    assert other.csrf != session.csrf and not sessions.csrf_matches(other, session.csrf)


def test_wrong_logins_past_the_limit_wait_for_the_window() -> None:
    from polyroute.console.sessions import LoginThrottle

    clock = Clock(0.0)
    throttle = LoginThrottle(limit=3, window=60, clock=clock)
    for t in (0, 10, 20):
        clock.now = t
        assert throttle.wait() == 0
        throttle.failed()
    clock.now = 30
    assert throttle.wait() == 30  # the first failure leaves the window at 60
    clock.now = 60
    assert throttle.wait() == 0


@pytest.mark.anyio
async def test_many_new_rows_are_counted_in_pieces_between_the_loops_other_work(tmp_path: Path) -> None:
    from polyroute.console.ledger_tail import COUNT_CHUNK

    clock = Clock(1_000_000.0)
    ledger = SqliteStore(tmp_path / "ledger.db")
    tail = LedgerTail(ledger, clock=clock)
    await tail.overview()
    ledger.write(served(2 * COUNT_CHUNK + 1, clock.now - 60))  # a busy spell since the last look
    turns, seen = 0, []
    count = tail._count

    def counting(rows: list[UsageRow], now: float) -> None:
        seen.append(turns)
        count(rows, now)

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    tail._count = counting  # type: ignore[method-assign]
    worker = asyncio.ensure_future(other_work())
    try:
        assert (await tail.overview())["windows"]["5m"]["requests"] == 2 * COUNT_CHUNK + 1
    finally:
        worker.cancel()
    assert len(seen) == 3 and seen[0] < seen[1] < seen[2]  # the loop ran between the pieces


@pytest.mark.anyio
async def test_the_first_look_takes_the_day_summed_by_the_store_and_the_last_answers_for_fleet(
    tmp_path: Path,
) -> None:
    clock = Clock(1_000_000.0)
    ledger = SqliteStore(tmp_path / "ledger.db")
    ledger.write(served(7, clock.now - 7200, ttft_ms=30.0) + served(2, clock.now - 30, status=503))
    read: list[int] = []
    rows_of = ledger.written_after

    def counting(mark: float | None) -> tuple[list[UsageRow], float]:
        got, after = rows_of(mark)
        read.append(len(got))
        return got, after

    ledger.written_after = counting  # type: ignore[method-assign]
    tail = LedgerTail(ledger, clock=clock)
    doc = await tail.overview()
    assert read == [0, 0]  # no row was read one by one: the store summed them
    assert doc["windows"]["1d"]["requests"] == 9 and doc["windows"]["5m"]["requests"] == 2
    assert doc["windows"]["5m"]["errors"] == 2 and doc["windows"]["1d"]["ttft_ms_p50"] is not None
    assert tail.recent.model("m")["answers"] == 9 and tail.recent.model("m")["failures"] == 2


def test_the_overview_counts_a_model_out_by_its_backend_as_failing() -> None:
    """A billing or key failure takes a whole backend out: its models are failing on the Overview, as on Fleet."""
    from polyroute import config as cfg
    from polyroute.catalog import load_catalog
    from polyroute.console import views
    from polyroute.gateway import Gateway

    raw = {"backends": {"a": {"type": "fake"}, "b": {"type": "fake"}},
           "models": {"a1": {"backend": "a"}, "a2": {"backend": "a"}, "b1": {"backend": "b"}}}
    gateway = Gateway.from_config(cfg.parse(raw), load_catalog())
    closed = {"state": "closed"}
    health = {"models": {"a1": closed, "a2": closed, "b1": {"state": "open"}},
              "backends": {"a": {"state": "open", "ready": True}, "b": {**closed, "ready": True}}}
    assert views.failing(gateway, health) == 3
    health["backends"]["a"] = {**closed, "ready": False}  # closed, but without its key
    assert views.failing(gateway, health) == 3
    health["backends"]["a"] = {**closed, "ready": True}
    assert views.failing(gateway, health) == 1
    shown = views.fleet(gateway, {**health, "status": "degraded"}, Recent())
    assert [m["healthy"] for m in shown["models"]] == [True, True, False]


def test_a_client_that_left_is_no_sample_of_the_model_answering() -> None:
    recent = Recent()
    finish(recent, "main", "fast", latency_s=1.0, ttft_s=0.2, tokens=80)
    when = datetime.fromtimestamp(1_700_000_000, UTC)
    for status in (499, 200):  # left before the head, and mid-stream
        recent.add(UsageRow(f"r{status}", when, "k", "t", "main", "fast", "b", '[{"model": "fast", "outcome": "ok"}]',
                            5, 3, 0.001, True, 500.0, None, status, "client_closed", True))
    assert recent.model("fast")["answers"] == 1 and recent.model("fast")["failures"] == 0
