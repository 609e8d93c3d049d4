"""A user's own catalog files, laid over the shipped catalog.

Prices and model ids move faster than releases. A config names extra files::

    [catalog]
    files = ["ours.toml"]          # relative to the config file

Each file has the shipped file's schema, and is applied in order:

- a family id the catalog lacks adds a family (validated whole, like the shipped file);
- a family id it has overrides that family: the fields given replace the shipped ones,
  and each offer is matched by ``(provider, model)``: a match has the fields given
  replaced, anything else is a new offer of that family.

Every problem is reported at once, with the user's file and the key as written there.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from polyroute.catalog.model import Catalog, Family, Offer, load_catalog
from polyroute.config import EMBEDDED_SOURCE, config_error
from polyroute.errors import ConfigError

if TYPE_CHECKING:
    from polyroute.config import Config


def read_toml(path: Path) -> dict[str, Any]:
    """The table in ``path``; ConfigError naming the file when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read catalog file: {exc.strerror}", source=str(path)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=str(path)) from None


def overlay(base: Catalog, raw: Mapping[str, Any], *, source: str) -> Catalog:
    """``base`` with the families and offers of ``raw`` added or overridden (see the module doc)."""
    problems = [f"{k}: unknown key" for k in raw if k != "families"]
    tables = raw.get("families", {})
    if not isinstance(tables, dict):
        raise ConfigError.of([*problems, "families: must be a table of families"], source=source)
    merged: dict[str, Any] = {fid: f.model_dump(exclude={"id"}) for fid, f in base.families.items()}
    for fid, table in tables.items():
        if not isinstance(table, dict):
            problems.append(f"families.{fid}: must be a table")
        elif fid not in merged:
            missing = [k for k in _NEW_FAMILY_NEEDS if k not in table]
            close = difflib.get_close_matches(fid, list(merged), n=1, cutoff=0.8)
            if missing and close:
                # Most likely a typo of a family's id (offers meant for it), not a new family half described.
                problems.append(f"families.{fid}: not a family of the catalog (did you mean {close[0]!r}?); a new "
                                f"family also needs {', '.join(missing)}")
            else:
                merged[fid] = table
        else:
            merged[fid] = _override(fid, merged[fid], table, source, problems)
    if problems:
        raise ConfigError.of(problems, source=source)
    try:
        return Catalog.model_validate({"families": merged, "source": f"{base.source} + {source}"})
    except ValidationError as exc:
        # Raised against the user's file: only what it changed can have broken the catalog.
        raise config_error(exc, source, Catalog) from None


# What a family of its own must say (its id is its table's name).
_NEW_FAMILY_NEEDS = tuple(n for n, f in Family.model_fields.items() if f.is_required() and n != "id")
_PRICES = frozenset(("input_per_mtok", "output_per_mtok"))
_OFF_PEAK = frozenset(("off_peak_input_per_mtok", "off_peak_output_per_mtok", "peak_hours_utc"))


def _above(offer: dict[str, Any]) -> bool:
    """Whether an offer's off-peak prices are above its list prices."""
    pairs = (("off_peak_input_per_mtok", "input_per_mtok"), ("off_peak_output_per_mtok", "output_per_mtok"))
    return any(isinstance(offer.get(off), (int, float)) and isinstance(offer.get(on), (int, float))
               and offer[off] > offer[on] for off, on in pairs)


def _override(fid: str, family: dict[str, Any], table: dict[str, Any], source: str,
              problems: list[str]) -> dict[str, Any]:
    offers = table.get("offers", [])
    if not isinstance(offers, list) or not all(isinstance(o, dict) for o in offers):
        problems.append(f"families.{fid}.offers: must be a list of tables ([[families.{fid}.offers]])")
        return family
    result = {**family, **{k: v for k, v in table.items() if k != "offers"}}
    current: list[dict[str, Any]] = list(family["offers"])
    for i, offer in enumerate(offers):
        where = f"families.{fid}.offers.{i}"
        match = (offer.get("provider"), offer.get("model"))
        if not all(isinstance(v, str) and v for v in match):
            problems.append(f"{where}: an offer names its provider and model: they say which offer "
                            "it overrides, or that it is a new one")
            continue
        at = next((j for j, o in enumerate(current) if (o["provider"], o["model"]) == match), None)
        candidate = offer if at is None else {**current[at], **offer}
        if at is not None and _PRICES & offer.keys() and not _OFF_PEAK & offer.keys() and _above(candidate):
            # A list price of your own (a negotiated rate) below the provider's off-peak rates:
            # those were a discount on the shipped list price, not on yours, so they are dropped
            # rather than refused (give off-peak prices of your own to keep a time-of-day rate).
            candidate = {k: v for k, v in candidate.items() if k not in _OFF_PEAK}
        try:
            Offer.model_validate(candidate)
        except ValidationError as exc:
            problems += _located(exc, where)
            continue
        if at is None:
            current.append(candidate)
        else:
            current[at] = candidate
    result["offers"] = current
    return result


def _located(exc: ValidationError, where: str) -> list[str]:
    """Each problem of an offer as 'key: reason', the key as written in the user's file."""
    out: list[str] = []
    for e in sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden"):
        key = ".".join([where, *map(str, e["loc"])])
        if e["type"] == "extra_forbidden":
            reason = "unknown key"
        elif e["type"] == "missing":
            reason = "required key is missing"
        else:
            reason = e["msg"].removeprefix("Value error, ")
        out.append(f"{key}: {reason}")
    return out


def load_with_files(files: Sequence[Path], base: Catalog | None = None) -> Catalog:
    """The shipped catalog (or ``base``) with each file laid over it, in order."""
    catalog = load_catalog() if base is None else base
    for path in files:
        catalog = overlay(catalog, read_toml(path), source=str(path))
    return catalog


def catalog_files(config: Config) -> list[Path]:
    """``[catalog] files`` of ``config``, relative paths taken from the config file's folder."""
    root = Path.cwd() if config.source in (EMBEDDED_SOURCE, "<memory>", "<built-in>") else Path(config.source).parent
    return [p if p.is_absolute() else root / p for p in map(Path, config.catalog.files)]


def load_catalog_for(config: Config) -> Catalog:
    """The catalog a gateway built from ``config`` uses: shipped, then the config's own files."""
    return load_with_files(catalog_files(config))


