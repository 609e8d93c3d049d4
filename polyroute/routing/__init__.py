"""Routing: which candidates of a route may serve a request, and in what order.

``Router.plan`` keeps the route's models that satisfy the effective policy (see
``policy``) and what the request needs (see ``needs``), then orders them with the
route's strategy (one per module: ``ordered``, ``cheapest``, ``fastest``,
``weighted``, ``quality``; the last judges the prompt itself, so ``decide`` asks
it with the request). The order it returns is all that failover walks, so no failover
can reach a model the policy excludes. Every exclusion carries its reason so a
refusal (``PolicyViolation``, 422) and ``polyroute route explain`` can say why.

Policies always exclude. So do the request's hard needs: a context window too
small for it, a missing ``vision`` capability, and a missing ``tools`` capability
when ``tool_choice`` demands a call (such a model could only answer wrongly).
A missing ``json_mode``, or ``tools`` the model may leave uncalled, only demotes:
the model is kept behind every model that has it, because a plain answer is still
an answer, and what happens to the parameter on a backend that cannot carry it is
``gateway.unsupported_params``'s to decide (drop and name it, or refuse).

The policy half of a decision depends only on (route, policies), so it is worked
out once per pair, at start for the pairs the config names, and kept.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from polyroute.config import Config, RouteConfig
from polyroute.errors import ConfigError, ContextTooLong, Forbidden, InvalidRequest, PolicyViolation
from polyroute.fleet import Fleet, ModelEntry, Route
from polyroute.routing.base import Strategy, estimate_cost
from polyroute.routing.cheapest import Cheapest
from polyroute.routing.fastest import Fastest
from polyroute.routing.needs import Needs, needs_of
from polyroute.routing.ordered import Ordered
from polyroute.routing.policy import Policy
from polyroute.routing.stats import LatencyStats, Outcome
from polyroute.routing.weighted import Weighted
from polyroute.types import ChatRequest

if TYPE_CHECKING:
    from polyroute.quality.features import Embedder
    from polyroute.quality.watch import RouterWatch
    from polyroute.routing.quality import Judgement, Quality

__all__ = ["LatencyStats", "Needs", "Plan", "Policy", "Principal", "Router", "Strategy"]

_NEED_WORDS = {"tools": "sends tools", "json_mode": "asks for JSON mode", "vision": "contains images"}
# Needs a model may lack and still be tried, after every model that has them ...
_SOFT_NEEDS = frozenset({"json_mode", "tools"})
# ... unless the request leaves no choice.
_FORCED_WORDS = {"tools": "requires a tool call"}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a configured key (by name), or nobody on an open gateway."""

    key: str | None = None
    policy: str | None = None
    routes: frozenset[str] | None = None
    team: str | None = None


@dataclass
class Plan:
    route: Route
    candidates: list[ModelEntry]
    excluded: list[tuple[ModelEntry, str]] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    # The effective policy's names joined by " + ", or None.
    policy: str | None = None
    strategy: str = "ordered"
    score: str = "position"
    needs: Needs | None = None
    # Candidates kept only as fallbacks because they lack a soft need (json_mode) of the request.
    demoted: dict[str, str] = field(default_factory=dict)
    # A "quality" route's reading of the prompt, kept with the decision for feedback.
    judged: Judgement | None = None

    def cost(self, entry: ModelEntry) -> float | None:
        """Estimated USD for this request on ``entry``; None when its price is unknown."""
        return None if self.needs is None else estimate_cost(entry, self.needs)

    def left_out(self) -> list[str]:
        """The route's models this plan left out for the request's length, each with why. (Not those a policy
        left out: a key is not told of models it may not use.)"""
        if not self.excluded:
            return []
        return [f"{e.name}: {reason}" for e, reason in self.excluded if _for_length(reason)]

    def refusal(self) -> PolicyViolation:
        why = "; ".join(f"{e.name}: {reason}" for e, reason in self.excluded)
        if self.excluded and all(_for_length(reason) for _, reason in self.excluded):
            # Nothing but the prompt's length stood in the way: OpenAI's error, which clients handle by trimming.
            head = f"This request is too long for every candidate of '{self.route.name}'. {why}."
            needs = self.needs
            room = max(e.context_window or 0 for e, _ in self.excluded) - (needs.prompt_tokens if needs else 0)
            if needs is not None and needs.max_tokens and room > 0:
                # The prompt fits; max_tokens asks for more room than is left after it: that is what to change.
                return ContextTooLong(f"{head} The prompt fits: send max_tokens of at most about {room}.",
                                      param="max_tokens")
            return ContextTooLong(head)
        if self.policy:
            head = f"No candidate of '{self.route.name}' satisfies policy '{self.policy}' for this request"
        else:
            head = f"No candidate of '{self.route.name}' can serve this request"
        return PolicyViolation(f"{head}. {why}.")


@dataclass(frozen=True, slots=True)
class _Admission:
    """The policy half of a decision for one (route, policies) pair."""

    policy: Policy
    # (entry, capabilities or None when unknown, context window or None) in route order.
    admitted: tuple[tuple[ModelEntry, frozenset[str] | None, int | None], ...]
    excluded: tuple[tuple[ModelEntry, str], ...]


class Router:
    def __init__(self, fleet: Fleet, stats: LatencyStats | None = None, rng: random.Random | None = None) -> None:
        self.fleet = fleet
        self.stats = stats or LatencyStats()
        rng = rng or random.Random()
        self._strategies = {name: _strategy(route, self.stats, rng) for name, route in fleet.routes.items()}
        self._quality, embedder = _quality_strategies(fleet)
        self.watch: RouterWatch | None = None
        if embedder is not None:
            from polyroute.quality.watch import RouterWatch

            self.watch = RouterWatch(self._quality.values(), embedder, fleet.config.gateway.router_poll)
        self._admissions: dict[tuple[str, tuple[str, ...]], _Admission] = {}
        key_policies = {k.policy for k in fleet.config.keys.values()}
        for route in fleet.routes.values():
            for key_policy in key_policies | {None}:
                self._admission(route, self.policy_names(route, key_policy, None))

    # -- the decision ----------------------------------------------------------------------

    def plan(
        self, route: Route, req: ChatRequest, principal: Principal, narrow: str | None = None,
        quality: float | None = None,
    ) -> Plan:
        """The candidates to try, in order; PolicyViolation when none qualifies."""
        plan = self.decide(route, req, principal, narrow, quality)
        if not plan.candidates:
            raise plan.refusal()
        return plan

    def decide(
        self, route: Route, req: ChatRequest, principal: Principal, narrow: str | None = None,
        quality: float | None = None,
    ) -> Plan:
        """Like ``plan`` but an empty plan is returned, not refused (for explanations).

        ``quality`` is the client's quality target; a "quality" route keeps it within its bounds.
        """
        if principal.routes is not None and route.name not in principal.routes:
            raise Forbidden(f"This key may not use '{route.name}'.", param="model")
        if narrow is not None and narrow not in self.fleet.config.policies:
            raise InvalidRequest(f"x-polyroute-policy names no configured policy: {narrow!r}.")
        if principal.policy is not None and principal.policy not in self.fleet.config.policies:
            # A key made in the store with a policy this config lacks, or one removed since: fail closed.
            raise Forbidden(f"This key's policy {principal.policy!r} is not defined in the gateway's config; "
                            "an operator must define it or change the key's policy.")
        adm = self._admission(route, self.policy_names(route, principal.policy, narrow))
        needs = needs_of(req)
        fits, lacking, excluded = _fit(adm, needs)
        strategy = self._strategies[route.name]
        score_label = strategy.score
        qs = self._quality.get(route.name)
        judged = None
        if qs is not None:
            # The route's quality router judges the prompt once; every candidate is ranked on it.
            judged = qs.judge(req, quality)
            predicted, target = judged.predicted, judged.target
            ordered, scores, score_label = qs.rank(fits, needs, predicted, target)
            if lacking:
                more, more_scores, _ = qs.rank([e for e, _ in lacking], needs, predicted, target)
                ordered += more
                scores += more_scores
        else:
            ordered, scores = strategy.order(fits, needs) if fits else ([], [])
            if lacking:
                more, more_scores = strategy.order([e for e, _ in lacking], needs)
                ordered += more
                scores += more_scores
        return Plan(
            route=route,
            candidates=ordered,
            excluded=excluded,
            scores={e.name: s for e, s in zip(ordered, scores, strict=True)},
            policy=adm.policy.label,
            strategy=strategy.name if qs is None else qs.name,
            score=score_label,
            needs=needs,
            demoted={e.name: why for e, why in lacking},
            judged=judged,
        )

    # -- router files read again without a restart ------------------------------------------

    def start(self) -> None:
        """Watch the quality routes' files (on the running event loop)."""
        if self.watch is not None:
            self.watch.start()

    def reload(self) -> None:
        if self.watch is not None:
            self.watch.reload()

    async def aclose(self) -> None:
        if self.watch is not None:
            await self.watch.aclose()

    def observe(self, report: Outcome, first_token_at: float | None = None, ended_at: float | None = None) -> None:
        """Feed one request's attempts to the moving averages that ``fastest`` ranks by."""
        self.stats.observe(report, first_token_at, ended_at)

    # -- policies ----------------------------------------------------------------------------

    def policy_names(self, route: Route, key_policy: str | None, narrow: str | None) -> tuple[str, ...]:
        names: list[str] = []
        for name in (key_policy, route.config.policy, narrow):
            if name is not None and name not in names:
                names.append(name)
        return tuple(names)

    def _admission(self, route: Route, names: tuple[str, ...]) -> _Admission:
        adm = self._admissions.get((route.name, names))
        if adm is None:
            adm = self._admissions[(route.name, names)] = _admit(self.fleet, route, names)
        return adm


def _strategy(route: Route, stats: LatencyStats, rng: random.Random) -> Strategy:
    kind = route.config.strategy
    if kind == "cheapest":
        return Cheapest()
    if kind == "fastest":
        return Fastest(stats)
    if kind == "weighted":
        return Weighted(route.config.weights, rng)
    if kind == "quality":
        return Cheapest()  # the order a quality route falls back to; the prompt itself is judged in decide
    return Ordered()


def _quality_strategies(fleet: Fleet) -> tuple[dict[str, Quality], Embedder | None]:
    """The routes whose strategy is "quality", each with its router loaded (one embedder for all)."""
    routes = [r for r in fleet.routes.values() if r.config.strategy == "quality"]
    if not routes:
        return {}, None
    from polyroute.quality.features import Embedder
    from polyroute.routing.quality import Quality

    embedder = Embedder()
    out: dict[str, Quality] = {}
    for route in routes:
        c = route.config
        try:
            out[route.name] = Quality.load(router_path(fleet.config, c), c.quality_target,
                                           (c.quality_min, c.quality_max), c.router_columns, embedder,
                                           route.name, tuple(m.name for m in route.models))
        except ConfigError as exc:
            raise ConfigError(exc.message, source=fleet.config.source, key=f"routes.{route.name}.router") from None
    return out, embedder


def router_path(config: Config, route: RouteConfig) -> Path:
    """A quality route's router file: relative to the config file, or to the working folder without one."""
    source = config.source
    root = Path.cwd() if source.startswith("<") else Path(source).parent
    path = Path(route.router or "")
    return path if path.is_absolute() else root / path


def quality_cautions(config: Config) -> list[str]:
    """Each quality route's router read as ``serve`` reads it (a ConfigError naming the route when it cannot be),
    and the route's models it has no head for: those get no prediction and come after the best-predicted model."""
    routes = {n: r for n, r in config.routes.items() if r.strategy == "quality"}
    if not routes:
        return []
    from polyroute.quality.model import QualityModel

    out: list[str] = []
    for name, rc in routes.items():
        path = router_path(config, rc)
        try:
            heads = QualityModel.load(path).columns
        except ConfigError as exc:
            raise ConfigError(exc.message, source=config.source, key=f"routes.{name}.router") from None
        missing = [f"{m} (column {rc.router_columns.get(m, m)!r})" for m in rc.models
                   if rc.router_columns.get(m, m) not in heads]
        if missing:
            out.append(f"routes.{name}.router_columns: {path.name} has no head for {', '.join(missing)} (its columns: "
                       f"{', '.join(heads)}): those models get no prediction, so never reach the target: they come "
                       "after the best-predicted model, in price order; map each to a column in router_columns")
    return out


def _admit(fleet: Fleet, route: Route, names: tuple[str, ...]) -> _Admission:
    policy = Policy.combine([(n, fleet.config.policies[n]) for n in names])
    admitted: list[tuple[ModelEntry, frozenset[str] | None, int | None]] = []
    excluded: list[tuple[ModelEntry, str]] = []
    for entry in route.models:
        reasons = policy.exclusions(entry)
        if reasons:
            excluded.append((entry, "; ".join(reasons)))
            continue
        # Capabilities nobody stated (no family, none in the config) are not checked: the
        # backend itself answers whether it can. Only policy facts fail closed.
        caps_known = entry.family is not None or bool(entry.capabilities)
        admitted.append((entry, entry.capabilities if caps_known else None, entry.context_window))
    return _Admission(policy, tuple(admitted), tuple(excluded))


Reasons = list[tuple[ModelEntry, str]]


def _fit(adm: _Admission, needs: Needs) -> tuple[list[ModelEntry], Reasons, Reasons]:
    """Admitted models that can take this request; those lacking a capability; those excluded."""
    wanted, room = needs.capabilities, needs.context_tokens
    soft = _SOFT_NEEDS - {"tools"} if needs.forces_tool_call else _SOFT_NEEDS
    fits: list[ModelEntry] = []
    lacking: Reasons = []
    excluded = list(adm.excluded)
    for entry, caps, window in adm.admitted:
        if window is not None and room > window:
            excluded.append((entry, _too_long(window, needs)))
        elif wanted and caps is not None and not wanted <= caps:
            missing = wanted - caps
            hard = missing - soft
            words = {**_NEED_WORDS, **_FORCED_WORDS} if needs.forces_tool_call else _NEED_WORDS
            uses = ", ".join(words.get(m, m) for m in sorted(missing))
            reason = f"lacks {', '.join(sorted(missing))} (the request {uses})"
            (excluded if hard else lacking).append((entry, reason))
        else:
            fits.append(entry)
    return fits, lacking, excluded


def _too_long(window: int, needs: Needs) -> str:
    limit = f" + max_tokens {needs.max_tokens}" if needs.max_tokens else ""
    return f"context window {window}{_TOO_SMALL}{needs.prompt_tokens} prompt tokens{limit}"


_TOO_SMALL = " is too small for ~"


def _for_length(reason: str) -> bool:
    """Whether a candidate was left out for this request's length (not for a policy's ``min_context``, whose
    reason also speaks of its context window)."""
    return reason.startswith("context window") and _TOO_SMALL in reason
