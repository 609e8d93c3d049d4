"""``strategy = "ordered"``: the route's models as listed; the score is the position."""

from __future__ import annotations

from collections.abc import Sequence

from polyroute.fleet import ModelEntry
from polyroute.routing.needs import Needs


class Ordered:
    name = "ordered"
    score = "position"

    def order(self, candidates: Sequence[ModelEntry], needs: Needs) -> tuple[list[ModelEntry], list[float]]:
        return list(candidates), [float(i) for i in range(1, len(candidates) + 1)]
