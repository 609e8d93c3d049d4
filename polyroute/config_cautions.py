"""What a valid config says that is likely a mistake: each as ``key: what will happen``.

``Config.cautions`` gathers them; ``config check`` prints them and ``serve`` logs them.
Nothing here refuses a config: a caution names a setting that does something other than
what it seems to ask for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from polyroute.config import RouteConfig


def route_cautions(routes: Mapping[str, RouteConfig]) -> list[str]:
    out: list[str] = []
    for name, r in routes.items():
        twice = sorted({m for m in r.models if r.models.count(m) > 1})
        if twice:
            out.append(f"routes.{name}.models: {', '.join(twice)} listed more than once: one model is one "
                       "candidate; list another model to fail over to")
        if r.first_token_timeout >= r.deadline:
            out.append(f"routes.{name}.first_token_timeout: {r.first_token_timeout:g}s is not shorter than the "
                       f"route's deadline ({r.deadline:g}s): a silent upstream uses the whole deadline and no "
                       "other candidate is tried")
        if r.strategy == "weighted" and not r.weights:
            out.append(f"routes.{name}.weights: strategy \"weighted\" without weights: every candidate gets the "
                       "same share; give weights = { MODEL = N, ... }")
    return out
