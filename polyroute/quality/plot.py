"""``router eval --plot``: accuracy against the share of strong-model calls, beside the baselines.

Drawn with matplotlib's object API on the Agg canvas (no display, no pyplot state).
matplotlib comes with the ``[plot]`` extra; without it the error says so.
"""

from __future__ import annotations

from pathlib import Path

from polyroute.errors import ConfigError
from polyroute.quality.evaluate import Report

_MISSING = "--plot needs matplotlib: pip install 'polyroute[plot]' (or use --json and plot the 'curve' field)."


def draw(rep: Report, path: str | Path, title: str = "") -> None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ConfigError(_MISSING) from exc
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lines = (("router", rep.router, "-", 2.0), ("length baseline", rep.length, "--", 1.2),
             ("random", rep.random, ":", 1.2), ("oracle", rep.oracle, "-.", 1.2))
    for name, c, style, width in lines:
        label = f"{name}: APGR {c.apgr():.3f}, CPT(50%) {c.cpt(0.5):.1%}"
        ax.plot(c.share * 100, c.accuracy * 100, style, linewidth=width, label=label)
    r = rep.router
    ax.axhline(r.weak_accuracy * 100, color="grey", linewidth=0.6)
    ax.axhline(r.strong_accuracy * 100, color="grey", linewidth=0.6)
    # Below the weak line on the left, where no curve goes (the legend is on the right).
    ax.annotate(f"weak only {r.weak_accuracy:.1%}", (1, r.weak_accuracy * 100), ha="left", va="top",
                fontsize=8, color="grey")
    ax.annotate(f"strong only {r.strong_accuracy:.1%}", (100, r.strong_accuracy * 100), ha="right", va="bottom",
                fontsize=8, color="grey")
    ax.set_xlim(0, 100)
    ax.set_xlabel("strong-model calls (% of prompts)")
    ax.set_ylabel("accuracy (%)")
    scored = f"{rep.folds}-fold cross-validation by group" if rep.folds else "scored as given"
    ax.set_title(title or f"{rep.n} prompts, {scored}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise ConfigError(f"Cannot write the plot {path}: {exc.strerror or exc}") from None
