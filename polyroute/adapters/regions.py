"""Providers whose keys belong to one region.

DashScope (Alibaba Cloud Model Studio), Moonshot and Zhipu each run a mainland
China platform and an international one, with separate accounts: a key made on
one is refused (401) by the other. When such a key is refused, the error says so
and names the other endpoint, since a wrong ``base_url`` looks exactly like a
wrong key.

This is data, not code: a backend is matched by its ``provider`` field, or else by
the host of its ``base_url``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Endpoint:
    region: str
    base_url: str

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""


@dataclass(frozen=True, slots=True)
class RegionalProvider:
    name: str  # as people know it, for the message
    endpoints: tuple[Endpoint, ...]


_CN = "mainland China"
_INTL = "international"

# Read 2026-12-06: https://platform.kimi.ai/docs/api/errors (a key of one Kimi platform gets a 401
# on the other); https://www.alibabacloud.com/help/en/model-studio/developer-reference/compatibility-of-openai-with-dashscope
# (Singapore and Beijing base URLs); https://docs.z.ai/api-reference/llm/chat-completion and the
# catalog's offers for Z.ai.
REGIONAL: dict[str, RegionalProvider] = {
    "dashscope": RegionalProvider("DashScope", (
        Endpoint(_CN, "https://dashscope.aliyuncs.com/compatible-mode/v1"),
        Endpoint(_INTL, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"),
    )),
    "moonshot": RegionalProvider("Moonshot", (
        Endpoint(_CN, "https://api.moonshot.cn/v1"),
        Endpoint(_INTL, "https://api.moonshot.ai/v1"),
    )),
    "zhipu": RegionalProvider("Zhipu", (
        Endpoint(_CN, "https://open.bigmodel.cn/api/paas/v4"),
        Endpoint(_INTL, "https://api.z.ai/api/paas/v4"),
    )),
}
# Other names the same providers go by in configs.
ALIASES = {"qwen": "dashscope", "alibaba": "dashscope", "kimi": "moonshot", "zai": "zhipu", "z.ai": "zhipu",
           "glm": "zhipu", "bigmodel": "zhipu"}


def provider_key(provider: str | None, base_url: str | None) -> str | None:
    """The key in ``REGIONAL`` of the provider a backend names, or whose host its ``base_url`` has."""
    if provider:
        key = provider.lower()
        key = ALIASES.get(key, key)
        return key if key in REGIONAL else None
    host = urlsplit(base_url or "").hostname or ""
    return next((k for k, p in REGIONAL.items() if any(e.host == host for e in p.endpoints)), None)


def _provider(provider: str | None, base_url: str | None) -> RegionalProvider | None:
    key = provider_key(provider, base_url)
    return None if key is None else REGIONAL[key]


def key_region_hint(provider: str | None, base_url: str | None) -> str | None:
    """What to add to a refused key's error on a backend whose keys are tied to a region, else None."""
    p = _provider(provider, base_url)
    if p is None:
        return None
    host = urlsplit(base_url or "").hostname or ""
    here = next((e for e in p.endpoints if e.host == host), None)
    if here is not None:
        others = " or ".join(f"{e.base_url} ({e.region})" for e in p.endpoints if e is not here)
        return (f"{p.name} keys work in one region only: this key may belong to {others}, "
                f"not {here.region}; check base_url")
    each = " or ".join(f"{e.base_url} ({e.region})" for e in p.endpoints)
    return f"{p.name} keys work in one region only: check that base_url matches the key's region, {each}"
