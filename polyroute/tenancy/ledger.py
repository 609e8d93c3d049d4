"""The usage ledger's observer: one row per finished request, written off the hot path.

``finished`` only appends what it was told to a queue (the row is built later, by the
writer). A writer thread wakes when the queue holds a batch or every
``flush_interval``, builds the rows of the oldest batch, and writes them in one
transaction; the batch leaves the queue only once the store has committed it, so a
failed write is tried again (rows are keyed by request id: none is kept twice).

    finished ──append──▶ queue ──writer thread: build rows, LedgerStore.write──▶ committed ──▶ popped
                                        │ write failed
                                        └──▶ logged once per outage, kept, tried again

``close`` (the app's shutdown, so SIGTERM) writes what is queued before it returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson

from polyroute.attempts import Report
from polyroute.finish import Finished
from polyroute.tenancy.stores import LedgerStore, UsageRow

if TYPE_CHECKING:
    from polyroute.gateway import RequestContext

log = logging.getLogger("polyroute.ledger")

RETRY_AFTER = 1.0  # seconds between tries while the store fails

_Item = tuple["RequestContext", Report, Finished, float]


class Ledger:
    """The ``RequestObserver`` that writes the usage ledger through a ``LedgerStore``."""

    def __init__(self, store: LedgerStore, batch_size: int = 500, flush_interval: float = 0.5) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.queue: deque[_Item] = deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._stopping = False
        self._failing = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="polyroute-ledger", daemon=True)
            self._thread.start()

    def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        self.queue.append((ctx, report, outcome, time.time()))
        if len(self.queue) >= self.batch_size and not self._wake.is_set():
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row is committed; whether it was, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self.queue and (left := deadline - time.monotonic()) > 0:
                self._wake.set()
                self._idle.wait(min(left, 0.1))
        return not self.queue

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer."""
        if self._thread is None:
            return
        self.flush(timeout)
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None
        if self.queue:
            log.error("ledger: %d row(s) could not be written before shutdown", len(self.queue))

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while self.queue and not self._stopping:
                if not self._write_batch():
                    time.sleep(RETRY_AFTER)
                    break
            with self._idle:
                self._idle.notify_all()

    def _write_batch(self) -> bool:
        batch = [self.queue[i] for i in range(min(self.batch_size, len(self.queue)))]
        try:
            self.store.write([row_of(*item) for item in batch])
        except Exception as exc:
            if not self._failing:
                self._failing = True  # once per outage, not once per batch
                log.error("ledger: writing %d row(s) failed, kept to try again: %s", len(batch), exc)
            return False
        if self._failing:
            self._failing = False
            log.warning("ledger: writing works again")
        for _ in batch:
            self.queue.popleft()  # only now: the store has committed them
        return True


def row_of(ctx: RequestContext, report: Report, outcome: Finished, at: float) -> UsageRow:
    p, usage, model = ctx.principal, report.usage, report.model
    attempts = orjson.dumps([
        {"backend": a.backend, "model": a.model, "outcome": a.outcome, "ms": a.latency_ms} for a in report.attempts
    ]).decode()
    ttft = outcome.ttft_ms
    return UsageRow(
        request_id=outcome.request_id, at=datetime.fromtimestamp(at, UTC), key=p.key, team=p.team,
        route=report.route, model=model.name if model else None, backend=model.backend if model else None,
        attempts=attempts, tokens_in=usage["prompt_tokens"], tokens_out=usage["completion_tokens"],
        cost_usd=round(report.cost_usd, 10), estimated=report.estimated, latency_ms=round(outcome.latency_ms, 3),
        ttft_ms=None if ttft is None else round(ttft, 3), status=outcome.status, error=outcome.error,
        stream=outcome.stream,
    )
