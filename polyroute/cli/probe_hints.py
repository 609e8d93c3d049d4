"""``polyroute probe``'s hints: ``polyroute.probing.hints`` worded for the command line (``--timeout``)."""

from __future__ import annotations

from polyroute.catalog import Catalog
from polyroute.config import Config
from polyroute.fleet import ModelEntry
from polyroute.probing.hints import WORDS, Hints, words

__all__ = ["WORDS", "hint_for", "skipped_hint", "words"]


def skipped_hint(why: str, config: Config, backend: str) -> str:
    """For a model not asked: the variables to export, or the package to install."""
    return Hints(config, None).skipped(why, backend)


def hint_for(result: str, entry: ModelEntry, config: Config, catalog: Catalog | None) -> str:
    """What to do about a failed probe of ``entry``."""
    return Hints(config, catalog).failed(result, entry)
