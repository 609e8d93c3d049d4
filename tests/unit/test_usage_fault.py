"""Whose a request's bad ending was: every way a request can end, as the ledger records it, is the
client's (refused) or a failure, and the reports, the rollup and the console count it alike."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from polyroute.console.ledger_tail import LedgerTail
from polyroute.errors import (
    AllAttemptsFailed,
    BodyTooLarge,
    BudgetExceeded,
    ContextTooLong,
    Forbidden,
    InvalidRequest,
    PolicyViolation,
    QuotaStoreUnavailable,
    RateLimitExceeded,
    RequestTimeout,
    StoreUnavailable,
    Unauthorized,
    UnknownModel,
    UnsupportedTransfer,
    UpstreamContextExceeded,
    UpstreamError,
    UpstreamParamRefused,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from polyroute.finish import SHUTDOWN, ending
from polyroute.tenancy import fault
from polyroute.tenancy.rollup import RATIO
from polyroute.tenancy.sqlite import SqliteStore
from polyroute.tenancy.stores import UsageRow
from polyroute.tenancy.usage import percentile


def _all_failed(*errors: UpstreamError) -> AllAttemptsFailed:
    return AllAttemptsFailed("every candidate failed", attempts=[], errors=list(errors))



# Each way a request ends (its exception as the gateway's ``ending`` reads it, or a status and code
# as a stream's end records them), and whose it is.
ENDINGS: list[tuple[str, BaseException | tuple[int, str | None] | None, str]] = [
    ("answered", None, "served"),
    ("bad json", InvalidRequest("Request body is not valid JSON"), "refused"),
    ("a field too long", InvalidRequest("too long", code="string_above_max_length"), "refused"),
    ("no key", Unauthorized("missing key"), "refused"),
    ("not this route", Forbidden("no"), "refused"),
    ("unknown model", UnknownModel("no such model"), "refused"),
    ("slow client", RequestTimeout("body not received"), "refused"),
    ("too large", BodyTooLarge("too large"), "refused"),
    ("chunked only", UnsupportedTransfer("gzip transfer"), "refused"),
    ("policy", PolicyViolation("no candidate"), "refused"),
    ("prompt too long", ContextTooLong("too long"), "refused"),
    ("key's budget", BudgetExceeded("spent"), "refused"),
    ("key's rpm", RateLimitExceeded("over rpm", retry_after=1.0), "refused"),
    ("client left", asyncio.CancelledError(), "refused"),
    ("client left mid-stream", (200, "client_closed"), "refused"),
    ("upstream: context too long", _all_failed(UpstreamContextExceeded("too long", upstream_status=400, backend="b")),
     "refused"),
    ("upstream: request wrong", _all_failed(UpstreamRejected("bad", code="invalid_value", backend="b")), "refused"),
    ("upstream: parameter refused by all", _all_failed(UpstreamParamRefused("no", param="seed", backend="b")),
     "refused"),
    ("every candidate down", _all_failed(UpstreamUnavailable("refused", backend="b")), "failed"),
    ("every candidate 5xx", _all_failed(UpstreamServerError("boom", backend="b")), "failed"),
    ("every candidate slow", _all_failed(UpstreamTimeout("slow", backend="b")), "failed"),
    ("every candidate rate limited", _all_failed(UpstreamRateLimited("slow down", retry_after=2, backend="b")),
     "failed"),
    ("rejected by one, down at another",
     _all_failed(UpstreamRejected("bad", backend="b"), UpstreamServerError("x", backend="b")), "failed"),
    ("stream cut", (200, "stream_cut"), "failed"),
    ("answer too long, not continued", UpstreamServerError("cap", backend="b"), "failed"),
    ("store down", StoreUnavailable("down"), "failed"),
    ("counters down", QuotaStoreUnavailable("down"), "failed"),
    ("gateway stopping", asyncio.CancelledError(SHUTDOWN), "failed"),
    ("a bug", ValueError("bug"), "failed"),
]


def _ended(how: BaseException | tuple[int, str | None] | None) -> tuple[int, str | None]:
    return how if isinstance(how, tuple) else ending(how)


def _kind(status: int, error: str | None) -> str:
    refused, failed = fault.refused(status, error), fault.failed(status, error)
    assert not (refused and failed)
    return "refused" if refused else "failed" if failed else "served"


@pytest.mark.parametrize(("what", "how", "whose"), ENDINGS, ids=[e[0] for e in ENDINGS])
def test_each_ending_is_the_clients_or_a_failure(
    what: str, how: BaseException | tuple[int, str | None] | None, whose: str
) -> None:
    status, error = _ended(how)
    assert _kind(status, error) == whose, (what, status, error)


def test_the_every_candidate_rate_limited_429_is_a_failure_and_a_keys_429_is_not() -> None:
    # The same status, told apart by the code the ledger keeps.
    upstreams = _ended(_all_failed(UpstreamRateLimited("x", backend="b")))
    keys = _ended(RateLimitExceeded("x", retry_after=1))
    assert upstreams[0] == keys[0] == 429
    assert fault.failed(*upstreams) and fault.refused(*keys)


def rows_of_every_ending(at: datetime, key: str = "k") -> list[UsageRow]:
    """One row per ending: refused ones answered in microseconds, the others in 100 ms and more."""
    out = []
    for i, (what, how, whose) in enumerate(ENDINGS):
        status, error = _ended(how)
        latency = 0.05 + i / 1000 if whose == "refused" else 100.0 + 37 * i
        out.append(UsageRow(f"{key}-{i}", at, key, "t", "main", "m" if whose == "served" else None, "b", "[]",
                            i, 2 * i, 0.001 * i, False, latency, latency / 2 if whose != "refused" else None, status,
                            error, what.startswith("client left mid")))
    return out


@pytest.mark.anyio
async def test_the_overview_counts_failures_over_the_requests_not_refused(tmp_path: Path) -> None:
    now = 1_000_050.0  # rows 10 s before, in this same minute
    ledger = SqliteStore(tmp_path / "ledger.db")
    rows = rows_of_every_ending(datetime.fromtimestamp(now - 10, UTC))
    ledger.write(rows)
    doc = await LedgerTail(ledger, clock=lambda: now).overview()
    window = doc["windows"]["5m"]
    refused = sum(1 for *_, whose in ENDINGS if whose == "refused")
    failed = sum(1 for *_, whose in ENDINGS if whose == "failed")
    assert (window["requests"], window["errors"], window["refused"]) == (len(ENDINGS), failed, refused)
    assert window["error_rate"] == round(failed / (len(ENDINGS) - refused), 4)
    assert window["refused_rate"] == round(refused / len(ENDINGS), 4)
    # Latency is of the requests not refused: the fastest of them took 100 ms, every refusal under 1 ms.
    assert window["latency_ms_p50"] is not None
    p50 = percentile(sorted(r.latency_ms for r in rows if not fault.refused(r.status, r.error)), 0.5)
    assert p50 <= window["latency_ms_p50"] <= p50 * RATIO  # the upper edge of its bucket
    minute = doc["per_minute"][-1]
    assert (minute["requests"], minute["errors"], minute["refused"]) == (len(ENDINGS), failed, refused)


@pytest.mark.anyio
async def test_a_window_of_refusals_only_has_no_failure_rate_and_no_latency(tmp_path: Path) -> None:
    now = 2_000_020.0
    ledger = SqliteStore(tmp_path / "ledger.db")
    ledger.write([r for r in rows_of_every_ending(datetime.fromtimestamp(now - 10, UTC))
                  if fault.refused(r.status, r.error)])
    window = (await LedgerTail(ledger, clock=lambda: now).overview())["windows"]["5m"]
    assert (window["errors"], window["error_rate"], window["refused_rate"]) == (0, None, 1.0)
    assert (window["latency_ms_p50"], window["ttft_ms_p50"]) == (None, None)
