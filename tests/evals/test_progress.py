"""The rich progress bar shows items done, errors and the cost so far."""

from __future__ import annotations

import io

from rich.console import Console

from polyroute.evals.progress import RichProgress


def test_the_bar_counts_items_errors_and_cost() -> None:
    out = io.StringIO()
    bar = RichProgress(Console(file=out, width=120, force_terminal=False))
    bar.begin("smollm2-135m", "xstest", total=10, done=4)
    bar.advance(failed=False, cost_usd=0.25)
    bar.advance(failed=True, cost_usd=0.5)
    bar.end()
    bar.close()
    text = out.getvalue()
    assert "smollm2-135m · xstest" in text
    assert "6/10" in text and "errors 1" in text and "$0.7500" in text
