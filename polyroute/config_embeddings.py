"""A config's embedding models and routes, checked: ``config check`` and ``serve`` refuse what would mix spaces.

A route fails over between its models, and an embedding's vector means something only
beside vectors of the same model. So a route is all embedding models or none, and its
embedding models are offers of one catalog family (one model at several backends, or a
hosted API and a local server of the same open model): a fallback to another family
would put vectors no search can compare into the client's index, without a word. A
model whose family is unknown cannot be shown to share a space with another, so it
stands alone. Each problem is ``key: reason``, every one found at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyroute.errors import ConfigError

if TYPE_CHECKING:
    from polyroute.catalog import Catalog
    from polyroute.config import Config


def embedding_models(config: Config, catalog: Catalog) -> dict[str, str | None]:
    """The config's embedding models, each with its catalog family (None when it names none)."""
    out: dict[str, str | None] = {}
    for name, mc in config.models.items():
        fam = catalog.get(mc.family) if mc.family else None
        caps = mc.capabilities if mc.capabilities is not None else (fam.capabilities if fam else [])
        if "embeddings" in caps:
            out[name] = mc.family
    return out


def embedding_problems(config: Config, catalog: Catalog) -> list[str]:
    """Every route that mixes spaces or kinds, every embedding model on a backend that cannot embed."""
    from polyroute.adapters import adapter_class

    embedders = embedding_models(config, catalog)
    problems: list[str] = []
    for name in embedders:
        backend = config.models[name].backend
        bc = config.backends.get(backend)
        try:
            embeds = bc is not None and adapter_class(bc).embeds
        except ConfigError:
            continue  # a package not installed: said by the check of installed packages
        if bc is not None and not embeds:
            problems.append(f"models.{name}.backend: '{backend}' is of type {bc.type!r}, which has no embeddings "
                            "endpoint; serve this embedding model from an openai, ollama, llamacpp or fake backend")
    for route, rc in config.routes.items():
        problems += _route_problems(route, rc.models, rc.strategy, embedders)
    return problems


def _route_problems(route: str, models: list[str], strategy: str, embedders: dict[str, str | None]) -> list[str]:
    key = f"routes.{route}.models"
    embedding = [m for m in models if m in embedders]
    if not embedding:
        return []
    chat = [m for m in models if m not in embedders]
    if chat:
        return [f"{key}: mixes embedding models ({', '.join(embedding)}) with chat models ({', '.join(chat)}): a "
                "chat model cannot answer an embeddings request, nor an embedding model a chat; make one route of "
                "each"]
    out: list[str] = []
    families = {m: embedders[m] for m in embedding}
    if len(set(families.values())) > 1 or (len(embedding) > 1 and None in families.values()):
        listed = ", ".join(f"{m} ({f or 'no family'})" for m, f in families.items())
        out.append(f"{key}: mixes embedding families: {listed}. Each family's vectors live in a space of their own: "
                   "a fallback from one to another would put vectors no search can compare into the client's index, "
                   "without an error. List offers of one family only (one model at several backends, each naming "
                   "its catalog family), or make one route per family")
    if strategy == "quality":
        out.append(f"routes.{route}.strategy: \"quality\" judges a chat prompt; an embedding route is ordered, "
                   "cheapest, fastest or weighted")
    return out


def check_embeddings(config: Config, catalog: Catalog) -> None:
    """A ConfigError listing every embedding problem of ``config``; nothing when there is none."""
    problems = embedding_problems(config, catalog)
    if problems:
        raise ConfigError.of(problems, source=config.source)
