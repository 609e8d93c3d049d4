"""The attempts of one request: which candidate goes next, within what budget, and the report.

``Walk`` hands out the candidates of a route in order, one ``Slot`` at a time. A
candidate is skipped when its breaker is open (``polyroute.health``), when an
earlier attempt of this request met an account-wide refusal of its backend (a
block, a refused key, an unpaid bill; never a 429 or a retired model, which stay
with their model), or,
after a "context length exceeded", when its window is not larger than the one that
refused; during a stream rescue, when it cannot continue a partial answer. At most
``max_attempts`` attempts start, and none after the route's ``deadline``. Every
failure is classified once, in the error tree, and says whether the walk goes on.

``Report`` is what the server shows of it: every attempt, who answered, the bill.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from polyroute.adapters import Adapter, Call
from polyroute.adapters.base import OPTIONAL_PARAMS
from polyroute.cache_marks import MARK, marks
from polyroute.errors import (
    AllAttemptsFailed,
    Attempt,
    InvalidRequest,
    UpstreamContextExceeded,
    UpstreamError,
    UpstreamParamRefused,
    UpstreamTimeout,
)
from polyroute.fleet import Fleet, ModelEntry, Route
from polyroute.health import PANIC_CODES, Health, Ticket
from polyroute.redact import UpstreamGuard
from polyroute.refusals import ANSWER_SHAPING, DROPPABLE, OWN
from polyroute.types import ChatRequest, Usage, make_usage, read_usage, token_count

_DETAILS = ("prompt_tokens_details", "completion_tokens_details")


def _cached(usage: dict[str, Any]) -> int:
    """Prompt tokens the provider read from its cache: OpenAI's ``prompt_tokens_details.cached_tokens``, or
    DeepSeek's ``prompt_cache_hit_tokens``; 0 when it says neither."""
    details = usage.get("prompt_tokens_details")
    count = details.get("cached_tokens") if isinstance(details, dict) else usage.get("prompt_cache_hit_tokens")
    return token_count(count) or 0


def _written(usage: dict[str, Any]) -> tuple[int, int]:
    """Prompt tokens written to the provider's cache for five minutes and for an hour (Claude's, as its adapter
    reports them: ``cache_write_tokens``, of which ``cache_write_1h_tokens``)."""
    details = usage.get("prompt_tokens_details")
    if not isinstance(details, dict) or "cache_write_tokens" not in details:
        return 0, 0
    total, hour = token_count(details.get("cache_write_tokens")) or 0, token_count(details.get("cache_write_1h_tokens"))
    hour = min(hour or 0, total)
    return total - hour, hour


log = logging.getLogger("polyroute.failover")

CHARS_PER_TOKEN = 4  # to estimate the tokens of an attempt that was cut before it sent usage


@dataclass
class Report:
    """What happened while answering one request: who answered, every attempt, the bill."""

    route: str
    attempts: list[Attempt] = field(default_factory=list)
    errors: list[UpstreamError] = field(default_factory=list)
    # Candidates not attempted because their breakers are open, and why.
    skipped: list[UpstreamError] = field(default_factory=list)
    model: ModelEntry | None = None
    usage: Usage = field(default_factory=lambda: make_usage(0, 0))
    cost_usd: float = 0.0
    dropped: set[str] = field(default_factory=set)
    rescued: bool = False
    # Some of the usage is estimated (an attempt was cut before it reported its own).
    estimated: bool = False
    # A stream attempt that has sent tokens and is not finished yet.
    streaming: bool = False
    # The answer's own id (its "id" field), once it has one.
    response_id: str | None = None
    # Models of the route that routing left out before any attempt ("name: why"), for the error if all fail.
    left_out: list[str] = field(default_factory=list)
    # The upstreams' token details (cached prompt tokens, reasoning tokens...), summed over attempts, when sent.
    details: dict[str, dict[str, int]] | None = None

    def attempt_count(self) -> int:
        return len(self.attempts) + int(self.streaming)

    def bill(self, entry: ModelEntry, usage: object, *, estimated: bool = False) -> bool:
        """Add an attempt's usage and cost; False when it reported none that can be read (estimate it then)."""
        counts = read_usage(usage)
        if counts is None:
            return False
        self.usage["prompt_tokens"] += counts["prompt_tokens"]
        self.usage["completion_tokens"] += counts["completion_tokens"]
        self.usage["total_tokens"] += counts["total_tokens"]
        raw = cast(dict[str, Any], usage)  # a dict: read_usage read it
        priced = entry.offer is not None  # a catalog offer's cache rates; a config's own price is the whole price
        self.cost_usd += entry.cost(counts, _cached(raw) if priced else 0, written=_written(raw) if priced else (0, 0))
        self.estimated |= estimated
        if "prompt_tokens_details" in raw or "completion_tokens_details" in raw:
            self._add_details(raw)
        return True

    def _add_details(self, usage: dict[str, Any]) -> None:
        details = self.details if self.details is not None else {}
        for key in _DETAILS:
            if isinstance(part := usage.get(key), dict):
                into = details.setdefault(key, {})
                for name, count in part.items():
                    if (n := token_count(count)) is not None:
                        into[name] = into.get(name, 0) + n
        self.details = details

    def bill_estimate(self, entry: ModelEntry, prompt_chars: int, answer_chars: int) -> Usage:
        """Bill an attempt whose upstream reported no usage that can be read: about four characters a token."""
        usage = make_usage(estimate_tokens(prompt_chars), estimate_tokens(answer_chars))
        self.bill(entry, usage, estimated=True)
        return usage

    def record(self, entry: ModelEntry, outcome: str, started: float, detail: str = "") -> None:
        self.streaming = False
        ms = (time.monotonic() - started) * 1000
        self.attempts.append(Attempt(entry.backend, entry.name, outcome, round(ms, 2), detail, started))

    def fail(self, entry: ModelEntry, err: UpstreamError, started: float) -> None:
        self.errors.append(err)
        self.record(entry, err.outcome, started, err.message)


_TOOL_PARAMS = frozenset({"tools", "tool_choice"})


def requested_params(req: ChatRequest) -> set[str]:
    present = {p for p in OPTIONAL_PARAMS if getattr(req, p, None) is not None}
    if req.max_completion_tokens is not None:
        present.add("max_tokens")
    if "response_format" in present and (req.response_format or {}).get("type") == "text":
        present.discard("response_format")  # the default, spelled out (OpenAI's Playground exports it)
    if req.stop == [] or req.stop == "":
        present.discard("stop")
    return present


# Values of a field outside the schema that ask for nothing: the field's default, spelled out. Libraries send them
# (LangChain's logprobs=False, an SDK's None): a backend that cannot carry the field loses nothing.
_DEFAULTS: dict[str, tuple[object, ...]] = {"logprobs": (False,), "logit_bias": ({},)}


def asked_extras(extras: dict[str, Any]) -> set[str]:
    """Of a request's fields outside the schema, those that ask for something: not null, not their default."""
    return {k for k, v in extras.items() if v is not None and v not in _DEFAULTS.get(k, ())}


def carries(req: ChatRequest, param: str) -> bool:
    """Whether ``req`` sends ``param``: a top-level field, or (``cache_control``) a breakpoint anywhere."""
    return param in req.raw() or (param == MARK and bool(marks(req)))


def estimate_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


@dataclass(slots=True)
class Slot:
    """One admitted attempt."""

    entry: ModelEntry
    adapter: Adapter
    drop: frozenset[str]
    ticket: Ticket
    started: float
    # Seconds this attempt may take to its first token (streams) or its answer.
    timeout: float
    # That limit is the route's deadline, shorter than the attempt's own.
    by_deadline: bool


class Walk:
    """The candidates of one request, admitted one at a time within its budget."""

    def __init__(
        self,
        fleet: Fleet,
        health: Health,
        route: Route,
        candidates: Sequence[ModelEntry],
        req: ChatRequest,
        report: Report,
    ) -> None:
        self.health = health
        self.guard = fleet.guard
        self.refusals = fleet.refusals
        self.refuse = fleet.config.gateway.unsupported_params == "refuse"
        self.route = route
        self.req = req
        self.report = report
        self.queue = deque(supported(fleet, route, candidates, req))
        self.t0 = time.monotonic()
        self.started = 0
        self.stopped = False
        self.excluded: set[str] = set()  # backends that refused us account-wide (blocked, key, billing)
        self.floor: int | None = None  # after a context-length refusal: windows must be larger
        self.continuing = False  # a rescue: only candidates that can continue a partial answer
        self.benched: list[tuple[ModelEntry, Adapter, frozenset[str]]] = []  # skipped by an open breaker
        self.panic = False

    def own_limit(self, adapter: Adapter) -> float:
        return adapter.config.timeout

    async def next(self) -> Slot | None:
        slot = await self._admit_next()
        if slot is None and self.benched and not self.started and not self.stopped:
            # Every candidate is behind a breaker opened by failures: a certain refusal helps
            # nobody, so they are tried anyway (as Envoy's panic threshold does). Blocked
            # backends and refused keys stay out.
            log.warning("every candidate of route '%s' is behind an open breaker: trying them anyway",
                        self.route.name)
            self.panic = True
            self.queue.extend(self.benched)
            self.benched.clear()
            slot = await self._admit_next()
        return slot

    async def _admit_next(self) -> Slot | None:
        cfg = self.route.config
        while self.queue and not self.stopped and self.started < cfg.max_attempts:
            left = cfg.deadline - (time.monotonic() - self.t0)
            if left <= 0:
                return None
            entry, adapter, drop = self.queue.popleft()
            if not self._eligible(entry, adapter):
                continue
            ticket = Ticket(entry) if self.panic else await self.health.admit(entry)
            if isinstance(ticket, UpstreamError):
                self.report.skipped.append(ticket)
                if ticket.code in PANIC_CODES:
                    self.benched.append((entry, adapter, drop))
                continue
            self.started += 1
            own = self.own_limit(adapter)
            return Slot(entry, adapter, drop, ticket, time.monotonic(), min(own, left), left < own)
        return None

    def _eligible(self, entry: ModelEntry, adapter: Adapter) -> bool:
        if entry.backend in self.excluded:
            return False
        if self.floor is not None and (entry.context_window or 0) <= self.floor:
            return False
        return not self.continuing or adapter.continues(entry.upstream)

    async def failed(self, slot: Slot, exc: BaseException) -> bool:
        err = as_upstream(exc, slot, self.guard)
        # A timeout cut short by the route's deadline says nothing about the backend.
        counts = not (slot.by_deadline and isinstance(err, UpstreamTimeout))
        await self.health.settle(slot.ticket, err, counts=counts)
        if err.usage is not None:
            self.report.bill(slot.entry, err.usage)
        self.report.fail(slot.entry, err, slot.started)
        self.learn(slot.entry, err)
        if isinstance(err, UpstreamParamRefused):
            self.try_without(slot, err)
        return err.may_fall_over

    def try_without(self, slot: Slot, err: UpstreamParamRefused) -> None:
        """The same model next, without a parameter it refused that it can answer without (``polyroute.refusals``);
        remembered for later requests when it refuses the parameter whatever its value. One the answer is read by
        (``ANSWER_SHAPING``) is remembered too, so that later requests carrying it pass the model over."""
        param = err.param
        if param is None or param in slot.drop:
            return
        if err.always and param in ANSWER_SHAPING:  # not to go without: passed over for it from now on
            self.refusals.note(slot.entry.backend, slot.entry.upstream, param)
            log.info("%s/%s refuses '%s': passed over for it from now on", slot.entry.backend, slot.entry.name, param)
            return
        if param not in DROPPABLE:
            return
        if param not in OWN and (self.refuse or not carries(self.req, param)):
            return
        entry = slot.entry
        if err.always:
            self.refusals.note(entry.backend, entry.upstream, param)
            log.info("%s/%s refuses '%s': sent without it from now on", entry.backend, entry.name, param)
        self.queue.appendleft((entry, slot.adapter, slot.drop | {param}))

    def learn(self, entry: ModelEntry, err: UpstreamError) -> None:
        """What one failure means for the rest of this request's walk."""
        if err.account_wide:
            self.excluded.add(entry.backend)
        if isinstance(err, UpstreamContextExceeded):
            self.floor = max(self.floor or 0, entry.context_window or 0)
        if not err.may_fall_over:
            self.stopped = True

    async def succeeded(self, slot: Slot) -> None:
        await self.health.settle(slot.ticket, None)
        self.report.record(slot.entry, "ok", slot.started)
        self.report.model = slot.entry
        # What the client sent and this model went without (not what the gateway added and took away again).
        self.report.dropped |= slot.drop - OWN if slot.drop & OWN else slot.drop

    async def release(self, slot: Slot) -> None:
        await self.health.release(slot.ticket)
        self.report.record(slot.entry, "cancelled", slot.started)

    def bill_abandoned(self, slot: Slot, usage: Usage | None = None) -> None:
        """An attempt given up (a hedge's loser): the upstream has read, and billed, the prompt."""
        if not self.report.bill(slot.entry, usage):
            self.report.bill_estimate(slot.entry, sum(len(m.text()) for m in self.req.messages), 0)

    def call(self, slot: Slot, prefix: str | None = None) -> Call:
        return Call(self.req, slot.entry.upstream, slot.drop, prefix=prefix,
                    timeout=min(slot.adapter.config.timeout, slot.timeout))

    def give_up(self) -> AllAttemptsFailed:
        n = len(self.report.attempts)
        listed = n and self.report.skipped and not self.stopped  # the skipped are listed with the errors
        skipped = f", {len(self.report.skipped)} candidate(s) skipped" if listed else ""
        what = f"all {n} attempt(s) for '{self.route.name}' failed{skipped}" if n else (
            f"no candidate of '{self.route.name}' could be tried"
        )
        if self.report.left_out:
            what += f" (left out before trying: {'; '.join(self.report.left_out)})"
        # The client's own error stands alone; otherwise the skipped candidates say why they were not tried.
        errors = self.report.errors if self.stopped else [*self.report.errors, *self.report.skipped]
        return AllAttemptsFailed(what, attempts=self.report.attempts, errors=errors)


def supported(
    fleet: Fleet, route: Route, candidates: Sequence[ModelEntry], req: ChatRequest
) -> list[tuple[ModelEntry, Adapter, frozenset[str]]]:
    """Each candidate with the parameters it will drop; with ``refuse``, those that can honour all."""
    wanted = requested_params(req)
    extras = req.extras()
    sent_extras = asked_extras(extras)
    refuse = fleet.config.gateway.unsupported_params == "refuse"
    out: list[tuple[ModelEntry, Adapter, frozenset[str]]] = []
    refused: set[str] = set()
    for entry in candidates:
        adapter = fleet.adapters[entry.backend]
        missing = adapter.unsupported(wanted, entry.upstream)
        if sent_extras and (carried := adapter.extras) is not None:
            missing |= sent_extras - carried  # fields this wire format has no place for
        if learned := fleet.refusals.of(entry.backend, entry.upstream):  # refused by the model lately
            # A field sent with a value that asks for nothing (null, its default) is no reason to pass it over.
            unasked = (extras.keys() - sent_extras) | ({"response_format", "stop"} - wanted)
            missing |= learned & ((req.raw().keys() - unasked) | OWN | ({MARK} if marks(req) else set()))
        if "tools" in wanted and entry.lacks_tools:
            # Kept only as a fallback (polyroute.routing): it answers without the tools.
            missing |= wanted & _TOOL_PARAMS
        if refuse and missing - OWN:
            refused |= missing - OWN  # what the gateway adds itself is never the client's to change
            continue
        if kept := missing & ANSWER_SHAPING:
            refused |= kept
            continue
        out.append((entry, adapter, missing))
    if not out:
        names = ", ".join(sorted(refused))
        meant = [f"{name!r} is not a field of OpenAI's request{hint}" for name in sorted(refused & sent_extras)
                 if (hint := _did_you_mean(name))]
        said = f" ({'; '.join(meant)})" if meant else ""
        raise InvalidRequest(f"no candidate of '{route.name}' supports: {names}{said}", param=sorted(refused)[0])
    return out


def _did_you_mean(field: str) -> str:
    """`` (did you mean 'x'?)`` for a field of the request one typo away from ``field``."""
    close = difflib.get_close_matches(field, list(ChatRequest.model_fields), n=1, cutoff=0.8)
    return f" (did you mean {close[0]!r}?)" if close else ""


def as_upstream(exc: BaseException, slot: Slot, guard: UpstreamGuard | None = None) -> UpstreamError:
    """The error an attempt ended with, as the gateway keeps it: where upstream text enters its accounts."""
    entry = slot.entry
    if isinstance(exc, UpstreamError):
        exc.backend = exc.backend or entry.backend
        exc.model = entry.name
        return guard(exc) if guard is not None else exc
    return UpstreamTimeout(f"no answer within {slot.timeout:.2f}s", backend=entry.backend, model=entry.name)
