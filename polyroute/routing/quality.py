"""``strategy = "quality"``: the cheapest candidate predicted to answer this prompt well.

The score is the router model's P(this model answers the prompt well), from the
last user message alone (see ``polyroute.quality``). The first candidate is the
cheapest whose prediction reaches the route's ``quality_target``; when none does,
the one with the highest prediction. The rest follow in price order, as
``cheapest`` orders them, for failover. A client may move the target with
``x-polyroute-quality``, within the route's ``quality_min`` and ``quality_max``.
A model the router has no column for gets no prediction (score unknown) and
never goes first on a prediction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from polyroute.fleet import ModelEntry
from polyroute.quality.features import F32, Embedder
from polyroute.quality.scorer import Scorer
from polyroute.routing.cheapest import Cheapest
from polyroute.routing.needs import Needs
from polyroute.types import ChatRequest

# Prompts past this are cut before their features are computed: a decision stays in microseconds.
MAX_PROMPT_CHARS = 8000


@dataclass(frozen=True, slots=True)
class Judgement:
    """What the router read of one prompt and predicted: kept with the decision, so feedback can teach it."""

    prompt: str
    cheap: list[float]
    embedding: F32 | None
    predicted: dict[str, float]  # by router column
    target: float
    columns: Mapping[str, str]  # model -> its router column, where it is not the model's own name

    def column(self, model: str) -> str:
        return self.columns.get(model, model)


class Quality:
    name = "quality"
    score = "P(good answer)"

    def __init__(
        self, scorer: Scorer, target: float, columns: Mapping[str, str], bounds: tuple[float, float] = (0.0, 1.0),
        path: Path | None = None, route: str = "", models: tuple[str, ...] = (),
    ) -> None:
        # Replaced whole when the file at ``path`` changes (polyroute.quality.watch).
        self.scorer = scorer
        self.path = path or Path("")
        self.target = target
        self.bounds = bounds
        self.route = route
        self.models = models  # the route's, for what a reloaded file has no head for
        self._columns = dict(columns)
        self._cheapest = Cheapest()

    @classmethod
    def load(
        cls, path: Path, target: float, bounds: tuple[float, float], columns: Mapping[str, str], embedder: Embedder,
        route: str = "", models: tuple[str, ...] = (),
    ) -> Quality:
        return cls(Scorer.load(path, embedder), target, columns, bounds, path, route, models)

    def headless(self, scorer: Scorer) -> list[str]:
        """The route's models ``scorer`` has no head for: they get no prediction."""
        return [m for m in self.models if self._columns.get(m, m) not in scorer.columns]

    def target_for(self, asked: float | None) -> float:
        """The route's target, or the client's (x-polyroute-quality) kept within the route's bounds."""
        if asked is None:
            return self.target
        low, high = self.bounds
        return min(max(asked, low), high)

    def order(self, candidates: Sequence[ModelEntry], needs: Needs) -> tuple[list[ModelEntry], list[float]]:
        """Without a prompt to judge: price order (the protocol's fallback)."""
        return self._cheapest.order(candidates, needs)

    def predictions(self, req: ChatRequest) -> dict[str, float]:
        return self.scorer.predict(_prompt(req)[:MAX_PROMPT_CHARS])

    def judge(self, req: ChatRequest, asked: float | None) -> Judgement:
        """The prompt's features and every column's prediction, at the target this request gets."""
        scorer = self.scorer  # read once: a reload may replace it meanwhile
        prompt = _prompt(req)[:MAX_PROMPT_CHARS]
        cheap, emb = scorer.features(prompt)
        return Judgement(prompt, cheap, emb, scorer.predict_from(cheap, emb), self.target_for(asked), self._columns)

    def rank(
        self, candidates: Sequence[ModelEntry], needs: Needs, predicted: Mapping[str, float], target: float
    ) -> tuple[list[ModelEntry], list[float], str]:
        """Candidates best first, their predictions (NaN: none), and why the first is first."""
        by_price, _ = self._cheapest.order(candidates, needs)
        p = {e.name: predicted.get(self._columns.get(e.name, e.name), math.nan) for e in by_price}
        first = next((e for e in by_price if p[e.name] >= target), None)
        if first is not None:
            why = f"P(good answer); first: the cheapest at or above target {target:g}"
        else:
            known = [e for e in by_price if not math.isnan(p[e.name])]
            first = max(known, key=lambda e: p[e.name]) if known else None
            why = (f"P(good answer); none reaches target {target:g}, first: the highest" if known
                   else "P(good answer); the router has a head for no candidate: price order")
        ordered = by_price if first is None else [first, *(e for e in by_price if e is not first)]
        return ordered, [p[e.name] for e in ordered], why


def _prompt(req: ChatRequest) -> str:
    for message in reversed(req.messages):
        if message.role == "user":
            return message.text()
    return req.messages[-1].text() if req.messages else ""
