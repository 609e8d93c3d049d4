"""How well a router trades strong-model calls for quality: RouteLLM's metrics.

Definitions from RouteLLM (Ong et al., "RouteLLM: Learning to Route LLMs with
Preference Data", arXiv 2406.18665, section 4 "Metrics"):

- A router scores each prompt; at threshold alpha, prompts scoring at least alpha go
  to the strong model, the rest to the weak one. ``c`` is the share of strong calls.
- PGR, performance gap recovered: ``(r(router) - r(weak)) / (r(strong) - r(weak))``,
  where ``r`` is accuracy on the evaluation set. It may exceed 1 (the mixture beats
  the strong model alone when the weak one is right where the strong one is wrong).
- APGR: the area under PGR against ``c`` from 0 to 1. The paper approximates the
  integral on ten equal intervals of ``c``; here it is the exact area of the
  piecewise-linear curve through every share ``k/n``, k = 0..n, so a router is not
  rewarded or punished by where ten sample points happen to fall.
- CPT(x%), call-performance threshold: the smallest share of strong calls at which
  PGR reaches x%.
- Random routing sends a random share ``c`` to the strong model: its expected PGR
  is ``c``, so its APGR is 0.5 and its CPT(x%) is x%.
- The oracle sends to the strong model exactly the prompts the weak model fails and
  the strong one answers, then the ties, then those the weak model alone answers.

Ties in scores are broken neither in favour of nor against the router: within a
block of equal scores the curve is the expectation over random orders, a straight
line between the block's ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Curve:
    """Quality against the share of strong calls, at every share k/n."""

    share: FloatArray  # k/n, k = 0..n
    accuracy: FloatArray  # accuracy of the mixture at that share
    weak_accuracy: float
    strong_accuracy: float

    @property
    def gap(self) -> float:
        return self.strong_accuracy - self.weak_accuracy

    @property
    def pgr(self) -> FloatArray:
        """Performance gap recovered at each share; zeros when the models tie (no gap)."""
        if self.gap == 0:
            return np.zeros_like(self.accuracy)
        return (self.accuracy - self.weak_accuracy) / self.gap

    def apgr(self) -> float:
        """Area under PGR over the strong-call share (trapezoids, exact for this curve)."""
        pgr = self.pgr
        return float(np.sum((pgr[1:] + pgr[:-1]) * np.diff(self.share)) / 2)

    def cpt(self, fraction: float) -> float:
        """The smallest strong-call share whose PGR reaches ``fraction`` (0.5 for CPT(50%)); 1.0 if none."""
        reached = np.flatnonzero(self.pgr >= fraction - 1e-12)
        return float(self.share[reached[0]]) if reached.size else 1.0

    def at(self, share: float) -> tuple[float, float]:
        """(accuracy, PGR) at the strong-call share nearest ``share``."""
        i = round(share * (len(self.share) - 1))
        return float(self.accuracy[i]), float(self.pgr[i])


def curve(scores: Sequence[float] | FloatArray, weak: Sequence[bool], strong: Sequence[bool]) -> Curve:
    """The curve of a router that sends the highest ``scores`` to the strong model first."""
    s = np.asarray(scores, dtype=np.float64)
    w = np.asarray(weak, dtype=np.float64)
    st = np.asarray(strong, dtype=np.float64)
    n = len(s)
    if n == 0 or len(w) != n or len(st) != n:
        raise ValueError("scores, weak and strong must be non-empty and of one length")
    order = np.argsort(-s, kind="stable")
    s, gain = s[order], (st - w)[order]
    # Accuracy after k prompts go to the strong model, for k at the end of each tie block.
    cum = np.concatenate(([0.0], np.cumsum(gain)))
    ends = np.concatenate((np.flatnonzero(s[1:] != s[:-1]) + 1, [n]))
    knots = np.concatenate(([0], ends))
    ks = np.arange(n + 1)
    gained = np.interp(ks, knots, cum[knots])
    weak_acc = float(w.mean())
    return Curve(
        share=ks / n,
        accuracy=weak_acc + gained / n,
        weak_accuracy=weak_acc,
        strong_accuracy=float(st.mean()),
    )


def oracle_scores(weak: Sequence[bool], strong: Sequence[bool]) -> FloatArray:
    """1 where only the strong model is right, -1 where only the weak one is, else 0."""
    return np.asarray(strong, dtype=np.float64) - np.asarray(weak, dtype=np.float64)


def random_curve(weak: Sequence[bool], strong: Sequence[bool]) -> Curve:
    """The expected curve of random routing: every prompt tied."""
    return curve(np.zeros(len(weak)), weak, strong)
