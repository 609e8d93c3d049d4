"""What a router is trained on, from any mix of sources, as one feature matrix and a label per head.

Labelled prompts (RouteLLM's CSVs, ``polyroute eval`` results) are featurised here;
feedback rows arrive already featurised, as the gateway read them. Each column
(model head) has a label per row, NaN where that row says nothing of that model:
feedback labels only the model that answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from polyroute.quality.data import Example
from polyroute.quality.decision_store import Labelled
from polyroute.quality.evaluate import L2, label_arrays
from polyroute.quality.features import CHEAP_NAMES, EMBED_DIM, Embedder
from polyroute.quality.metrics import FloatArray
from polyroute.quality.model import QualityModel, featurize

WIDTH = len(CHEAP_NAMES) + EMBED_DIM


@dataclass
class TrainingSet:
    x: FloatArray = field(default_factory=lambda: np.zeros((0, WIDTH)))
    labels: dict[str, FloatArray] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.x)

    def add(self, x: FloatArray, labels: dict[str, FloatArray]) -> None:
        n_old, n_new = len(self.x), len(x)
        for col in dict.fromkeys([*self.labels, *labels]):
            old = self.labels.get(col, np.full(n_old, np.nan))
            self.labels[col] = np.concatenate([old, labels.get(col, np.full(n_new, np.nan))])
        self.x = np.vstack([self.x, x])

    def add_examples(self, examples: Sequence[Example], columns: Sequence[str], embedder: Embedder) -> None:
        self.add(featurize([e.prompt for e in examples], embedder, True), label_arrays(examples, columns))

    def add_feedback(self, rows: Sequence[Labelled]) -> None:
        if not rows:
            return
        x = np.vstack([r.features.astype(np.float64) for r in rows])
        labels: dict[str, FloatArray] = {}
        for i, r in enumerate(rows):
            labels.setdefault(r.column, np.full(len(rows), np.nan))[i] = r.score
        self.add(x, labels)

    def fit(self, base: QualityModel | None = None) -> QualityModel:
        """One head per column; with ``base``, a warm start from it (its heads without new labels kept)."""
        embedding = True if base is None else base.embedding
        x = self.x if embedding else self.x[:, : len(CHEAP_NAMES)]
        return QualityModel.train(x, self.labels, embedding, L2, base)
