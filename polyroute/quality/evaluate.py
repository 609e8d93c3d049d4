"""Training and honest evaluation of a quality router on labelled prompts.

The routing score of a prompt is P(strong answers well) - P(weak answers well):
the expected gain of sending it to the strong model. Every result is reported
beside references measured on the same prompts: random routing, the oracle, the
length baseline (longest prompts to the strong model, nothing learned) and the
group-rate oracle: each prompt scored by the true gain rate of its group (for MMLU,
the share of its subject's prompts that only the strong model answers). That one
cheats, as the oracle does, but only at the level of groups: it is what a router
would reach that knew each unseen subject's difficulty exactly and nothing within it.

Cross-validation keeps groups whole (for MMLU a group is a subject file), so no
subject a fold is scored on was seen in training: a router must learn difficulty,
not subjects.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from polyroute.quality.data import Dataset, Example
from polyroute.quality.features import Embedder
from polyroute.quality.metrics import Curve, FloatArray, curve, oracle_scores, random_curve
from polyroute.quality.model import QualityModel, featurize
from polyroute.quality.scorer import Scorer

# Strong shrinkage: on subjects never seen, 0.3 beat 0.003..0.1 and 1..3 in 5-fold cross-validation.
L2 = 0.3
SHARES = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


def train(
    examples: Sequence[Example], columns: Sequence[str], embedder: Embedder, embedding: bool = True
) -> QualityModel:
    x = featurize([e.prompt for e in examples], embedder, embedding)
    return QualityModel.train(x, label_arrays(examples, columns), embedding, L2)


def label_arrays(examples: Sequence[Example], columns: Sequence[str]) -> dict[str, FloatArray]:
    """Each column's labels as floats, NaN where a prompt has none."""
    return {c: np.asarray([e.labels.get(c, np.nan) for e in examples], dtype=np.float64) for c in columns}


def route_scores(model: QualityModel, x: FloatArray, weak: str, strong: str) -> FloatArray:
    p = model.predict(x)
    return p[strong] - p[weak]


@dataclass(frozen=True)
class Report:
    n: int
    dropped: int
    folds: int  # 0: a trained router scored on the data as given
    router: Curve
    random: Curve
    oracle: Curve
    length: Curve
    group_rate: Curve
    decision_us: tuple[float, float] | None  # (p50, p99)
    # Each fold scored on its own, beside the length baseline on the same prompts.
    per_fold: tuple[dict[str, float], ...] = ()

    def summary(self) -> dict[str, object]:
        r = self.router
        out: dict[str, object] = {
            "prompts": self.n,
            "contaminated_dropped": self.dropped,
            "folds": self.folds,
            "weak_accuracy": r.weak_accuracy,
            "strong_accuracy": r.strong_accuracy,
            "apgr": r.apgr(),
            "cpt50": r.cpt(0.5),
            "cpt80": r.cpt(0.8),
            "decision_us_p50": self.decision_us[0] if self.decision_us else None,
            "decision_us_p99": self.decision_us[1] if self.decision_us else None,
            "curve": [{"strong_share": s, "accuracy": r.at(s)[0], "pgr": r.at(s)[1]} for s in SHARES],
            "per_fold": list(self.per_fold),
        }
        refs = (("random", self.random), ("oracle", self.oracle), ("length", self.length),
                ("group_rate_oracle", self.group_rate))
        for name, c in refs:
            out[name] = {"apgr": c.apgr(), "cpt50": c.cpt(0.5), "cpt80": c.cpt(0.8)}
        return out


def report(
    data: Dataset, scores: FloatArray, weak: str, strong: str, us: tuple[float, float] | None,
    fold_of: npt.NDArray[np.int64] | None = None,
) -> Report:
    w, s = data.column(weak), data.column(strong)
    lengths = np.asarray([len(e.prompt) for e in data.examples], dtype=np.float64)
    folds = 0 if fold_of is None else int(fold_of.max()) + 1
    per_fold = []
    for k in range(folds):
        assert fold_of is not None
        idx = np.flatnonzero(fold_of == k)
        wk, sk = [w[i] for i in idx], [s[i] for i in idx]
        mine, base = curve(scores[idx], wk, sk), curve(lengths[idx], wk, sk)
        per_fold.append({
            "fold": k, "prompts": len(idx), "groups": len({data.examples[i].group for i in idx}),
            "apgr": mine.apgr(), "cpt50": mine.cpt(0.5), "length_apgr": base.apgr(), "length_cpt50": base.cpt(0.5),
        })
    return Report(
        n=len(w),
        dropped=data.dropped,
        folds=folds,
        router=curve(scores, w, s),
        random=random_curve(w, s),
        oracle=curve(oracle_scores(w, s), w, s),
        length=curve(lengths, w, s),
        group_rate=curve(_group_rates(data, w, s), w, s),
        decision_us=us,
        per_fold=tuple(per_fold),
    )


def _group_rates(data: Dataset, weak: list[bool], strong: list[bool]) -> FloatArray:
    """Each prompt's score: the mean gain (strong right minus weak right) over its group."""
    groups = [e.group for e in data.examples]
    gain = np.asarray(strong, dtype=np.float64) - np.asarray(weak, dtype=np.float64)
    total: dict[str, float] = {}
    count: dict[str, int] = {}
    for group, v in zip(groups, gain, strict=True):
        total[group] = total.get(group, 0.0) + float(v)
        count[group] = count.get(group, 0) + 1
    return np.asarray([total[x] / count[x] for x in groups])


def cross_validate(
    data: Dataset, weak: str, strong: str, folds: int, embedder: Embedder, seed: int = 0
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Out-of-fold routing scores and each prompt's fold; groups split into ``folds`` parts at random (seeded)."""
    groups = np.asarray([e.group for e in data.examples])
    names = np.asarray(data.groups())
    if folds < 2 or folds > len(names):
        raise ValueError(f"--folds must be between 2 and the number of groups ({len(names)})")
    order = np.random.default_rng(seed).permutation(names)
    x = featurize([e.prompt for e in data.examples], embedder, True)
    labels = {c: np.asarray(data.column(c), dtype=np.float64) for c in (weak, strong)}
    out = np.zeros(len(groups))
    fold_of = np.zeros(len(groups), dtype=np.int64)
    for k in range(folds):
        held = np.isin(groups, order[k::folds])
        fold_of[held] = k
        model = QualityModel.train(x[~held], {c: y[~held] for c, y in labels.items()}, True, L2)
        out[held] = route_scores(model, x[held], weak, strong)
    return out, fold_of


def decision_times(scorer: Scorer, prompts: Sequence[str], limit: int = 2000) -> tuple[float, float]:
    """(p50, p99) microseconds to score one prompt, over up to ``limit`` prompts, after one warm pass."""
    sample = list(prompts[:limit])
    for p in sample:
        scorer.predict(p)
    times = []
    for p in sample:
        t0 = time.perf_counter()
        scorer.predict(p)
        times.append((time.perf_counter() - t0) * 1e6)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))
