"""``strategy = "weighted"``: traffic shares from the route's ``weights``.

The first candidate is drawn with probability proportional to its weight among
the admitted candidates; the rest of the weighted ones follow in a weighted
draw without replacement (Efraimidis-Spirakis keys), then every candidate with
no weight, in listed order, as fallbacks. A route without ``weights`` shares
equally. The score is the candidate's share of first attempts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from polyroute.fleet import ModelEntry
from polyroute.routing.needs import Needs


class Weighted:
    name = "weighted"
    score = "share"

    def __init__(self, weights: Mapping[str, float] | None, rng: random.Random) -> None:
        # Zero, negative or non-finite weights mean "fallback only".
        self.weights = None if weights is None else {
            k: w for k, w in weights.items() if math.isfinite(w) and w > 0
        }
        self.rng = rng

    def weight(self, name: str) -> float:
        return 1.0 if self.weights is None else self.weights.get(name, 0.0)

    def order(self, candidates: Sequence[ModelEntry], needs: Needs) -> tuple[list[ModelEntry], list[float]]:
        weights = [self.weight(e.name) for e in candidates]
        total = sum(weights)
        draw = self.rng.random
        keyed: list[tuple[float, int]] = []
        rest: list[int] = []
        for i, w in enumerate(weights):
            if w > 0:
                # Largest u ** (1/w) first; log form avoids underflow for small weights.
                keyed.append((math.log(draw() or 1e-300) / w, i))
            else:
                rest.append(i)
        keyed.sort(reverse=True)
        picks = [i for _, i in keyed] + rest
        return [candidates[i] for i in picks], [weights[i] / total if total else 0.0 for i in picks]
