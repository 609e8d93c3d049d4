"""How often the refusal rules and a judge model agree, on the answers both have read.

For each (model, suite, judge, prompt version): the items whose answer has both the
rules' verdict (``Result.refused``) and a readable judge verdict on whether it refused: the
refusal task's, or the advice task's (its REFUSAL against CAVEATED or UNQUALIFIED). ``agreement`` is
the share of those where the two say the same; ``kappa`` is Cohen's kappa, the
agreement beyond what two raters with the same refusal rates would reach by chance:
1 is full agreement, 0 chance level, below 0 worse than chance. Kappa is null when
chance agreement is already 1 (both raters gave one verdict only, the same one): it
is undefined there, and agreement alone says what there is to say. Within one model
that is common (a model that refuses everything), so each suite and judge also gets
a row pooling every model, with ``model`` null. ``judge_errors`` counts the answers
the judge was asked about without a verdict (its call failed, or its reply could not be
read): they are left out of ``n``, and a judge that mostly mumbles shows here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from polyroute.evals.store import Judgement, Result, ResultStore

# The fields of one agreement row, in order.
AGREEMENT_FIELDS = ("model", "suite", "judge", "prompt_version", "n", "agreement", "kappa",
                    "rules_refusal_rate", "judge_refusal_rate", "judge_errors")


def cohen_kappa(pairs: list[tuple[bool, bool]]) -> float | None:
    """Cohen's kappa of two raters' yes/no verdicts on the same items; None when undefined."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(a == b for a, b in pairs) / n
    a_yes = sum(a for a, _ in pairs) / n
    b_yes = sum(b for _, b in pairs) / n
    chance = a_yes * b_yes + (1 - a_yes) * (1 - b_yes)
    if chance >= 1.0:
        return None
    return (observed - chance) / (1 - chance)


def agreement(results: Iterable[Result], judgements: Iterable[Judgement]) -> list[dict[str, Any]]:
    """One row per (model, suite, judge, prompt version) with refusal verdicts from both."""
    rules = {(r.model, r.suite, r.item): r.refused for r in results if r.error is None and r.refused is not None}
    groups: dict[tuple[str, str, str, str], list[tuple[bool, bool]]] = defaultdict(list)
    errors: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for j in judgements:
        ruled = rules.get((j.model, j.suite, j.item))
        if j.task not in ("refusal", "advice") or ruled is None:
            continue
        # "" sorts first: the pooled row leads its suite's rows.
        for key in ((j.suite, j.judge, j.prompt_version, j.model), (j.suite, j.judge, j.prompt_version, "")):
            if j.error is None and j.refused is not None:
                groups[key].append((ruled, j.refused))
            else:
                groups.setdefault(key, [])
                errors[key] += 1
    rows: list[dict[str, Any]] = []
    for key, pairs in sorted(groups.items()):
        suite, judge, version, model = key
        kappa = cohen_kappa(pairs)
        rows.append({
            "model": model or None, "suite": suite, "judge": judge, "prompt_version": version, "n": len(pairs),
            "agreement": _share(sum(a == b for a, b in pairs), len(pairs)),
            "kappa": None if kappa is None else round(kappa, 4),
            "rules_refusal_rate": _share(sum(a for a, _ in pairs), len(pairs)),
            "judge_refusal_rate": _share(sum(b for _, b in pairs), len(pairs)),
            "judge_errors": errors[key],
        })
    return rows


def _share(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def agreement_rows(store: ResultStore, models: list[str] | None = None,
                   suites: list[str] | None = None) -> list[dict[str, Any]]:
    """The agreement rows of what the store holds, as plain dicts."""
    return agreement(store.results(models, suites), store.judgements(models, suites))
