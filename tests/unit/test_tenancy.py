"""Counters, periods, reports, the ledger writer and key expiry, without a network."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from polyroute import config as cfg
from polyroute.attempts import Report
from polyroute.auth import Keyring
from polyroute.catalog import load_catalog_for
from polyroute.errors import ConfigError, RateLimitExceeded, Unauthorized
from polyroute.finish import Finished, Observers
from polyroute.gateway import Gateway, RequestContext
from polyroute.routing import Principal
from polyroute.tenancy.ledger import Ledger
from polyroute.tenancy.memory import MemoryCounters
from polyroute.tenancy.model import KeyRecord, Limits, TeamRecord, new_secret, period_of
from polyroute.tenancy.quota import Quota
from polyroute.tenancy.stores import Charge, UsageRow
from polyroute.tenancy.usage import parse_since, percentile, summarize
from polyroute.types import ChatRequest, make_usage


def test_reserve_is_all_or_nothing_and_admits_while_below_the_limit() -> None:
    c = MemoryCounters()
    rpm, usd = Charge("k:rpm:1", 2, 1, 60.0), Charge("k:usd:m", 1.0, 0.6, None)
    assert asyncio.run(c.reserve([rpm, usd], 0.0)).values == (1, 0.6)
    assert asyncio.run(c.reserve([rpm, usd], 1.0)).values == (2, 1.2)  # below the limit before: admitted
    refused = asyncio.run(c.reserve([rpm, usd], 2.0))
    assert refused.refused == 0 and refused.values == (2, 1.2)
    # Nothing was added by the refusal, to any bucket.
    assert asyncio.run(c.read(["k:rpm:1", "k:usd:m"], 2.0)) == (2, 1.2)
    asyncio.run(c.adjust("k:usd:m", -0.9, None, 3.0))
    assert asyncio.run(c.read(["k:usd:m"], 3.0)) == (pytest.approx(0.3),)
    # A window that ended reads 0 and admits again.
    assert asyncio.run(c.reserve([rpm], 60.0)).values == (1,)


def test_periods_start_at_midnight_utc_mondays_and_the_first() -> None:
    now = datetime(2026, 12, 6, 15, 30, tzinfo=UTC)  # a Sunday
    assert period_of("day", now) == ("d20261206", datetime(2026, 12, 6, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC))
    assert period_of("week", now).start == datetime(2026, 11, 30, tzinfo=UTC)
    assert period_of("month", now).end == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_of("total", now).end is None


def test_secrets_are_long_random_and_prefixed() -> None:
    a, b = new_secret(), new_secret()
    assert a != b and a.startswith("pr-") and len(a) == 3 + 43


def test_percentiles_and_since() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0 and percentile([1.0, 2.0, 3.0, 4.0], 0.95) == 4.0
    now = datetime(2026, 12, 6, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-12-01", now) == datetime(2026, 12, 1, tzinfo=UTC)
    # Further back than a date can be: from the beginning, not an overflow (a 500 on /admin/usage).
    assert parse_since("99999999999d", now) == datetime.min.replace(tzinfo=UTC)
    assert parse_since(f"{10**30}w", now) == datetime.min.replace(tzinfo=UTC)
    with pytest.raises(ValueError, match="7d"):
        parse_since("soon", now)


def _row(key: str, ms: float, status: int = 200) -> UsageRow:
    return UsageRow("r" + key + str(ms), datetime(2026, 12, 6, tzinfo=UTC), key, None, "r", "m", "b", "[]",
                    1, 2, 0.5, False, ms, None, status, None, False)


def test_summaries_count_errors_and_percentiles_per_group() -> None:
    out = summarize([_row("a", 10), _row("a", 30, 502), _row("b", 5)], "key")
    assert out[0] == {"group": "a", "requests": 2, "tokens_in": 2, "tokens_out": 4, "cost_usd": 1.0, "errors": 1,
                      "refused": 0, "p50_ms": 10.0, "p95_ms": 30.0}
    assert [r["group"] for r in out] == ["a", "b"]


class FlakyStore:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.written: list[UsageRow] = []
        self.calls = 0

    def write(self, rows: Sequence[UsageRow]) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise OSError("disk I/O error")
        self.written.extend(rows)

    def rows(self, since: datetime, key: str | None = None) -> list[UsageRow]:
        return list(self.written)

    def close(self) -> None:
        pass


def _finish(ledger: Ledger, n: int) -> None:
    for i in range(n):
        ledger.finished(RequestContext(), Report(route="r"), Finished(f"id{i}", 200, False, 0.0, 0.01))


def test_the_ledger_keeps_rows_until_the_store_has_them_and_logs_an_outage_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("polyroute.tenancy.ledger.RETRY_AFTER", 0.01)
    store = FlakyStore(failures=3)
    ledger = Ledger(store, batch_size=4, flush_interval=0.01)
    caplog.set_level(logging.WARNING, logger="polyroute.ledger")
    ledger.start()
    _finish(ledger, 10)
    assert ledger.flush(timeout=20)
    ledger.close()
    assert [r.request_id for r in store.written] == [f"id{i}" for i in range(10)]
    assert store.calls >= 3 + 3
    assert sum("failed" in r.getMessage() for r in caplog.records) == 1
    assert sum("works again" in r.getMessage() for r in caplog.records) == 1


def test_close_writes_what_is_queued() -> None:
    store = FlakyStore(failures=0)
    ledger = Ledger(store, batch_size=1000, flush_interval=60)
    ledger.start()
    _finish(ledger, 7)
    ledger.close()
    assert len(store.written) == 7 and not ledger.queue
    assert not any(t.name == "polyroute-ledger" for t in threading.enumerate())


def test_an_observer_that_raises_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    class Broken:
        def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
            raise RuntimeError("bug")

    class Good:
        def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
            seen.append(outcome.request_id)

    Observers([Broken(), Good()]).finish(RequestContext(), Report(route="r"), Finished("x", 200, False, 0.0, 1.0))
    assert seen == ["x"] and "observer Broken failed on request x" in caplog.text


def test_request_ids_are_unique() -> None:
    ids = {RequestContext().request_id for _ in range(1000)}
    assert len(ids) == 1000


def _config(extra: dict[str, object]) -> cfg.Config:
    raw = {"backends": {"f": {"type": "fake"}}, "models": {"m": {"backend": "f"}}, **extra}
    return cfg.parse(raw, env={"K": "sk-0123456789abcdef"})


def test_an_expired_key_is_refused_like_a_wrong_one() -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    ring = Keyring.from_config(_config({"keys": {"old": {"secret": "env:K", "expires_at": past}}}))
    with pytest.raises(Unauthorized, match="not valid"):
        ring.authenticate("sk-0123456789abcdef")


def test_config_takes_teams_limits_admin_and_store() -> None:
    c = _config({
        "teams": {"t": {"budget_usd": 5, "budget_period": "week", "rpm": 10, "tpm": 1000}},
        "keys": {"k": {"secret": "env:K", "team": "t", "budget_usd": 1, "rpm": 2, "tpm": 3,
                       "expires_at": "2099-01-01T00:00:00Z"}},
        "admin": {"secret": "env:K"},
        "store": {"url": "sqlite:////tmp/x.db", "batch_size": 10, "flush_interval": 1},
    })
    assert c.teams["t"].budget_period == "week" and c.keys["k"].rpm == 2 and c.admin.secret is not None
    assert "sk-0123456789abcdef" not in str(c.redacted())
    with pytest.raises(ConfigError) as bad:
        _config({"store": {"url": "mysql://db/x"}, "teams": {"t": {"budget_period": "year", "rpm": 0}},
                 "keys": {"k": {"secret": "env:K", "expires_at": "2099-01-01T00:00:00"}}})
    text = str(bad.value)
    assert "store.url" in text and "teams.t.budget_period" in text and "teams.t.rpm" in text
    assert "keys.k.expires_at" in text


def _quota_setup() -> tuple[Keyring, Quota, Gateway, RequestContext]:
    config = cfg.parse({
        "backends": {"fk": {"type": "fake"}},
        "models": {"m": {"backend": "fk", "upstream": "text-hi", "input_per_mtok": 1.0, "output_per_mtok": 2.0}},
    })
    keys = Keyring([], [], enabled=True)
    quota = Quota(keys)
    gateway = Gateway.from_config(config, load_catalog_for(config))
    principal = Principal(key="app", team="ops")
    return keys, quota, gateway, RequestContext(principal=principal)


def _request(max_tokens: int = 100) -> ChatRequest:
    return ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hello"}],
                                       "max_tokens": max_tokens})


def _finished(ctx: RequestContext, admitted: object, tokens: int, cost: float) -> tuple[Report, Finished]:
    report = Report(route="m", usage=make_usage(tokens - 1, 1), cost_usd=cost)
    return report, Finished(ctx.request_id, 200, False, 0.0, 0.1, admitted=admitted)  # type: ignore[arg-type]


def test_settlement_replaces_the_worst_case_by_what_was_spent_and_headers_show_the_scarcer_scope() -> None:
    keys, quota, gateway, ctx = _quota_setup()
    keys.load_stored([KeyRecord("app", b"d" * 32, team="ops", limits=Limits(rpm=10, tpm=100_000))],
                     [TeamRecord("ops", Limits(rpm=3, budget_usd=5.0, budget_period="day"))])
    req = _request()
    plan = gateway.plan(req, ctx)

    async def go() -> None:
        admitted = await quota.admit(req, ctx, plan)
        assert admitted is not None
        h = admitted.headers()
        assert h["x-ratelimit-limit-requests"] == "3" and h["x-ratelimit-remaining-requests"] == "2"  # the team's
        worst = 100_000 - int(h["x-ratelimit-remaining-tokens"])
        assert worst > 100  # the prompt's estimate and max_tokens, before the answer
        quota.finished(ctx, *_finished(ctx, admitted, tokens=30, cost=0.25))
        again = await quota.admit(req, ctx, plan)
        assert again is not None
        # The first request now counts 30 tokens and $0.25; the second its own worst case.
        assert 100_000 - int(again.headers()["x-ratelimit-remaining-tokens"]) == 30 + worst
        assert float(again.headers()["x-polyroute-budget-remaining-usd"]) == pytest.approx(
            5.0 - 0.25 - again.amounts[2], abs=1e-6)
        await quota.admit(req, ctx, plan)
        with pytest.raises(RateLimitExceeded, match=r"team 'ops'.*3 requests per minute"):
            await quota.admit(req, ctx, plan)

    asyncio.run(go())


def test_new_limits_apply_to_the_next_request_and_a_key_without_limits_is_not_counted() -> None:
    keys, quota, gateway, ctx = _quota_setup()
    keys.load_stored([KeyRecord("app", b"d" * 32, limits=Limits(rpm=100))], [])
    req = _request()
    plan = gateway.plan(req, ctx)

    async def go() -> None:
        assert await quota.admit(req, ctx, plan) is not None
        keys.load_stored([KeyRecord("app", b"d" * 32, limits=Limits(rpm=1))], [])  # lowered, within the minute
        with pytest.raises(RateLimitExceeded):
            await quota.admit(req, ctx, plan)
        keys.load_stored([KeyRecord("app", b"d" * 32)], [])  # no limits any more
        assert await quota.admit(req, ctx, plan) is None

    asyncio.run(go())


def test_a_settlement_after_its_minute_leaves_the_next_minute_alone() -> None:
    c = MemoryCounters()
    charges = [(0, "k:rpm:1", 10.0, 60.0), (1, "k:tpm:1", 1000.0, 60.0)]
    got, cells = c.take(charges, (1.0, 500.0, 0.0), 59.0)
    assert got.values == (1.0, 500.0)
    later = [(0, "k:rpm:2", 10.0, 120.0), (1, "k:tpm:2", 1000.0, 120.0)]
    assert c.take(later, (1.0, 200.0, 0.0), 61.0)[0].values == (1.0, 200.0)
    MemoryCounters.settle_cells(cells, charges, (1.0, 500.0, 0.0), (1.0, 20.0, 0.0))  # the first, late
    assert asyncio.run(c.read(["k:tpm:1", "k:tpm:2"], 61.0)) == (0.0, 200.0)


def test_a_stored_instant_past_what_a_date_holds_in_utc_is_read_as_the_last_one() -> None:
    """Rows written before expires_at was bounded must not make every read of the keys fail."""
    from polyroute.tenancy.columns import time_of

    assert time_of("9999-12-31T23:59:59-12:00") == datetime.max.replace(tzinfo=UTC)
    assert time_of("0001-01-01T00:00:00+01:00") == datetime.min.replace(tzinfo=UTC)
    assert time_of("2027-01-01T01:00:00+01:00") == datetime(2027, 1, 1, tzinfo=UTC)


def test_a_budget_holds_claudes_cache_write_premium_for_a_prompt_marked_for_its_cache() -> None:
    """A prompt marked with ``cache_control`` may be billed by Claude at its write rate (1.25x the input price for
    five minutes, 2x for an hour), so the hold is counted at that rate: one request then cannot pass its budget by
    the premium. A model whose provider bills no writes is held at its input price, marks or not."""
    raw = {"backends": {"claude": {"type": "anthropic", "base_url": "https://api.anthropic.com", "api_key": "env:K"},
                        "fk": {"type": "fake"}},
           "models": {"sonnet": {"backend": "claude", "upstream": "claude-sonnet-4-5", "family": "claude-sonnet-4-5"},
                      "m": {"backend": "fk", "upstream": "text-hi", "input_per_mtok": 1.0, "output_per_mtok": 2.0}}}
    config = cfg.parse(raw, env={"K": "sk-x"})
    keys = Keyring([], [], enabled=True)
    quota, gateway = Quota(keys), Gateway.from_config(config, load_catalog_for(config))
    ctx = RequestContext(principal=Principal(key="app"))
    keys.load_stored([KeyRecord("app", b"d" * 32, limits=Limits(budget_usd=100.0, budget_period="day"))], [])
    prompt = "a long system prompt " * 400

    def held(model: str, mark: dict[str, str] | None, where: str) -> tuple[float, int]:
        system: dict[str, object] = {"role": "system", "content": [{"type": "text", "text": prompt}]}
        tools: list[dict[str, object]] = [{"type": "function", "function": {"name": "look"}}]
        if mark is not None and where == "part":
            system["content"] = [{"type": "text", "text": prompt, "cache_control": mark}]
        elif mark is not None and where == "message":
            system["cache_control"] = mark
        elif mark is not None:
            tools[0]["cache_control"] = mark
        req = ChatRequest.model_validate({"model": model, "messages": [system, {"role": "user", "content": "hi"}],
                                          "max_tokens": 100, "tools": tools})
        plan = gateway.plan(req, ctx)
        admitted = asyncio.run(quota.admit(req, ctx, plan))
        assert admitted is not None
        quota.finished(ctx, *_finished(ctx, admitted, tokens=1, cost=0.0))
        needs = plan.needs
        assert needs is not None
        return admitted.amounts[2], needs.prompt_tokens

    sonnet = gateway.fleet.models["sonnet"]
    price_in, price_out = sonnet.input_per_mtok, sonnet.output_per_mtok
    plain, tokens_in = held("sonnet", None, "part")
    assert plain == pytest.approx((tokens_in * price_in + 100 * price_out) / 1e6)
    for where in ("part", "message", "tool"):
        for mark, rate in (({"type": "ephemeral"}, 1.25), ({"type": "ephemeral", "ttl": "1h"}, 2.0)):
            got, tokens_in = held("sonnet", mark, where)
            assert got == pytest.approx((tokens_in * price_in * rate + 100 * price_out) / 1e6), (where, mark)
    fake_plain, fake_in = held("m", None, "part")
    assert held("m", {"type": "ephemeral", "ttl": "1h"}, "part")[0] == pytest.approx(fake_plain)
    assert fake_plain == pytest.approx((fake_in * 1.0 + 100 * 2.0) / 1e6)


def test_a_rate_limit_says_its_wait_to_the_millisecond() -> None:
    """In a minute's first second the wait is 59.x s: ``retry-after-ms`` says that, under the 60 000 ms past which
    the Vercel AI SDK and openai-node stop waiting as told; ``Retry-After`` is the whole seconds, rounded up."""
    refused = Quota.refusal([], ("rpm", Charge("key:app:rpm:1", 1, 1, 1060.0)), 1.0, 1000.6)
    assert isinstance(refused, RateLimitExceeded)
    assert refused.retry_after == pytest.approx(59.4)
    headers = refused.headers()
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("60", "59400")
    assert "Retry after 60s." in refused.message
