"""Which models of a route may answer an embeddings request, and in what order.

The route must be one of embedding models (a chat model's name is a 400 that says where
to send it). The caller's policies exclude as they do for chat; a candidate is also left
out when its backend cannot take what the request sends (token ids, ``dimensions``, more
inputs than its server allows, a provider field it cannot answer in OpenAI's shape:
``polyroute.embeddings.dialects``) or when an input is longer than its window. The
route's strategy orders what is left: its price is the input tokens' alone (an embedding
has no output to bill).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from polyroute.errors import ContextTooLong, Forbidden, InvalidRequest
from polyroute.fleet import Fleet, ModelEntry, Route
from polyroute.routing import Plan, Principal, Router
from polyroute.routing.base import Strategy
from polyroute.routing.cheapest import Cheapest
from polyroute.routing.fastest import Fastest
from polyroute.routing.needs import Needs, estimate_text_tokens
from polyroute.routing.ordered import Ordered
from polyroute.routing.policy import Policy
from polyroute.routing.weighted import Weighted

from .dialects import dialect_of
from .types import EmbeddingRequest

# Shared with routing's reasons, so that a request too long for every candidate is OpenAI's context_length_exceeded.
_TOO_SMALL = " is too small for ~"


@dataclass(frozen=True, slots=True)
class EmbeddingNeeds(Needs):
    """An embeddings request's size: its input tokens; it asks for no output."""

    longest: int = 0  # the longest input's tokens: each input must fit the window on its own

    @property
    def output_tokens(self) -> int:
        return 0


def input_tokens(req: EmbeddingRequest) -> tuple[int, int]:
    """The request's input tokens, estimated for texts (counted for token ids): in all, and its longest input's."""
    counts = [estimate_text_tokens(x) if isinstance(x, str) else len(x) for x in req.inputs]
    return sum(counts), max(counts)


def not_for_chat(route: Route) -> InvalidRequest:
    """The refusal of a chat request to an embedding route."""
    return InvalidRequest(f"'{route.name}' is an embedding model: send it to POST /v1/embeddings, not to a chat, "
                          "Responses or Messages endpoint.", param="model")


class EmbeddingPlanner:
    """The candidates of embeddings requests, built once per gateway (each embedding route's strategy)."""

    def __init__(self, fleet: Fleet, router: Router, rng: random.Random | None = None) -> None:
        self.fleet = fleet
        self.router = router
        rng = rng or random.Random()
        self.strategies: dict[str, Strategy] = {
            name: _strategy(route, router, rng) for name, route in fleet.routes.items()
            if route.models and route.models[0].embeds
        }

    def plan(self, req: EmbeddingRequest, principal: Principal, narrow: str | None = None) -> Plan:
        """The candidates to try, in order; a 400 for a chat model, a 403 or 422 when the caller may use none."""
        fleet = self.fleet
        route = fleet.resolve(req.model)
        if not (route.models and route.models[0].embeds):
            embedders = sorted(n for n, r in fleet.routes.items() if r.models and r.models[0].embeds)
            known = f"; embedding models here: {', '.join(embedders)}" if embedders else (
                "; this gateway serves none")
            raise InvalidRequest(f"'{route.name}' is a chat model, not an embedding model{known}.", param="model")
        self._check_caller(route, principal, narrow)
        names = self.router.policy_names(route, principal.policy, narrow)
        policy = Policy.combine([(n, fleet.config.policies[n]) for n in names])
        total, longest = input_tokens(req)
        needs = EmbeddingNeeds(capabilities=frozenset({"embeddings"}), prompt_tokens=total, max_tokens=None,
                               longest=longest)
        fits: list[ModelEntry] = []
        excluded: list[tuple[ModelEntry, str]] = []
        refused: set[str] = set()
        for entry in route.models:
            if reasons := policy.exclusions(entry):
                excluded.append((entry, "; ".join(reasons)))
            elif why := self._cannot_take(entry, req, refused):
                excluded.append((entry, why))
            elif entry.context_window is not None and longest > entry.context_window:
                excluded.append((entry, f"context window {entry.context_window}{_TOO_SMALL}{longest} prompt tokens "
                                        "(the longest input)"))
            else:
                fits.append(entry)
        strategy = self.strategies.get(route.name) or Ordered()
        ordered, scores = strategy.order(fits, needs) if fits else ([], [])
        plan = Plan(route=route, candidates=ordered, excluded=excluded,
                    scores={e.name: s for e, s in zip(ordered, scores, strict=True)}, policy=policy.label,
                    strategy=strategy.name, score=strategy.score, needs=needs)
        if not ordered:
            if refused and len(refused) == len(excluded):
                param = sorted(refused)[0]
                raise InvalidRequest(f"no candidate of '{route.name}' takes {param}: "
                                     f"{'; '.join(f'{e.name}: {why}' for e, why in excluded)}.", param=param)
            refusal = plan.refusal()
            if isinstance(refusal, ContextTooLong):
                refusal.param = "input"  # OpenAI's context_length_exceeded, about the field that is too long
            raise refusal
        return plan

    def _check_caller(self, route: Route, principal: Principal, narrow: str | None) -> None:
        """What a key may not do here, refused as the chat path refuses it."""
        policies = self.fleet.config.policies
        if principal.routes is not None and route.name not in principal.routes:
            raise Forbidden(f"This key may not use '{route.name}'.", param="model")
        if narrow is not None and narrow not in policies:
            raise InvalidRequest(f"x-polyroute-policy names no configured policy: {narrow!r}.")
        if principal.policy is not None and principal.policy not in policies:
            raise Forbidden(f"This key's policy {principal.policy!r} is not defined in the gateway's config; "
                            "an operator must define it or change the key's policy.")

    def _cannot_take(self, entry: ModelEntry, req: EmbeddingRequest, refused: set[str]) -> str | None:
        """Why ``entry``'s backend cannot take what ``req`` sends (the parameter noted in ``refused``), or None."""
        adapter = self.fleet.adapters[entry.backend]
        if not adapter.embeds:
            refused.add("model")
            return f"backends of type {adapter.kind!r} have no embeddings endpoint"
        if req.texts is None and not adapter.embeds_tokens:
            refused.add("input")
            return f"backends of type {adapter.kind!r} take text, not token ids"
        if req.dimensions is not None and not adapter.embeds_dimensions:
            refused.add("dimensions")
            return f"backends of type {adapter.kind!r} cannot shorten vectors (dimensions)"
        if (refusal := dialect_of(adapter).refusal(req)) is not None:
            param, why = refusal
            refused.add(param)
            return why
        return None


def _strategy(route: Route, router: Router, rng: random.Random) -> Strategy:
    """The route's strategy for embeddings (a "quality" route, refused by config check, is ordered by price)."""
    kind = route.config.strategy
    if kind in ("cheapest", "quality"):
        return Cheapest()
    if kind == "fastest":
        return Fastest(router.stats)
    if kind == "weighted":
        return Weighted(route.config.weights, rng)
    return Ordered()
