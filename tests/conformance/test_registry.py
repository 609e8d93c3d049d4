"""Every backend type is declared once: its config model names its adapter, and the two agree.

Adding a provider is a config model (with its ``type`` and ``adapter``) in the
``BackendConfig`` union and an adapter module; these checks hold any new one to that.
"""

from __future__ import annotations

from typing import Any, get_args

import pytest

from polyroute import config as cfg
from polyroute.adapters import Adapter, adapter_class, build_adapter
from polyroute.errors import ConfigError

# The least each type needs to be valid, beyond its `type`.
MINIMAL: dict[str, dict[str, Any]] = {
    "openai": {"base_url": "https://api.example.com/v1"},
    "anthropic": {"base_url": "https://api.example.com"},
    "ollama": {"base_url": "http://127.0.0.1:11434"},
    "llamacpp": {"model_path": cfg.EMBEDDED_MODEL_PATH},
    "fake": {},
}


def test_the_registry_is_the_union_and_lists_every_type() -> None:
    union = get_args(get_args(cfg.BackendConfig)[0])
    assert tuple(cfg.BACKEND_TYPES.values()) == union
    assert set(cfg.BACKEND_TYPES) == set(MINIMAL), "a new type needs its minimal config here"


@pytest.mark.parametrize("kind", list(cfg.BACKEND_TYPES))
def test_every_type_has_a_config_model_and_an_adapter_of_that_type(kind: str) -> None:
    model = cfg.BACKEND_TYPES[kind]
    assert issubclass(model, cfg.BackendBase)
    assert get_args(model.model_fields["type"].annotation) == (kind,)
    config = cfg.backend_config({"type": kind, **MINIMAL[kind]}, env={})
    assert type(config) is model
    cls = adapter_class(config)
    assert issubclass(cls, Adapter) and cls.kind == kind
    adapter = build_adapter("b", config)
    assert adapter.config is config
    # Each HTTP type shares the HTTP base, where transport keys (proxy, TLS, pool) are added once.
    assert isinstance(config, cfg.HttpBackendConfig) == ("base_url" in MINIMAL[kind])


@pytest.mark.parametrize("kind", list(cfg.BACKEND_TYPES))
def test_a_key_of_another_type_is_refused_by_name(kind: str) -> None:
    other = "n_ctx" if "base_url" in MINIMAL[kind] else "headers"
    with pytest.raises(ConfigError) as info:
        cfg.parse({"backends": {"b": {"type": kind, **MINIMAL[kind], other: 4096}}}, source="gw.toml", env={})
    assert str(info.value) == f"gw.toml: backends.b.{other}: unknown key"


def test_backend_config_alone_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        cfg.backend_config({"type": "llamacpp", "model_path": cfg.EMBEDDED_MODEL_PATH, "n_ctx": 3})
    assert str(info.value) == "<memory>: n_ctx: Input should be greater than or equal to 128"
