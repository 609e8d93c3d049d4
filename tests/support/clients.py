"""Which upstream client the suites that build backends use: POLYROUTE_TEST_UPSTREAM_CLIENT.

Unset, the default client ("builtin"); ``POLYROUTE_TEST_UPSTREAM_CLIENT=aiohttp`` runs the
conformance suite and the hostile-upstream gateway tests on aiohttp's client instead.
"""

from __future__ import annotations

import os
from typing import Any

UPSTREAM_CLIENT = os.environ.get("POLYROUTE_TEST_UPSTREAM_CLIENT", "builtin")


def backend_keys() -> dict[str, str]:
    """The keys a test backend gets so that it uses the chosen client (none for the default)."""
    return {} if UPSTREAM_CLIENT == "builtin" else {"upstream_client": UPSTREAM_CLIENT}


def gateway_lines() -> list[str]:
    """The ``[gateway]`` lines of a gateway's TOML for the chosen client (none for the default)."""
    return [] if UPSTREAM_CLIENT == "builtin" else [f'upstream_client = "{UPSTREAM_CLIENT}"']


def with_client(raw: dict[str, Any]) -> dict[str, Any]:
    """A raw config whose ``[gateway]`` names the chosen client, unless it names one itself."""
    gateway = raw.get("gateway") or {}
    if UPSTREAM_CLIENT == "builtin" or "upstream_client" in gateway:
        return raw
    return {**raw, "gateway": {**gateway, "upstream_client": UPSTREAM_CLIENT}}
