"""``strategy = "cheapest"``: lowest estimated cost of this request first.

The cost is the catalog (or config) price applied to the estimated prompt tokens
and the expected output (the request's max_tokens, else a default). Models whose
price is unknown come last, in listed order; ties keep the listed order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from polyroute.fleet import ModelEntry
from polyroute.routing.base import estimate_cost
from polyroute.routing.needs import Needs


class Cheapest:
    name = "cheapest"
    score = "est. cost USD"

    def order(self, candidates: Sequence[ModelEntry], needs: Needs) -> tuple[list[ModelEntry], list[float]]:
        scored: list[tuple[float, int, ModelEntry]] = []
        for i, entry in enumerate(candidates):
            cost = estimate_cost(entry, needs)
            scored.append((math.inf if cost is None else cost, i, entry))
        scored.sort()
        return [e for _, _, e in scored], [c for c, _, _ in scored]
