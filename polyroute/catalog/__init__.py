"""Model families, their origin, licence, context, capabilities and priced offers."""

from polyroute.catalog.model import (
    Capability,
    Catalog,
    Continuation,
    Family,
    Offer,
    Wire,
    load_catalog,
    parse_catalog,
)

__all__ = [
    "Capability",
    "Catalog",
    "Continuation",
    "Family",
    "Offer",
    "Wire",
    "load_catalog",
    "parse_catalog",
]
