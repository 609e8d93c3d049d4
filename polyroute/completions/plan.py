"""Which models of a route may answer a text completion request, and in what order.

The chat router decides first, on a chat request of the same size (``stand_in``): the
caller's key and policies, context windows, the route's strategy and its prices. Then
a candidate is left out when its backend has no text completions endpoint, or cannot
take what the request asks (several prompts, ``suffix``, ``logprobs``...), with why; a
text completion is never turned into a chat request behind the client's back. When
that leaves nothing, the client is told why in a 400 naming the parameter.
"""

from __future__ import annotations

from dataclasses import replace

from polyroute.errors import InvalidRequest
from polyroute.fleet import Fleet, ModelEntry
from polyroute.routing import Plan, Principal, Router

from .types import CompletionRequest


class CompletionPlanner:
    """The candidates of text completion requests."""

    def __init__(self, fleet: Fleet, router: Router) -> None:
        self.fleet = fleet
        self.router = router

    def plan(self, req: CompletionRequest, principal: Principal, narrow: str | None = None) -> tuple[Plan, list[str]]:
        """The candidates to try, in order, and the route's models left out before any attempt for what a key may
        be told (the request's length, a backend that cannot complete this text), each with why; a 400 when no
        backend of the route can complete text as asked."""
        route = self.fleet.resolve(req.model)
        if route.models[0].embeds:
            raise InvalidRequest(f"'{route.name}' is an embedding model: send it to POST /v1/embeddings.",
                                 param="model")
        decided = self.router.decide(route, req.stand_in(), principal, narrow)
        kept: list[ModelEntry] = []
        unable: list[tuple[ModelEntry, str]] = []
        params: set[str] = set()
        for entry in decided.candidates:
            refusal = self.fleet.adapters[entry.backend].text_refusal(req, entry.upstream)
            if refusal is None:
                kept.append(entry)
            else:
                params.add(refusal[0])
                unable.append((entry, refusal[1]))
        plan = replace(decided, candidates=kept, excluded=[*decided.excluded, *unable],
                       scores={k.name: decided.scores[k.name] for k in kept if k.name in decided.scores})
        if kept:
            return plan, [*decided.left_out(), *(f"{e.name}: {reason}" for e, reason in unable)]
        if unable and not decided.excluded:
            why = "; ".join(f"{e.name}: {reason}" for e, reason in unable)
            raise InvalidRequest(f"No candidate of '{route.name}' can serve this text completion: {why}.",
                                 param=sorted(params)[0])
        raise plan.refusal()

