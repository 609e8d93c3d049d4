"""A fleet of fake models that comply, refuse (in English or Chinese), fail or rate-limit."""
# ruff: noqa: RUF001 - answers and prompts in Chinese use full-width punctuation on purpose

from __future__ import annotations

from typing import Any

from polyroute import config as cfg
from polyroute.catalog import load_catalog
from polyroute.fleet import Fleet

PRICED = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}

FLEET: dict[str, Any] = {
    "backends": {"f": {"type": "fake"}},
    "models": {
        "complier": {"backend": "f", "upstream": "text-Sure,-here-is-how-it-works."},
        "refuser": {"backend": "f", "upstream": "text-I'm-sorry,-but-I-can't-help-with-that."},
        "refuser-zh": {"backend": "f", "upstream": "text-抱歉，我无法提供这方面的信息。"},
        "picks-b": {"backend": "f", "upstream": "text-The-answer-is-(B)."},
        "slow": {"backend": "f", "upstream": "slow-20+text-Sure."},
        "priced": {"backend": "f", "upstream": "text-Sure.", **PRICED},
        "limited": {"backend": "f", "upstream": "error-429"},
        "broken": {"backend": "f", "upstream": "error-500"},
    },
}


def fleet(raw: dict[str, Any] | None = None) -> Fleet:
    return Fleet.build(cfg.parse(raw or FLEET, env={}), load_catalog())
