"""The strategy seam: one small protocol that orders a route's admitted candidates.

A strategy sees only candidates that already satisfy the policy and the
request's needs, so no ordering can ever break a policy. It returns them all,
best first, each with the score it was ranked by (what the score means is the
strategy's ``score`` label, shown by ``polyroute route explain``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from polyroute.fleet import ModelEntry
from polyroute.routing.needs import Needs


class Strategy(Protocol):
    name: str
    # What a score means, for explanations: "position", "est. cost USD", ...
    score: str

    def order(self, candidates: Sequence[ModelEntry], needs: Needs) -> tuple[list[ModelEntry], list[float]]:
        """Every candidate, best first, with its score in the same order."""
        ...


def estimate_cost(entry: ModelEntry, needs: Needs) -> float | None:
    """USD for the request's estimated prompt and expected output; None when the price is unknown."""
    if not entry.price_known:
        return None
    return (needs.prompt_tokens * entry.input_per_mtok + needs.output_tokens * entry.output_per_mtok) / 1_000_000
