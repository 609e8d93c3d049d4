"""The usage ledger's writer: one row per finished request, written off the hot path.

It runs in the gateway's process as its observer (``[store] ledger_writer = "thread"``) or, by
default, in a writer process of its own (``polyroute.tenancy.ledger_process``), which hands it
rows the gateway has already built (``add``) and reports ``taken`` back through ``on_progress``.

``finished`` only appends what it was told to a queue (the row is built later, off
the event loop). A writer thread wakes when the queue holds a batch or every
``flush_interval`` and writes the oldest rows in one transaction; they leave the
queue only once the store has committed them, so a failed write is tried again
(rows are keyed by request id: none is kept twice).

    finished ──append──▶ queue ──writer: LedgerStore.write──▶ committed ──▶ popped
                                     │ write failed
                                     └──▶ logged once per outage, kept, tried again

A store that can be unreachable while the gateway runs (PostgreSQL) gets a spool
(``polyroute.tenancy.spool``) between the two: a spooler thread moves the queue to
the spool file within ``flush_interval``, ``fsync`` per batch, and the writer writes
from the spool, so a row is on disk within a second of its answer whatever the
store is doing, and an outage fills the file instead of memory.

    finished ──▶ queue ──spooler: append, fsync──▶ spool ──writer: write──▶ committed ──▶ spool.commit

A spool that cannot be written (a full disk, a read-only folder) does not hold rows back:
the spooler hands them to the writer (``direct``), which writes them to the store as
if there were no spool, until the spool can be written again.

A row the store refuses for what it holds (a value its column cannot take), rather than
for being down, does not hold the others up: the store commits the rest and returns it,
and the writer keeps it in ``rejected`` (one JSON line with the reason) and says so in the log.

``close`` (the app's shutdown, so SIGTERM) writes what is queued before it returns;
with a spool and the store down, it returns once every row is in the spool, which
the next start replays. With ``retention_days``, the writer also asks the store
hourly to forget older rows.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from polyroute.attempts import Report
from polyroute.finish import Finished
from polyroute.tenancy.spool import Spool
from polyroute.tenancy.stores import LedgerStore, Rejected, UsageRow

if TYPE_CHECKING:
    from polyroute.gateway import RequestContext

log = logging.getLogger("polyroute.ledger")

RETRY_AFTER = 1.0  # seconds between tries while the store fails
EXPIRE_EVERY = 3600.0  # seconds between two retention passes
ADOPT_EVERY = 10.0  # seconds between two looks for spools left by processes that died
SPOOL_BATCH = 10_000  # rows per append (and fsync) at the most

_Item = tuple["RequestContext", Report, Finished, float]  # a request as told, its row built off the loop
_Batch = tuple[list[UsageRow], Callable[[], None]]  # rows, and what to do once the store has them


class Ledger:
    """The ``RequestObserver`` that writes the usage ledger through a ``LedgerStore``."""

    def __init__(self, store: LedgerStore, batch_size: int = 500, flush_interval: float = 0.5,
                 spool: Spool | None = None, retention_days: int | None = None,
                 rejected: Path | None = None) -> None:
        self.store = store
        self.rejected = rejected  # where rows the store refuses for what they hold are kept
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.spool = spool
        self.retention = timedelta(days=retention_days) if retention_days else None
        self.queue: deque[_Item | UsageRow] = deque()
        # Rows the spool could not take, handed to the writer to write straight to the store. The
        # spooler alone takes from ``queue`` and the writer alone from ``direct``: no row is taken twice.
        self.direct: deque[UsageRow] = deque()
        self.taken = 0  # rows that have left the queue (committed, or spooled) since start
        # Called, from a writer thread, after rows have left the queue or reached the store.
        self.on_progress: Callable[[], None] | None = None
        self._ready = threading.Event()  # the writer has rows to write
        self._tick = threading.Event()  # the spooler has a batch to spool
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._failing = False
        self._spool_failing = False
        self._next_expiry = 0.0
        self._next_adoption = time.monotonic() + ADOPT_EVERY  # (the spool adopted what it found when opened)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        self._threads = [threading.Thread(target=self._write_forever, name="polyroute-ledger", daemon=True)]
        if self.spool is not None:
            self._threads.append(
                threading.Thread(target=self._spool_forever, name="polyroute-ledger-spool", daemon=True))
        for thread in self._threads:
            thread.start()
        if self._pending():
            self._ready.set()  # a spool left by the last run: replayed now, not after a flush interval

    def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        self.queue.append((ctx, report, outcome, time.time()))
        if len(self.queue) >= self.batch_size:
            self.nudge()

    def add(self, row: UsageRow) -> None:
        """A row built elsewhere (``polyroute.tenancy.ledger_process``), queued like a finished request's."""
        self.queue.append(row)
        if len(self.queue) >= self.batch_size:
            self.nudge()

    def nudge(self) -> None:
        """Write (or spool) what is queued now rather than at the next tick."""
        wake = self._tick if self.spool is not None else self._ready
        if not wake.is_set():
            wake.set()

    def depth(self) -> int:
        """Rows not yet committed (with a spool: not yet spooled)."""
        return len(self.queue) + len(self.direct)

    def idle(self) -> bool:
        """Whether the store has every row told so far."""
        return not self.queue and not self.direct and not self._pending()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the store has committed every row; whether it has, within ``timeout`` seconds."""
        return self._wait(self.idle, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (with a spool and the store down: spool it), then stop the threads."""
        if not self._threads:
            return
        spooled = self.spool is not None
        self._wait(lambda: not self.queue and not self.direct
                   and (not self._pending() or (self._failing and spooled)), timeout)
        self._stop.set()
        self._tick.set()
        self._ready.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        if self.spool is not None:
            self._spool_queued()  # whatever came after the last tick
            if self.spool.pending:
                log.warning("ledger: the store has not taken every row; they wait in %s for a gateway to take over",
                            self.spool.path)
            self.spool.close()
        left: list[UsageRow] = []
        for queue in (self.queue, self.direct):  # (taken one at a time: a late request may still add one)
            while queue:
                left.append(_row(queue.popleft()))
        if left:
            # Neither the store nor the spool took them: the log is the last place they can be kept.
            log.error("ledger: %d row(s) could not be written before shutdown; each follows as JSON", len(left))
            for r in left:
                log.error("ledger: unwritten row %s", orjson.dumps(r).decode())

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while not done() and (left := deadline - time.monotonic()) > 0:
                self._tick.set()
                self._ready.set()
                self._idle.wait(min(left, 0.1))
        return done()

    def _pending(self) -> bool:
        return self.spool.pending if self.spool is not None else bool(self.queue)

    # -- the spooler thread ------------------------------------------------------------------

    def _spool_forever(self) -> None:
        while not self._stop.is_set():
            self._tick.wait(self.flush_interval)
            self._tick.clear()
            self._spool_queued()

    def _spool_queued(self) -> None:
        assert self.spool is not None
        while self.queue:
            items = [self.queue[i] for i in range(min(len(self.queue), SPOOL_BATCH))]
            rows = [_row(item) for item in items]
            try:
                self.spool.append(rows)
            except OSError as exc:
                if not self._spool_failing:
                    self._spool_failing = True
                    log.error("ledger: the spool %s cannot be written; rows go straight to the store: %s",
                              self.spool.path, exc)
                self.direct.extend(rows)  # the writer's now: it writes them as if there were no spool
                for _ in items:
                    self.queue.popleft()
                self._ready.set()
                continue
            if self._spool_failing:
                self._spool_failing = False
                log.warning("ledger: the spool can be written again")
            for _ in items:
                self.queue.popleft()  # only now: they are on disk
            self.taken += len(items)
            self._ready.set()
            self._progress()

    # -- the writer thread -------------------------------------------------------------------

    def _write_forever(self) -> None:
        while not self._stop.is_set():
            self._ready.wait(self.flush_interval)
            self._ready.clear()
            self._adopt_when_due()
            self._write_pending()
            self._expire_when_due()
            with self._idle:
                self._idle.notify_all()

    def _write_pending(self) -> None:
        while not self._stop.is_set() and (batch := self._next()) is not None:
            rows, commit = batch
            try:
                refused = self.store.write(rows) if rows else None
                if refused:
                    self._keep_refused(refused)
            except Exception as exc:
                if not self._failing:
                    self._failing = True  # once per outage, not once per batch
                    log.error("ledger: writing %d row(s) failed, kept to try again: %s", len(rows), exc)
                with self._idle:
                    self._idle.notify_all()
                self._stop.wait(RETRY_AFTER)
                return
            if self._failing:
                self._failing = False
                log.warning("ledger: writing works again")
            commit()
            self._progress()
            if len(rows) < self.batch_size:
                # The rest waits for a whole batch or the next tick: under load, batches stay whole
                # rather than shrinking to what came in while the last one was written.
                return

    def _keep_refused(self, refused: Sequence[Rejected]) -> None:
        """Rows the store will never take: kept in a file, one JSON line each with why, and said in the log."""
        ids = ", ".join(r.row.request_id for r in refused[:5])
        if self.rejected is None:
            log.error("ledger: the store refused %d row(s) for what they hold (%s; %s)", len(refused), ids,
                      refused[0].reason)
            return
        self.rejected.parent.mkdir(parents=True, exist_ok=True)
        with self.rejected.open("ab") as out:
            for r in refused:
                out.write(orjson.dumps({"reason": r.reason, "row": r.row}) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        log.error("ledger: the store refused %d row(s) for what they hold (%s; %s); kept in %s", len(refused), ids,
                  refused[0].reason, self.rejected)

    def _next(self) -> _Batch | None:
        """The oldest rows not yet committed, from the spool or else the queue (or the rows the spool
        could not take)."""
        if self.spool is not None:
            spool = self.spool
            if spool.pending:
                rows, end = spool.next(self.batch_size)
                return rows, lambda: spool.commit(end)
            return self._take(self.direct)
        return self._take(self.queue)

    def _take(self, queue: deque[_Item | UsageRow] | deque[UsageRow]) -> _Batch | None:
        count = min(self.batch_size, len(queue))
        if not count:
            return None

        def pop() -> None:
            for _ in range(count):
                queue.popleft()  # only now: the store has committed them
            self.taken += count

        return [_row(queue[i]) for i in range(count)], pop

    def _progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress()

    def _adopt_when_due(self) -> None:
        if self.spool is None or time.monotonic() < self._next_adoption:
            return
        self._next_adoption = time.monotonic() + ADOPT_EVERY
        try:
            self.spool.adopt()
        except OSError as exc:
            log.warning("ledger: taking over a stopped gateway's spool failed, tried again later: %s", exc)

    def _expire_when_due(self) -> None:
        if self.retention is None or time.monotonic() < self._next_expiry:
            return
        self._next_expiry = time.monotonic() + EXPIRE_EVERY
        try:
            self.store.expire(datetime.now(UTC) - self.retention)
        except Exception as exc:
            log.warning("ledger: forgetting rows past retention failed, tried again in an hour: %s", exc)


def _row(item: _Item | UsageRow) -> UsageRow:
    return item if isinstance(item, UsageRow) else row_of(*item)


# A finished request's ledger fields as the event loop takes them, raw (``fields_of``); the
# row is made of them later, off the loop (``row_from``).
Fields = tuple[Any, ...]


def fields_of(ctx: RequestContext, report: Report, outcome: Finished, at: float) -> Fields:
    p, usage, model = ctx.principal, report.usage, report.model
    return (
        outcome.request_id, at, p.key, p.team, report.route,
        None if model is None else model.name, None if model is None else model.backend,
        [(a.backend, a.model, a.outcome, a.latency_ms) for a in report.attempts],
        usage["prompt_tokens"], usage["completion_tokens"], report.cost_usd, report.estimated,
        outcome.started, outcome.ended, outcome.first_token_at, outcome.status, outcome.error, outcome.stream,
    )


def row_from(fields: Sequence[Any]) -> UsageRow:
    """The row of ``fields_of``'s fields (or of the same decoded from JSON, lists for tuples)."""
    (request_id, at, key, team, route, model, backend, attempts, tokens_in, tokens_out, cost, estimated,
     started, ended, first_token_at, status, error, stream) = fields
    return UsageRow(
        request_id=request_id, at=datetime.fromtimestamp(at, UTC), key=key, team=team, route=route, model=model,
        backend=backend,
        attempts=orjson.dumps(
            [{"backend": b, "model": m, "outcome": o, "ms": ms} for b, m, o, ms in attempts]
        ).decode(),
        tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=round(cost, 10), estimated=estimated,
        latency_ms=round((ended - started) * 1000, 3),
        ttft_ms=None if first_token_at is None else round((first_token_at - started) * 1000, 3),
        status=status, error=error, stream=stream,
    )


def row_of(ctx: RequestContext, report: Report, outcome: Finished, at: float) -> UsageRow:
    return row_from(fields_of(ctx, report, outcome, at))
