"""Backends, one module per wire format, chosen by the config's ``type``.

The registry of types is ``polyroute.config.BackendConfig``: each type's config model
names its adapter. Modules are imported only when a backend of that type is
configured, so that llama.cpp is not loaded (nor needed) by a gateway that serves
only hosted models.
"""

from __future__ import annotations

from importlib import import_module

from polyroute.adapters.base import Adapter, Call
from polyroute.config import BackendConfig, Config
from polyroute.errors import ConfigError


def adapter_class(config: BackendConfig) -> type[Adapter]:
    """The adapter class of a backend's type, or a ConfigError saying what to install."""
    module_name, _, cls_name = config.adapter.partition(":")
    try:
        module = import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] == "polyroute":
            raise
        hint = f": run `{config.install}`" if config.install else ""
        raise ConfigError(
            f"a backend of type {config.type!r} needs the Python package {exc.name!r}, which is not installed{hint}"
        ) from None
    cls: type[Adapter] = getattr(module, cls_name)
    return cls


def build_adapter(name: str, config: BackendConfig, source: str | None = None) -> Adapter:
    try:
        cls = adapter_class(config)
    except ConfigError as exc:
        raise ConfigError(exc.problems[0], source=source, key=f"backends.{name}.type") from None
    return cls(name, config)


def check_installed(config: Config) -> None:
    """A ConfigError naming the backend whose type needs a package that is not installed."""
    for name, backend in config.backends.items():
        try:
            adapter_class(backend)
        except ConfigError as exc:
            raise ConfigError(exc.problems[0], source=config.source, key=f"backends.{name}.type") from None


__all__ = ["Adapter", "Call", "adapter_class", "build_adapter", "check_installed"]
