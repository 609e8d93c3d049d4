"""Where tenancy state lives: keys and teams, counters, the usage ledger.

Each is a protocol, so that a shared store (Redis for counters, PostgreSQL for keys
and the ledger) implements the same methods as the stores of one machine
(``polyroute.tenancy.memory``, ``polyroute.tenancy.sqlite``). Every method is atomic
per key.

Counters are what budgets and rate limits are made of. A bucket is a name with a
value and an end (``key:NAME:rpm:WINDOW``, ``team:NAME:usd:PERIOD``); past its end it
reads 0. ``reserve`` is all or nothing over several buckets, one atomic step (a Lua
script in Redis):

    reserve([c1, c2, ...]) ── every bucket below its limit? ──no──▶ Refused(the first that is not)
                                        │ yes
                                        ▼
                              every bucket += its amount ──▶ the values after
    ... the request runs ...
    settle([(c1, true1), ...])          settlement: the true amounts in, the reservations out

A bucket admits while it is below its limit, and the reservation may take it over:
the overshoot is at most one request's worst case per request in flight, and a
request that alone reserves more than a limit can still pass on an idle key.

A reservation left by a process that died is never settled: in one process it dies
with it; in Redis (``polyroute.tenancy.rediscounters``) it lapses on its own.

The ledger is written by one writer (``polyroute.tenancy.ledger``) in batches; a
batch leaves the writer's queue (or, for a remote store, its local spool) only once
``LedgerStore.write`` has returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from polyroute.tenancy.model import KeyRecord, TeamRecord


class Charge(NamedTuple):
    """One bucket a request charges. A tuple: three are made for every request admitted."""

    bucket: str
    limit: float
    amount: float
    ends_at: float | None  # epoch seconds; None: never


class Reserved(NamedTuple):
    """The outcome of ``reserve``: the values after it, or the index of the charge that refused."""

    values: tuple[float, ...]
    refused: int | None = None


class CounterStore(Protocol):
    async def reserve(self, charges: Sequence[Charge], now: float) -> Reserved:
        """All or nothing: add every amount when every bucket is below its limit."""
        ...

    async def adjust(self, bucket: str, delta: float, ends_at: float | None, now: float) -> None:
        """Add ``delta`` (negative to give back) to a bucket."""
        ...

    async def settle(self, settled: Sequence[tuple[Charge, float]], reserved_at: float, now: float) -> None:
        """Replace what ``reserve`` (at ``reserved_at``) held for each charge by its true amount."""
        ...

    async def seed(self, bucket: str, value: float, ends_at: float | None, now: float) -> bool:
        """Set a bucket that does not exist yet (a budget's spend read from the ledger at start);
        whether it was set. Atomic, so replicas starting together count the spend once."""
        ...

    async def read(self, buckets: Sequence[str], now: float) -> tuple[float, ...]: ...


class KeyStore(Protocol):
    """Virtual keys and teams. Names are unique; a key is found by the SHA-256 of its secret."""

    async def version(self) -> int:
        """A number that changes whenever a key or a team does (readers reload only then)."""
        ...

    async def add_key(self, record: KeyRecord) -> None:
        """Raises ``KeyError`` when the name is taken."""
        ...

    async def put_key(self, record: KeyRecord) -> None:
        """Replace the key of that name (it exists)."""
        ...

    async def key(self, name: str) -> KeyRecord | None: ...

    async def keys(self) -> list[KeyRecord]: ...

    async def delete_key(self, name: str) -> bool: ...

    async def put_team(self, record: TeamRecord) -> None: ...

    async def team(self, name: str) -> TeamRecord | None: ...

    async def teams(self) -> list[TeamRecord]: ...

    async def delete_team(self, name: str) -> bool: ...

    async def revoke_session(self, session_id: str, until: float) -> None:
        """Record that a console session logged out. ``until`` (epoch seconds) is when the session would
        expire anyway: past it the record may be dropped. Recording an id again keeps it revoked."""
        ...

    async def session_revoked(self, session_id: str) -> bool:
        """Whether the console session logged out (``revoke_session``)."""
        ...


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One request, as the ledger keeps it."""

    request_id: str
    at: datetime  # when it finished, UTC
    key: str | None
    team: str | None
    route: str
    model: str | None  # who answered
    backend: str | None
    attempts: str  # JSON: [{"backend", "model", "outcome", "ms"}, ...]
    tokens_in: int
    tokens_out: int
    cost_usd: float
    estimated: bool
    latency_ms: float
    ttft_ms: float | None
    status: int
    error: str | None
    stream: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    """A usage row a store refuses for what it holds (a value its column cannot take), and why."""

    row: UsageRow
    reason: str


class Traffic(NamedTuple):
    """Ledger rows summed per minute (its start, in epoch seconds), as the console's Overview counts them."""

    # minute, requests, failures, refusals (``polyroute.tenancy.fault``), cost, tokens in, tokens out
    totals: list[tuple[int, int, int, int, float, int, int]]
    latency: list[tuple[int, int, int]]  # minute, histogram bucket, requests not refused
    ttft: list[tuple[int, int, int]]  # the same, of the time to first token, where there is one
    routes: list[tuple[int, str, int]]  # minute, route, requests


class LedgerStore(Protocol):
    """Rows of finished requests. ``write`` is called from the writer's thread, never the event loop."""

    def write(self, rows: Sequence[UsageRow]) -> Sequence[Rejected] | None:
        """Commit every row, or raise and commit none. A row already there (same request id) is kept once.

        A store that refuses rows for what they hold (not for being down) commits the others and
        returns the refused ones, so that one bad row never holds the ledger up.
        """
        ...

    def rows(self, since: datetime, key: str | None = None) -> list[UsageRow]: ...

    def written_after(self, mark: float | None) -> tuple[list[UsageRow], float]:
        """The rows written since ``mark`` (None: none, only the mark of now), and the mark to ask from next.

        Whenever their requests finished: a row replayed from a spool counts when it lands. A row
        may come twice (a store whose writers can commit out of order reads a few seconds back).
        """
        ...

    def latest(self, count: int, mark: float) -> list[UsageRow]:
        """The last ``count`` rows written before what ``written_after(mark)`` returns, oldest first."""
        ...

    def traffic(self, since: datetime, mark: float, ratio: float) -> Traffic:
        """The rows of requests finished since ``since`` and written before what ``written_after(mark)``
        returns, summed per minute; latencies in buckets ``ratio`` apart (``polyroute.console.recent``)."""
        ...

    def cost_by_step(self, since: datetime, by: str, step: int) -> list[tuple[str, int, float]]:
        """(group, step, cost) of the rows since ``since``: each group's cost in each step of ``step`` whole
        seconds from ``since`` (0 the first), the group as ``polyroute.tenancy.usage.group_of`` names it.
        Read from the rollup (``polyroute.tenancy.rollup``): ``since`` and ``step`` fall on its steps."""
        ...

    def rollup_summary(self, since: datetime, by: str) -> list[dict[str, Any]]:
        """``summary`` of every key from the rollup: its sums, and percentiles within the rollup's buckets.
        ``since`` falls on the rollup's steps."""
        ...

    def rebuild_rollup(self) -> int:
        """Sum the rollup again from every row (rows an older version wrote lack it); returns the rows.
        Writers wait meanwhile, so no row is counted twice or missed."""
        ...

    def summary(self, since: datetime, by: str, key: str | None = None) -> list[dict[str, Any]]:
        """The rows since ``since`` (of one key, or all) as ``polyroute.tenancy.usage.summarize`` reports them."""
        ...

    def spent(self, kind: str, name: str, since: datetime) -> float:
        """The cost held for a key or a team (``kind``) since ``since`` (to seed a budget at start)."""
        ...

    def expire(self, before: datetime) -> None:
        """Forget rows older than ``before`` (``[store] retention_days``); a store may keep some a while longer."""
        ...

    def close(self) -> None: ...


class Store(KeyStore, LedgerStore, Protocol):
    """Keys, teams and the ledger in one database, as ``[store] url`` names it."""

    @property
    def where(self) -> str:
        """The database, for messages (never a credential)."""
        ...

    @property
    def remote(self) -> bool:
        """Whether it can be unreachable while the gateway runs (then the ledger spools rows locally)."""
        ...

    @property
    def waiting(self) -> str | None:
        """Why it could not be reached when it was opened (a gateway starting in an outage), else None."""
        ...
