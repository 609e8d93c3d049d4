"""Quality routes' decisions, recorded per request off the hot path, and the feedback given on them.

On the hot path the gateway only ``note``s a plan whose route judged the prompt
(a dictionary insert). When the request finishes, the observer moves the decision,
now with the model that answered and the answer's own id, to a queue; a writer
thread turns queued decisions into rows (features to float32 bytes, the prompt to
its SHA-256) and writes them in batches. Memory is bounded everywhere: plans in
flight (``MAX_PENDING``), the write queue (``MAX_QUEUE``) and the index of recent
ids that lets feedback find a decision not written yet (``MAX_RECENT``); past a
bound the oldest goes, counted and logged.

    plan ──note──▶ pending ──finished──▶ queue ──writer thread──▶ DecisionStore
                                   └──▶ recent ids (feedback's first look)

Feedback (``POST /v1/feedback``) looks a request up by the gateway's request id or
by the answer's id, first among recent ids, then in the store, and is accepted only
from the key that made the request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

import numpy as np
import orjson

from polyroute.finish import Finished
from polyroute.quality.decision_store import DecisionRow, DecisionStore, Owner
from polyroute.quality.features import EMBED_DIM, FEATURE_SET

if TYPE_CHECKING:
    from polyroute.attempts import Report
    from polyroute.gateway import RequestContext
    from polyroute.routing import Plan

log = logging.getLogger("polyroute.quality")

MAX_PENDING = 10_000
MAX_QUEUE = 50_000
MAX_RECENT = 20_000
BATCH = 500
FLUSH_INTERVAL = 0.5
PRUNE_EVERY = 3600.0
RETRY_AFTER = 1.0

# A finished decision waiting to be written: the plan, the key, and how the request ended.
_Queued = tuple["Plan", str | None, str, "str | None", "str | None", int, float]


class DecisionLog:
    """The ``RequestObserver`` that records quality decisions, and the lookup feedback uses."""

    def __init__(self, store: DecisionStore, flush_interval: float = FLUSH_INTERVAL) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self._pending: OrderedDict[str, tuple[Plan, str | None]] = OrderedDict()
        self._queue: deque[_Queued] = deque()
        self._recent: OrderedDict[str, Owner] = OrderedDict()
        self.dropped = 0
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._stopping = False
        self._failing = False
        self._pruned_at = 0.0
        self._thread: threading.Thread | None = None

    # -- the event loop's side ---------------------------------------------------------------

    def note(self, ctx: RequestContext, plan: Plan) -> None:
        """Keep a judged plan until its request finishes."""
        self._pending[ctx.request_id] = (plan, ctx.principal.key)
        if len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)
            self._drop("plans in flight")

    def finished(self, ctx: RequestContext, report: Report, outcome: Finished) -> None:
        held = self._pending.pop(ctx.request_id, None)
        if held is None:
            return
        plan, key = held
        answered = report.model.name if report.model else None
        self._queue.append((plan, key, ctx.request_id, answered, report.response_id, outcome.status, time.time()))
        if len(self._queue) > MAX_QUEUE:
            self._queue.popleft()
            self._drop("decisions waiting to be written")
        owner = Owner(ctx.request_id, key)
        for some_id in (ctx.request_id, report.response_id):
            if some_id:
                self._recent[some_id] = owner
        while len(self._recent) > MAX_RECENT:
            self._recent.popitem(last=False)
        if len(self._queue) >= BATCH:
            self._wake.set()

    async def owner(self, some_id: str) -> Owner | None:
        """The request a feedback id names: a gateway request id or an answer's id."""
        found = self._recent.get(some_id)
        if found is not None:
            return found
        return await asyncio.to_thread(self.store.owner, some_id)

    async def give(self, owner: Owner, score: float) -> None:
        await asyncio.to_thread(self.store.put_feedback, owner.request_id, score)

    def _drop(self, what: str) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.warning("quality decisions: %d dropped so far (too many %s)", self.dropped, what)

    # -- the writer thread ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="polyroute-decisions", daemon=True)
            self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued decision is written; whether it was, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._queue and (left := deadline - time.monotonic()) > 0:
                self._wake.set()
                self._idle.wait(min(left, 0.1))
        return not self._queue

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self.flush(timeout)
            self._stopping = True
            self._wake.set()
            self._thread.join(timeout)
            self._thread = None
        self.store.close()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while self._queue and not self._stopping:
                if not self._write_batch():
                    time.sleep(RETRY_AFTER)
                    break
            self._prune()
            with self._idle:
                self._idle.notify_all()

    def _write_batch(self) -> bool:
        batch = [self._queue[i] for i in range(min(BATCH, len(self._queue)))]
        try:
            self.store.write([row_of(*item) for item in batch])
        except Exception as exc:
            if not self._failing:
                self._failing = True
                log.error("quality decisions: writing %d failed, kept to try again: %s", len(batch), exc)
            return False
        if self._failing:
            self._failing = False
            log.warning("quality decisions: writing works again")
        for _ in batch:
            self._queue.popleft()
        return True

    def _prune(self) -> None:
        now = time.time()
        if now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        try:
            self.store.prune(now)
        except Exception as exc:
            log.warning("quality decisions: pruning old decisions failed: %s", exc)


def row_of(
    plan: Plan, key: str | None, request_id: str, answered: str | None, response_id: str | None, status: int,
    at: float,
) -> DecisionRow:
    judged = plan.judged
    assert judged is not None  # only judged plans are noted
    emb = judged.embedding if judged.embedding is not None else np.zeros(EMBED_DIM, dtype=np.float32)
    features = np.concatenate([np.asarray(judged.cheap, dtype="<f4"), emb.astype("<f4")]).tobytes()
    predictions = [{"model": e.name, "column": judged.column(e.name), "p": plan.scores.get(e.name)}
                   for e in plan.candidates]
    return DecisionRow(
        request_id=request_id, response_id=response_id, at=at, key=key, route=plan.route.name,
        prompt_sha256=hashlib.sha256(judged.prompt.encode("utf-8", "replace")).hexdigest(),
        feature_set=FEATURE_SET, features=features, predictions=orjson.dumps(predictions).decode(),
        target=judged.target, chosen=plan.candidates[0].name if plan.candidates else None, answered=answered,
        answered_column=judged.column(answered) if answered else None, status=status,
    )
