"""The fleet: every configured model with its backend and the catalog facts about it.

Built once from a validated ``Config`` and the shipped catalog; read-only after.
A client asks for a name; ``Fleet.resolve`` turns it into a route (a configured
route, or the implicit one-model route of a model name).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from polyroute.adapters import Adapter, build_adapter
from polyroute.cache_marks import marks
from polyroute.catalog import Catalog, Family, Offer
from polyroute.config import (
    EMBEDDED_SOURCE,
    BackendConfig,
    Config,
    HttpBackendConfig,
    LlamaCppBackend,
    ModelConfig,
    RouteConfig,
)
from polyroute.config_embeddings import check_embeddings
from polyroute.errors import ConfigError, UnknownModel
from polyroute.redact import UpstreamGuard
from polyroute.refusals import Refusals
from polyroute.types import ChatRequest, Usage

# Anthropic bills prompt tokens written to its cache above the input price: 1.25x for five minutes, 2x for an hour
# (https://platform.claude.com/docs/en/build-with-claude/prompt-caching#pricing); these are the parts above it.
_WRITE_5M, _WRITE_1H = 0.25, 1.0


def cache_write_premium(req: ChatRequest) -> float:
    """The dearest cache-write premium ``req``'s breakpoints may cost, as a share of the input price above it: 0
    with no ``cache_control`` (on a message, a content part or a tool), else the 5-minute or 1-hour write rate's
    part above the input price. What a worst-case hold adds to a Claude candidate's prompt."""
    found = marks(req)
    if not found:
        return 0.0
    return _WRITE_1H if any(m.get("ttl") == "1h" for m in found) else _WRITE_5M


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model the gateway can call, with what the router needs to know about it."""

    name: str
    backend: str
    upstream: str
    family: str | None
    input_per_mtok: float
    output_per_mtok: float
    context_window: int | None
    capabilities: frozenset[str]
    locality: str
    organisation: str | None = None
    country: str | None = None
    licence: str | None = None
    open_weights: bool | None = None
    # False when neither a catalog family nor the config prices a hosted model: its 0 is not a price.
    price_known: bool = True
    # The catalog offer billed (its time-of-day and cached rates); None when the config or no offer prices it.
    offer: Offer | None = None
    # An embedding family's vector length when a request names none (the catalog's); None when unknown.
    dimensions: int | None = None

    @property
    def embeds(self) -> bool:
        """Whether this is an embedding model (POST /v1/embeddings), by its catalog family or its config."""
        return "embeddings" in self.capabilities

    @property
    def bills_cache_writes(self) -> bool:
        """Whether prompt tokens written to this model's cache cost more than its input price (Anthropic's)."""
        return self.offer is not None and self.offer.provider == "anthropic"

    @property
    def lacks_tools(self) -> bool:
        """Whether the catalog or the config says this model cannot use tools (unknown is not lacking)."""
        return (self.family is not None or bool(self.capabilities)) and "tools" not in self.capabilities

    def cost(self, usage: Usage | None, cached: int = 0, at: datetime | None = None,
             written: tuple[int, int] = (0, 0)) -> float:
        """What ``usage`` costs: at the time of day's rates where the offer has two (DeepSeek's off-peak hours),
        ``cached`` prompt tokens (read from the provider's cache) at its cached rate where it has one, and prompt
        tokens ``written`` to Anthropic's cache (for five minutes, for an hour) at its write rates."""
        if not usage:
            return 0.0
        price_in, price_out, price_cached = self.input_per_mtok, self.output_per_mtok, None
        offer = self.offer
        if offer is not None:
            if offer.peak_hours_utc:
                price_in, price_out = offer.price_at(at or datetime.now(UTC))
            if offer.cached_input_per_mtok is not None:
                # The cache's rate moves with the time of day as the input's does (DeepSeek halves both).
                price_cached = offer.cached_input_per_mtok * (price_in / offer.input_per_mtok if offer.input_per_mtok
                                                              else 1.0)
        cached = min(cached, usage["prompt_tokens"]) if price_cached is not None else 0
        premium = 0.0
        if self.bills_cache_writes and any(written):
            premium = (written[0] * _WRITE_5M + written[1] * _WRITE_1H) * price_in
        return ((usage["prompt_tokens"] - cached) * price_in + cached * (price_cached or 0.0) + premium
                + usage["completion_tokens"] * price_out) / 1_000_000

    def describe(self) -> dict[str, object]:
        """Facts shown by ``GET /v1/models``."""
        return {
            "backend": self.backend,
            "upstream": self.upstream,
            "family": self.family,
            "origin": {"organisation": self.organisation, "country": self.country},
            "licence": self.licence,
            "open_weights": self.open_weights,
            "locality": self.locality,
            "context_window": self.context_window,
            "capabilities": sorted(self.capabilities),
            "price_per_mtok": {"input": self.input_per_mtok, "output": self.output_per_mtok, "currency": "USD"},
        }


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    config: RouteConfig
    models: tuple[ModelEntry, ...]


@dataclass
class Fleet:
    config: Config
    models: dict[str, ModelEntry]
    routes: dict[str, Route]
    adapters: dict[str, Adapter] = field(default_factory=dict)
    # The catalog the fleet was built from: to say how a catalog model not served here would join.
    catalog: Catalog | None = None
    # Applied to every upstream error once: secrets out of its message, Retry-After clamped.
    guard: UpstreamGuard = field(default_factory=UpstreamGuard)
    # Parameters models have refused lately (``polyroute.refusals``): left out of their requests.
    refusals: Refusals = field(default_factory=Refusals)

    @classmethod
    def build(cls, config: Config, catalog: Catalog) -> Fleet:
        models = {name: _entry(name, config, catalog) for name in config.models}
        check_embeddings(config, catalog)  # a route that would mix vector spaces is refused before serving
        routes = {
            name: Route(name, rc, tuple(models[m] for m in rc.models)) for name, rc in config.routes.items()
        }
        for name, entry in models.items():
            # A model's own name is a one-model route with the defaults.
            routes.setdefault(name, Route(name, RouteConfig(models=[name]), (entry,)))
        adapters = {name: build_adapter(name, bc, config.source) for name, bc in config.backends.items()}
        for entry in models.values():
            if entry.embeds:
                adapters[entry.backend].prepare_embeddings()  # an in-process backend loads what embedding needs
        return cls(config=config, models=models, routes=routes, adapters=adapters, catalog=catalog,
                   guard=UpstreamGuard.from_config(config))

    def resolve(self, name: str) -> Route:
        route = self.routes.get(name)
        if route is None:
            known = ", ".join(self.config.client_names())
            raise UnknownModel(f"The model '{name}' does not exist{self._how_to_join(name)}. "
                               f"Known models and routes: {known}", param="model")
        return route

    def _how_to_join(self, name: str) -> str:
        """For a catalog family this gateway does not serve: what would add it to the fleet."""
        fam = self.catalog.get(name) if self.catalog is not None else None
        if fam is None or not fam.offers:
            return ""
        if self.config.source != EMBEDDED_SOURCE:
            return f" in {self.config.source}: it is a catalog model; add it under [models] to serve it"
        keys = " or ".join(dict.fromkeys(o.key_env for o in fam.offers))
        return f" in this gateway's fleet: it is a catalog model, and joins the fleet when {keys} is set at start"

    async def start(self) -> None:
        for adapter in self.adapters.values():
            await adapter.start()

    async def aclose(self) -> None:
        for adapter in self.adapters.values():
            await adapter.aclose()


def _entry(name: str, config: Config, catalog: Catalog) -> ModelEntry:
    mc = config.models[name]
    backend = config.backends[mc.backend]
    fam: Family | None = catalog.get(mc.family) if mc.family else None
    if mc.family and fam is None:
        known = ", ".join(sorted(catalog.families))
        raise ConfigError(f"unknown catalog family {mc.family!r} (known: {known})",
                          source=config.source, key=f"models.{name}.family")
    # A model run on our own machines is not billed at a provider's list price.
    base_url = backend.base_url if isinstance(backend, HttpBackendConfig) else None
    provider = backend.provider if isinstance(backend, HttpBackendConfig) else None
    offer = None if backend.effective_locality() == "local" else _offer(fam, base_url, provider)
    price_in, price_out = (offer.input_per_mtok, offer.output_per_mtok) if offer is not None else (0.0, 0.0)
    if mc.input_per_mtok is not None or mc.output_per_mtok is not None:
        offer = None  # the config's own price: billed as it says
    caps = frozenset(mc.capabilities) if mc.capabilities is not None else frozenset(fam.capabilities if fam else ())
    return ModelEntry(
        name=name,
        backend=mc.backend,
        upstream=mc.upstream or name,
        family=mc.family,
        input_per_mtok=mc.input_per_mtok if mc.input_per_mtok is not None else price_in,
        output_per_mtok=mc.output_per_mtok if mc.output_per_mtok is not None else price_out,
        context_window=_window(mc, backend, fam),
        capabilities=caps,
        locality=backend.effective_locality(),
        organisation=fam.organisation if fam else None,
        country=fam.country if fam else None,
        licence=fam.licence if fam else None,
        open_weights=fam.open_weights if fam else None,
        price_known=(
            fam is not None
            or (mc.input_per_mtok is not None and mc.output_per_mtok is not None)
            or backend.effective_locality() == "local"
        ),
        offer=offer,
        dimensions=fam.dimensions if fam else None,
    )


def _window(mc: ModelConfig, backend: BackendConfig, fam: Family | None) -> int | None:
    """The context window served: the config's, else the catalog's; for llama.cpp, at most its ``n_ctx``."""
    if isinstance(backend, LlamaCppBackend):
        # What the model is loaded with is all it can take, whatever the catalog says.
        return min(mc.context_window or backend.n_ctx, backend.n_ctx)
    return mc.context_window or (fam.context_window if fam else None)


def _offer(fam: Family | None, base_url: str | None, provider: str | None = None) -> Offer | None:
    """The offer this backend serves (by its URL, else by its ``provider``), else the family's cheapest."""
    if fam is None or fam.local:
        return None
    for offer in fam.offers:
        if base_url and offer.base_url.rstrip("/") == base_url:
            return offer
    for offer in fam.offers:
        if provider and offer.provider.lower() == provider.lower():
            return offer
    return fam.cheapest_offer()
