"""A gateway's tenancy, built from its config: the store, the quota gatekeeper, the ledger.

Nothing is built for a config without ``[store]``, ``[admin]``, budgets or rate
limits: such a gateway has no gatekeeper and no ledger, so a request costs nothing
more. With ``[store]`` or ``[admin]``, keys and teams of the store are loaded at
start and read again every ``RELOAD_INTERVAL`` (a key made or revoked by the CLI or
another process counts within that time), and every request is written to the ledger.

With ``[store] redis``, the counters are Redis's (``RedisCounters``), shared by every
replica, and a change made through one replica's admin API is announced on the
``keys`` channel so that the others read the store again at once, not at their next
poll. Budgets are seeded from the ledger only into buckets Redis does not hold yet,
at start and again when Redis is back after an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from polyroute.auth import Keyring
from polyroute.config import POSTGRES_SCHEMES, Config
from polyroute.errors import ConfigError, QuotaStoreUnavailable, StoreUnavailable
from polyroute.finish import RequestObserver
from polyroute.redislink import RedisLink, Subscriber
from polyroute.tenancy.conversations import open_conversations
from polyroute.tenancy.leases import Leases
from polyroute.tenancy.ledger import Ledger
from polyroute.tenancy.ledger_process import LedgerProcess, WriterSpec
from polyroute.tenancy.memory import MemoryCounters
from polyroute.tenancy.model import period_of
from polyroute.tenancy.quota import Quota
from polyroute.tenancy.rediscounters import RedisCounters
from polyroute.tenancy.responses import MemoryResponses, ResponseKeeper, ResponseStore
from polyroute.tenancy.spool import Spool, check_owner, check_writable, owner_file
from polyroute.tenancy.spool import held as spool_held
from polyroute.tenancy.sqlite import SqliteStore, data_dir, path_of
from polyroute.tenancy.stores import CounterStore, Store

log = logging.getLogger("polyroute.tenancy")

RELOAD_INTERVAL = 1.0
SPOOL_NAME = "ledger-spool.jsonl"
REJECTED_NAME = "ledger-rejected.jsonl"  # rows the store refused for what they hold, one JSON line each
KEYS_CHANNEL = "keys"


def uses_store(config: Config) -> bool:
    return "store" in config.model_fields_set or config.admin.secret is not None


def open_store(config: Config, *, lazy: bool = False) -> Store:
    """The store ``[store] url`` names: SQLite (the default) or PostgreSQL. With ``lazy`` (a gateway
    starting), a PostgreSQL server that is down for now is waited for rather than an error."""
    return store_at(config.store.url, config.store.password.get() if config.store.password else None, lazy=lazy)


def store_at(url: str | None, password: str | None = None, *, lazy: bool = False) -> Store:
    if url is not None and url.startswith(POSTGRES_SCHEMES):
        try:
            from polyroute.tenancy.postgres import PostgresStore  # psycopg is an extra: imported only when used
        except ImportError:
            raise ConfigError("a PostgreSQL store needs psycopg: pip install 'polyroute[postgres]'",
                              key="store.url") from None
        return PostgresStore(url, password, lazy=lazy)
    return SqliteStore(path_of(url))


def open_ledger(config: Config, store: Store) -> Ledger | LedgerProcess:
    """The ledger's writer; a store that can be down while the gateway runs gets a local spool."""
    s = config.store
    named = Path(s.spool) if s.spool else data_dir() / SPOOL_NAME
    spool_path = named if store.remote else None
    if spool_path is None and spool_held(named):
        log.warning("the ledger's spool %s holds rows this store (%s) will not take: they are for the store "
                    "named in %s; start once with that store to replay them", named, store.where, owner_file(named))
    rejected = (Path(s.spool).parent if s.spool else data_dir()) / REJECTED_NAME
    if s.ledger_writer == "process":
        if spool_path is not None:
            check_writable(spool_path)  # as the thread's Spool does at start, before anything is served
            check_owner(spool_path, store.where)
        url = s.url if store.remote else f"sqlite:///{Path(store.where).resolve()}"
        return LedgerProcess(WriterSpec(
            url=url, password=s.password.get() if s.password else None, batch_size=s.batch_size,
            flush_interval=s.flush_interval, spool=str(spool_path) if spool_path else None,
            retention_days=s.retention_days, rejected=str(rejected), spool_owner=store.where,
            log_level=logging.getLevelName(log.getEffectiveLevel()),
        ))
    spool = Spool(spool_path, store.where) if spool_path else None
    return Ledger(store, s.batch_size, s.flush_interval, spool, s.retention_days, rejected)


def open_responses(config: Config, store: Store | None) -> ResponseKeeper:
    """Where ``POST /v1/responses`` keeps what it answers: the store's database, else this process."""
    kept: ResponseStore
    if store is None:
        kept = MemoryResponses()
    elif (s := config.store).url is not None and s.url.startswith(POSTGRES_SCHEMES):
        from polyroute.tenancy.responses_postgres import PostgresResponses

        kept = PostgresResponses(s.url, s.password.get() if s.password else None)
    else:
        from polyroute.tenancy.responses_sqlite import SqliteResponses

        kept = SqliteResponses(store.where)
    return ResponseKeeper(kept, config.store.responses_retention_days * 86400)


class Tenancy:
    def __init__(self, config: Config, keys: Keyring, link: RedisLink | None = None) -> None:
        self.keys = keys
        self.store = open_store(config, lazy=True) if uses_store(config) else None
        self.link = link
        shared = RedisCounters(link) if link is not None else None
        self.counters: CounterStore = shared or MemoryCounters()
        self.on_redis_down = config.store.on_redis_down
        self.leases = Leases(shared) if shared is not None and config.store.leases else None
        self.quota = (
            Quota(keys, self.counters, config.store.on_redis_down, self.leases)
            if keys.limited or self.store is not None else None
        )
        if link is not None and self.store is not None:
            link.subscribe(KEYS_CHANNEL, Subscriber(self._keys_changed))
            link.on_back(self._seed_when_back)
        self.ledger = open_ledger(config, self.store) if self.store else None
        self.responses = open_responses(config, self.store)
        self.conversations = open_conversations(config, self.store)
        self._reload: asyncio.Task[None] | None = None
        self._version = -1  # of the keys and teams last read from the store

    def observers(self) -> list[RequestObserver]:
        return [self.ledger] if self.ledger is not None else []

    async def start(self) -> None:
        if self.store is None:
            return
        try:
            await self.reload()
        except StoreUnavailable as exc:
            # Serve on: keys of the config work, keys of the store (and, unless on_redis_down = "allow",
            # keys with a budget) are answered 503, try again, until it is back and budgets are counted.
            self.keys.waiting_for_store = True
            self.keys.hold_budgeted = self.on_redis_down != "allow"
            log.warning("the store cannot be reached at start (%s): serving on; its keys%s are answered 503 "
                        "until it is back", exc.message, " and keys with a budget" if self.keys.hold_budgeted else "")
        else:
            await self.seed_budgets()
        if self.ledger is not None:
            self.ledger.start()
        self._reload = asyncio.get_running_loop().create_task(self._reload_forever())

    async def reload(self) -> None:
        """Read the store's keys and teams again, when they changed since the last read."""
        if self.store is None:
            return
        version = await self.store.version()
        if version == self._version:
            return
        keys, teams = await self.store.keys(), await self.store.teams()
        self.keys.load_stored(keys, teams)
        self._version = version

    async def changed(self) -> None:
        """Keys or teams were changed here: read them again, and tell the other replicas."""
        await self.reload()
        if self.link is not None:
            with contextlib.suppress(QuotaStoreUnavailable):  # they still poll
                await self.link.publish(KEYS_CHANNEL, str(self._version))

    async def _keys_changed(self, message: str) -> None:
        try:
            await self.reload()
        except Exception as exc:
            log.warning("reading keys from the store failed; keeping those loaded: %s", exc)

    async def _reload_forever(self) -> None:
        failing = self.keys.waiting_for_store  # (said at start)
        while True:
            await asyncio.sleep(RELOAD_INTERVAL)
            try:
                await self.reload()
            except Exception as exc:  # a locked file, a database down: keep the keys we have
                if not failing:  # once per outage, not once a second
                    log.warning("reading keys from the store failed; keeping those loaded: %s", exc)
                failing = True
                continue
            if failing:
                log.warning("reading keys from the store works again")
            failing = False
            # The store was down at start: its keys wait until what they spent before is counted.
            if self.keys.waiting_for_store and await self.seed_budgets():
                self.keys.waiting_for_store = False

    async def _seed_when_back(self) -> None:
        await self.seed_budgets()

    async def seed_budgets(self) -> bool:
        """Count what the ledger holds for this budget period, so a restart forgets no spend.

        Only into a bucket the counters do not hold yet: with shared counters, another
        replica already running (or starting at the same time) has counted it.
        """
        store = self.store
        if store is None or self.quota is None:
            return True
        now = time.time()
        today = datetime.fromtimestamp(now, UTC)
        try:
            for kind, name, lim in self.keys.budgeted():
                period = period_of(lim.budget_period, today)
                spent = await asyncio.to_thread(store.spent, kind, name, period.start)
                if spent:
                    await self.counters.seed(f"{kind}:{name}:usd:{period.id}", spent,
                                             period.end.timestamp() if period.end else None, now)
        except QuotaStoreUnavailable:
            log.warning("budgets not seeded from the ledger: redis is unreachable; seeding when it is back")
            return False
        except StoreUnavailable as exc:
            log.warning("budgets not seeded from the ledger: %s", exc.message)
            return False
        return True

    async def aclose(self) -> None:
        if self._reload is not None:
            self._reload.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload
        if self.quota is not None:
            await self.quota.settled()  # what requests spent reaches the shared counters before exit
        if self.leases is not None:
            await self.leases.aclose()  # and what the leases hold goes back
        if self.ledger is not None:
            await asyncio.to_thread(self.ledger.close)
        self.responses.close()
        self.conversations.close()
        if self.store is not None:
            self.store.close()

