"""Backends, one module per wire format, looked up by the config's ``type``.

Modules are imported only when a backend of that type is configured, so that
llama.cpp is not loaded by a gateway that serves only hosted models.
"""

from __future__ import annotations

from importlib import import_module

from polyroute.adapters.base import Adapter, Call
from polyroute.config import BackendConfig

_REGISTRY: dict[str, str] = {
    "openai": "polyroute.adapters.openai_compat:OpenAICompatAdapter",
    "anthropic": "polyroute.adapters.anthropic:AnthropicAdapter",
    "ollama": "polyroute.adapters.ollama:OllamaAdapter",
    "llamacpp": "polyroute.adapters.llamacpp:LlamaCppAdapter",
    "fake": "polyroute.adapters.fake:FakeAdapter",
}


def build_adapter(name: str, config: BackendConfig) -> Adapter:
    module_name, _, cls_name = _REGISTRY[config.type].partition(":")
    cls: type[Adapter] = getattr(import_module(module_name), cls_name)
    return cls(name, config)


__all__ = ["Adapter", "Call", "build_adapter"]
