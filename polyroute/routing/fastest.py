"""``strategy = "fastest"``: least expected time for this request first.

Expected time is the model's moving average time to first token plus the
expected output tokens at its moving average tokens per second (see ``stats``).
A model not measured yet is ranked as fast as the fastest measured one, and
ahead of it, so that every model gets tried and measured; ties keep the listed
order.
"""

from __future__ import annotations

from collections.abc import Sequence

from polyroute.fleet import ModelEntry
from polyroute.routing.needs import Needs
from polyroute.routing.stats import LatencyStats


class Fastest:
    name = "fastest"
    score = "expected seconds"

    def __init__(self, stats: LatencyStats) -> None:
        self.stats = stats

    def order(self, candidates: Sequence[ModelEntry], needs: Needs) -> tuple[list[ModelEntry], list[float]]:
        tokens = needs.output_tokens
        expected = [self.stats.expected_seconds(e.name, tokens) for e in candidates]
        measured = [s for s in expected if s is not None]
        prior = min(measured) if measured else 0.0
        scored = sorted(
            (prior if s is None else s, s is not None, i) for i, s in enumerate(expected)
        )
        return [candidates[i] for _, _, i in scored], [s for s, _, _ in scored]
