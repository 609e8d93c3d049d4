"""Labelled prompts from the results ``polyroute eval`` stored: one label per (model, item).

The eval store keeps each item's score (1 right, 0 wrong, none when unknown or the
call failed) but not its prompt: the prompt is read again from the suite, by the
suite's name (a shipped suite) or from a suite file given by path. A result whose
suite cannot be found, whose item the suite no longer has, or without a score is
left out, and counted. The group of a prompt (kept whole by cross-validation) is
its suite and category, e.g. ``mmlu/astronomy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from polyroute.errors import ConfigError
from polyroute.evals.store import SqliteStore
from polyroute.evals.suites import SHIPPED, Item, Suite, load_suite
from polyroute.quality.data import Dataset, Example


@dataclass
class Skipped:
    """Results not used, by why."""

    no_score: int = 0
    unknown_suite: set[str] = field(default_factory=set)
    unknown_item: int = 0
    safety: int = 0

    def describe(self) -> str:
        parts = []
        if self.no_score:
            parts.append(f"{self.no_score} without a score")
        if self.safety:
            parts.append(f"{self.safety} of safety suites (a refusal is not an answer's quality: name them with "
                         "--suites to train on them)")
        if self.unknown_item:
            parts.append(f"{self.unknown_item} of items their suite no longer has")
        if self.unknown_suite:
            parts.append(f"those of suites not found ({', '.join(sorted(self.unknown_suite))}: "
                         "pass the suite file with --suites)")
        return "; ".join(parts)


def from_evals(db: str | Path, models: Sequence[str], suites: Sequence[str] = ()) -> tuple[Dataset, Skipped]:
    """Prompts labelled by each of ``models``' stored scores; ``suites`` are names or files (default: every
    accuracy suite of the results: a safety suite's score is whether a model refused, or answered specialised
    advice with care, not how well it answered)."""
    if not Path(db).is_file():
        raise ConfigError(f"No eval results at {db}: run `polyroute eval run` first.")
    known = {s.name: s for s in (load_suite(ref) for ref in suites)} if suites else {}
    wanted = list(known) or None
    store = SqliteStore(db)
    skipped = Skipped()
    labels: dict[tuple[str, str], dict[str, float]] = {}
    try:
        for r in store.results(list(models), wanted):
            if r.score is None or r.error is not None:
                skipped.no_score += 1
                continue
            if wanted is None and r.suite_kind == "safety":  # only when asked for by name
                skipped.safety += 1
                continue
            labels.setdefault((r.suite, r.item), {})[r.model] = float(r.score)
    finally:
        store.close()
    examples: list[Example] = []
    items: dict[str, dict[str, Item]] = {}
    for (suite_name, item_id), row in labels.items():
        by_id = items.get(suite_name)
        if by_id is None:
            suite = known.get(suite_name) or _shipped(suite_name)
            by_id = items[suite_name] = {} if suite is None else {i.id: i for i in suite.items}
            if suite is None:
                skipped.unknown_suite.add(suite_name)
        if suite_name in skipped.unknown_suite:
            continue
        item = by_id.get(item_id)
        if item is None:
            skipped.unknown_item += 1
            continue
        group = f"{suite_name}/{item.category}" if item.category else suite_name
        examples.append(Example(prompt_of(item), group, row))
    if not examples:
        raise ConfigError(f"No scored results in {db} for models {', '.join(models)}"
                          + (f" ({skipped.describe()})." if skipped.describe() else "."))
    return Dataset(examples, 0), skipped


def prompt_of(item: Item) -> str:
    """The text the router judges: the last user message, as the gateway reads it."""
    for message in reversed(item.messages):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return str(item.messages[-1].get("content") or "") if item.messages else ""


def _shipped(name: str) -> Suite | None:
    return load_suite(name) if name in SHIPPED else None
