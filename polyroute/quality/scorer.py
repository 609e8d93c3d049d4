"""A loaded router: the model file plus the features it needs, ready to score one prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polyroute.quality.features import CHEAP_NAMES, F32, Embedder, cheap_features
from polyroute.quality.model import QualityModel


class Scorer:
    """Predicts, for one prompt, P(each model column answers it well)."""

    def __init__(self, model: QualityModel, embedder: Embedder | None = None) -> None:
        self.model = model
        # The embedder also feeds cheap features (rare words, choice similarity), so every model needs it.
        self.embedder = embedder or Embedder()
        self._heads = np.stack([model.weights[c] / model.scale for c in model.columns])
        self._bias = np.asarray(
            [model.bias[c] - float(model.weights[c] @ (model.mean / model.scale)) for c in model.columns]
        )

    @classmethod
    def load(cls, path: str | Path, embedder: Embedder | None = None) -> Scorer:
        return cls(QualityModel.load(path), embedder)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.model.columns

    def features(self, text: str) -> tuple[list[float], F32 | None]:
        """The prompt's cheap features and its embedding, as ``predict_from`` takes them."""
        return cheap_features(text, self.embedder)

    def predict(self, text: str) -> dict[str, float]:
        return self.predict_from(*self.features(text))

    def predict_from(self, cheap: list[float], emb: F32 | None) -> dict[str, float]:
        heads = self._heads
        logits = heads[:, : len(CHEAP_NAMES)] @ np.asarray(cheap) + self._bias
        if self.model.embedding and emb is not None:
            logits += heads[:, len(CHEAP_NAMES) :] @ emb
        probs = 1.0 / (1.0 + np.exp(-logits))
        return dict(zip(self.model.columns, probs.tolist(), strict=True))
