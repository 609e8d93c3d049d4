"""The router model: one logistic regression per model column, over prompt features.

Each head predicts P(that model answers this prompt well). The file ``train`` writes
is JSON: the feature set, the standardisation, and each head's weights. Nothing in
it is code, and it is a few tens of kilobytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson

from polyroute.errors import ConfigError
from polyroute.quality.features import CHEAP_NAMES, EMBED_DIM, Embedder, cheap_features

F64 = npt.NDArray[np.float64]
FORMAT = "polyroute-quality-router/1"
# A warm start (retraining from feedback) pulls towards the earlier heads at least as hard as this many rows.
PRIOR_ROWS = 200


def featurize(texts: Sequence[str], embedder: Embedder | None, embedding: bool) -> F64:
    """One row per text: the cheap features, then (if ``embedding``) the embedding."""
    width = len(CHEAP_NAMES) + (EMBED_DIM if embedding else 0)
    out = np.zeros((len(texts), width), dtype=np.float64)
    for i, text in enumerate(texts):
        cheap, emb = cheap_features(text, embedder)
        out[i, : len(CHEAP_NAMES)] = cheap
        if embedding and emb is not None:
            out[i, len(CHEAP_NAMES) :] = emb
    return out


def fit_logistic(
    x: F64, y: F64, l2: float, iterations: int = 25, prior: tuple[F64, float] | None = None
) -> tuple[F64, float]:
    """L2-regularised logistic regression by Newton's method; returns (weights, bias).

    ``y`` may hold soft labels in 0..1 (a feedback score) and NaN where a row has no
    label for this head (that row is left out). Without ``prior`` the weights shrink
    towards zero and the bias is free. With ``prior`` (weights, bias of an earlier fit,
    in the same standardised space) everything shrinks towards it, at least as strongly
    as ``PRIOR_ROWS`` rows would pull: a handful of new labels moves a head a little,
    thousands move it far.
    """
    keep = ~np.isnan(y)
    x, y = x[keep], y[keep]
    n, d = x.shape
    if n == 0:
        raise ValueError("no labelled rows for this head")
    xb = np.hstack([x, np.ones((n, 1))])
    reg = np.full(d + 1, l2)
    if prior is None:
        centre = np.zeros(d + 1)
        reg[-1] = 0.0  # the bias is not shrunk
    else:
        centre = np.append(prior[0], prior[1])
        reg *= max(n, PRIOR_ROWS) / n
    w = centre.copy()
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) / n + reg * (w - centre)
        hess = (xb.T * (p * (1 - p))) @ xb / n + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return w[:-1], float(w[-1])


@dataclass(frozen=True)
class QualityModel:
    columns: tuple[str, ...]
    embedding: bool
    mean: F64
    scale: F64
    weights: dict[str, F64]
    bias: dict[str, float]

    @classmethod
    def train(
        cls, x: F64, labels: dict[str, F64], embedding: bool, l2: float, base: QualityModel | None = None
    ) -> QualityModel:
        """One head per column of ``labels`` (NaN: no label for that row).

        With ``base``, its standardisation is kept and each head starts from (and is
        pulled towards) the base's head of that column; the base's heads without new
        labels are kept as they are.
        """
        if base is not None:
            mean, scale = base.mean, base.scale
        else:
            mean = x.mean(axis=0)
            scale = x.std(axis=0)
            # A feature (nearly) constant in training says nothing; left unscaled, rounding noise in
            # its spread would blow up whatever value a new prompt gives it.
            scale[scale < 1e-6] = 1.0
        z = (x - mean) / scale
        weights: dict[str, F64] = {} if base is None else dict(base.weights)
        bias: dict[str, float] = {} if base is None else dict(base.bias)
        for col, y in labels.items():
            if not np.any(~np.isnan(y)):
                continue
            prior = None if base is None or col not in base.weights else (base.weights[col], base.bias[col])
            weights[col], bias[col] = fit_logistic(z, y, l2, prior=prior)
        columns = tuple(dict.fromkeys([*(base.columns if base else ()), *(c for c in labels if c in weights)]))
        if not columns:
            raise ValueError("no column has a label")
        return cls(columns, embedding, mean, scale, weights, bias)

    def predict(self, x: F64) -> dict[str, F64]:
        """P(answers well) for every row of ``x``, per column."""
        z = (x - self.mean) / self.scale
        return {c: 1.0 / (1.0 + np.exp(-(z @ self.weights[c] + self.bias[c]))) for c in self.columns}

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT,
            "features": list(CHEAP_NAMES) + (["embedding"] * EMBED_DIM if self.embedding else []),
            "embedding": self.embedding,
            "columns": list(self.columns),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "heads": {c: {"weights": self.weights[c].tolist(), "bias": self.bias[c]} for c in self.columns},
        }
        return orjson.dumps(doc)

    @classmethod
    def load(cls, path: str | Path) -> QualityModel:
        try:
            doc = orjson.loads(Path(path).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigError(f"Cannot read the router model {path}: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ConfigError(f"{path} is not a polyroute quality router (format {FORMAT!r}).")
        try:
            embedding = bool(doc["embedding"])
            width = len(CHEAP_NAMES) + (EMBED_DIM if embedding else 0)
            if list(doc["features"][: len(CHEAP_NAMES)]) != list(CHEAP_NAMES) or len(doc["mean"]) != width:
                raise ValueError("its features are not this version's")
            columns = tuple(str(c) for c in doc["columns"])
            heads = doc["heads"]
            weights = {c: np.asarray(heads[c]["weights"], dtype=np.float64) for c in columns}
            if any(len(w) != width for w in weights.values()) or not columns:
                raise ValueError("a head's width does not match the features")
            return cls(
                columns=columns,
                embedding=embedding,
                mean=np.asarray(doc["mean"], dtype=np.float64),
                scale=np.asarray(doc["scale"], dtype=np.float64),
                weights=weights,
                bias={c: float(heads[c]["bias"]) for c in columns},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: malformed router model: {exc}") from exc
