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
from polyroute.catalog.overlay import catalog_files, load_catalog_for, load_with_files, overlay

__all__ = [
    "Capability",
    "Catalog",
    "Continuation",
    "Family",
    "Offer",
    "Wire",
    "catalog_files",
    "load_catalog",
    "load_catalog_for",
    "load_with_files",
    "overlay",
    "parse_catalog",
]
